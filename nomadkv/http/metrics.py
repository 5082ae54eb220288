"""What ``/metrics`` reports: the node's counters as Prometheus metric families.

Owns the metric names and their meaning. Reads counters the node keeps
anyway (server/stats.py, the command table's per-command counters, the log,
the keyspace sizes) and one small file, /proc/self/statm, so a scrape costs
well under a millisecond of the event loop and adds nothing to the command
hot path.

Names follow Prometheus conventions: ``nomadkv_`` prefix, base units
(seconds, bytes), ``_total`` on counters, and the standard ``process_*``
names for process memory and CPU.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from nomadkv import __version__
from nomadkv.commands.table import CommandSpec, all_commands
from nomadkv.http.exposition import Exposition
from nomadkv.server.stats import Histogram

if TYPE_CHECKING:
    from nomadkv.server.node import Node

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
STATM = "/proc/self/statm"


class HttpStats:
    """The sidecar's own counters: requests by route, method and status; latency."""

    __slots__ = ("connections_rejected", "duration", "requests")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.duration = Histogram()
        self.connections_rejected = 0  # past http-maxclients

    def observe(self, route: str, method: str, status: int, elapsed_s: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.duration.observe(elapsed_s)


def memory_bytes() -> tuple[int, int]:
    """(resident, virtual) bytes of this process, from /proc/self/statm."""
    with open(STATM, "rb") as f:
        fields = f.read().split()
    return int(fields[1]) * PAGE_SIZE, int(fields[0]) * PAGE_SIZE


def _command_specs() -> list[CommandSpec]:
    specs = []
    for spec in all_commands():
        specs.append(spec)
        specs.extend(spec.subcommands.values())
    return specs


def render_metrics(node: Node, http: HttpStats) -> str:
    """The whole /metrics document."""
    out = Exposition()
    stats = node.stats
    now = time.time()
    out.gauge("nomadkv_build_info", "Version of this node.", 1, {"version": __version__})
    out.gauge("nomadkv_uptime_seconds", "Seconds since the node started.", now - node.started_at)

    specs = _command_specs()
    out.counter_family(
        "nomadkv_commands_total",
        "Commands run (RESP and HTTP), by command.",
        [({"command": s.name.lower()}, s.calls) for s in specs],
    )
    out.counter_family(
        "nomadkv_command_seconds_total",
        "Time spent running commands, by command.",
        [({"command": s.name.lower()}, s.usec / 1e6) for s in specs],
    )
    out.counter_family(
        "nomadkv_command_rejected_total",
        "Commands rejected before running (arity, authentication), by command.",
        [({"command": s.name.lower()}, s.rejected_calls) for s in specs],
    )
    out.counter_family(
        "nomadkv_command_failed_total",
        "Commands that answered an error, by command.",
        [({"command": s.name.lower()}, s.failed_calls) for s in specs],
    )
    out.histogram(
        "nomadkv_command_latency_seconds",
        "Time a command spends in the server (RESP: sampled batches, time shared among "
        "their commands; HTTP: every command).",
        stats.latency.cumulative(),
        stats.latency.sum,
    )
    out.histogram(
        "nomadkv_write_latency_seconds",
        "Time from a write's arrival to its reply, including the commit (fsync).",
        stats.write_latency.cumulative(),
        stats.write_latency.sum,
    )

    keyspace = node.keyspace
    out.gauge(
        "nomadkv_keys", "Keys in the keyspace (including expired, not yet deleted).", len(keyspace)
    )
    out.gauge("nomadkv_keys_with_expiry", "Keys that have a deadline.", len(keyspace.expires))
    out.counter(
        "nomadkv_expired_keys_total",
        "Keys deleted because their deadline passed.",
        stats.expired_keys,
    )
    out.counter("nomadkv_keyspace_hits_total", "Reads that found their key.", keyspace.hits)
    out.counter(
        "nomadkv_keyspace_misses_total", "Reads that did not find their key.", keyspace.misses
    )

    resident, virtual = memory_bytes()
    out.gauge("process_resident_memory_bytes", "Resident set size of the process.", resident)
    out.gauge("process_virtual_memory_bytes", "Virtual memory size of the process.", virtual)
    cpu = os.times()
    out.counter(
        "process_cpu_seconds_total",
        "User and system CPU time of the process.",
        cpu.user + cpu.system,
    )
    out.gauge(
        "process_start_time_seconds", "Start time of the process, Unix seconds.", node.started_at
    )

    out.counter(
        "nomadkv_connections_received_total",
        "RESP connections accepted.",
        stats.connections_received,
    )
    out.counter(
        "nomadkv_connections_rejected_total",
        "RESP connections refused because maxclients was reached.",
        stats.connections_rejected,
    )
    out.gauge("nomadkv_connected_clients", "RESP connections open now.", len(node.clients))
    out.counter(
        "nomadkv_net_input_bytes_total",
        "Bytes read from closed RESP connections.",
        stats.net_input_bytes,
    )
    out.counter(
        "nomadkv_net_output_bytes_total",
        "Bytes written to closed RESP connections.",
        stats.net_output_bytes,
    )
    out.counter(
        "nomadkv_protocol_errors_total",
        "RESP connections closed for a protocol error.",
        stats.protocol_errors,
    )
    out.counter(
        "nomadkv_unexpected_errors_total",
        "Internal errors in command handlers.",
        stats.unexpected_errors,
    )

    out.counter("nomadkv_fsyncs_total", "fsync calls on the log that succeeded.", stats.fsyncs)
    out.counter(
        "nomadkv_fsync_errors_total", "fsync calls on the log that failed.", stats.fsync_errors
    )
    out.counter(
        "nomadkv_log_written_bytes_total", "Bytes appended to the log.", stats.log_bytes_written
    )
    out.gauge("nomadkv_log_size_bytes", "Size of the log on disk.", node.log.size_bytes)
    out.gauge(
        "nomadkv_log_first_index", "Index of the first entry in the log.", node.log.first_index
    )
    out.gauge("nomadkv_log_last_index", "Index of the last entry in the log.", node.log.last_index)
    out.gauge("nomadkv_synced_index", "Last log index known to be fsync'd.", node.synced_index)
    out.gauge(
        "nomadkv_applied_index",
        "Last log index applied to the keyspace.",
        node.machine.applied_index,
    )

    out.counter("nomadkv_snapshots_total", "Snapshots written successfully.", stats.snapshots)
    out.gauge(
        "nomadkv_snapshot_index", "Log index covered by the newest snapshot.", node.snapshot_index
    )
    out.gauge(
        "nomadkv_snapshot_in_progress",
        "1 while a snapshot is being written.",
        int(node.snapshot_in_progress),
    )
    out.gauge(
        "nomadkv_snapshot_last_ok", "1 if the last snapshot succeeded.", int(node.last_snapshot_ok)
    )
    out.gauge(
        "nomadkv_snapshot_last_timestamp_seconds",
        "When the newest snapshot was written, Unix seconds.",
        node.last_snapshot_at,
    )
    out.gauge(
        "nomadkv_snapshot_last_duration_seconds",
        "How long the last snapshot took to write.",
        node.last_snapshot_seconds,
    )

    out.counter_family(
        "nomadkv_http_requests_total",
        "HTTP sidecar requests, by route, method and status.",
        [
            ({"route": route, "method": method, "status": str(status)}, count)
            for (route, method, status), count in sorted(http.requests.items())
        ],
    )
    out.counter(
        "nomadkv_http_connections_rejected_total",
        "HTTP sidecar connections refused (503) because http-maxclients was reached.",
        http.connections_rejected,
    )
    out.histogram(
        "nomadkv_http_request_duration_seconds",
        "Time the HTTP sidecar takes to answer a request.",
        http.duration.cumulative(),
        http.duration.sum,
    )
    return out.render()
