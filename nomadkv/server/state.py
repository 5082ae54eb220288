"""What the server commands remember about the process beyond the node itself:
the config file, the run id, and the instantaneous rates INFO reports.

Owns ``ServerState`` (one per node, found with ``state_of``) and the sampler
timer that ``attach`` starts. Never touches the keyspace or the log.

Rates follow Redis (server.c, trackInstantaneousMetric): a sample every
100 ms, the rate being the mean of the last 16 samples.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import TYPE_CHECKING

from nomadkv.commands.table import COMMANDS, CommandSpec

if TYPE_CHECKING:
    import asyncio

    from nomadkv.server.node import Node

REDIS_VERSION = "7.0.15"  # the Redis release whose behaviour NomadKV follows
SAMPLE_INTERVAL_S = 0.1
SAMPLES = 16


def command_specs() -> list[CommandSpec]:
    """Every top-level command once (a container counts once per call)."""
    return list({id(s): s for s in COMMANDS.values()}.values())


def total_commands(specs: list[CommandSpec]) -> int:
    return sum(spec.calls for spec in specs)


class Rate:
    """An instantaneous rate from a running total sampled at intervals."""

    __slots__ = ("last_time", "last_total", "samples")

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=SAMPLES)
        self.last_time = 0.0
        self.last_total = 0

    def sample(self, now: float, total: int) -> None:
        if self.last_time and now > self.last_time:
            self.samples.append((total - self.last_total) / (now - self.last_time))
        self.last_time = now
        self.last_total = total

    def per_second(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0


class ServerState:
    """Per-node facts for INFO, CONFIG REWRITE and the snapshot commands."""

    def __init__(self) -> None:
        self.config_file: str | None = None
        self.run_id = os.urandom(20).hex()
        self.ops = Rate()
        self.input_bytes = Rate()
        self.output_bytes = Rate()
        self.timer: asyncio.TimerHandle | None = None
        self.memory_peak = 0  # the largest used_memory INFO has reported

    def sample(self, node: Node) -> None:
        now = time.monotonic()
        self.ops.sample(now, total_commands(command_specs()))
        net_in, net_out = network_totals(node)
        self.input_bytes.sample(now, net_in)
        self.output_bytes.sample(now, net_out)


def network_totals(node: Node) -> tuple[int, int]:
    """Bytes read from and written to clients since start (or RESETSTAT)."""
    net_in = node.stats.net_input_bytes
    net_out = node.stats.net_output_bytes
    for client in node.clients.values():
        net_in += client.bytes_in
        net_out += client.bytes_out
    return net_in, net_out


# A plain dict: a compiled Node (mypyc) takes no weak reference, and a node
# lives as long as its process.
_STATES: dict[Node, ServerState] = {}


def state_of(node: Node) -> ServerState:
    state = _STATES.get(node)
    if state is None:
        state = _STATES[node] = ServerState()
    return state


def attach(node: Node, config_file: str | None) -> None:
    """Remember the config file and start sampling rates (process entry point)."""
    state = state_of(node)
    state.config_file = config_file

    def tick() -> None:
        state.sample(node)
        if not node.shutting_down:
            state.timer = node.loop.call_later(SAMPLE_INTERVAL_S, tick)

    state.timer = node.loop.call_later(SAMPLE_INTERVAL_S, tick)
