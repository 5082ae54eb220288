"""Histories from a simulated linearizable register, and mutations that break them.

Owns: `linearizable_history`, which runs simulated clients against a perfect
register store (every operation takes effect at one instant inside its
interval) and records what they saw, including operations that fail and
operations whose outcome is unknown; and mutations that turn such a history
into one that is provably not linearizable. Tests use both to check the
checker, and the benchmark uses them to time it.

Never: does I/O or reads a clock; all randomness comes from the given
``random.Random``, so one seed gives one history.

Invariants: write values are unique positive multiples of 1000 and every
value the store ever holds is non-negative, so a read of a negative value is
impossible; an ``info`` operation took effect or not (a coin flip), and the
process that issued it issues nothing afterwards.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import replace

from nomadkv.jepsen.history import Kind, Operation, Outcome, Value
from nomadkv.jepsen.linearizability import RegisterModel

IMPOSSIBLE = -1  # no operation of `linearizable_history` ever produces it


def linearizable_history(
    rng: random.Random,
    operations: int,
    keys: Sequence[str] = ("k",),
    processes: int = 5,
    kinds: Sequence[Kind] = ("read", "write", "incr"),
    info_rate: float = 0.0,
    fail_rate: float = 0.0,
    latency_s: float = 0.002,
) -> list[Operation]:
    """``operations`` operations by ``processes`` concurrent clients, each
    operation's effect at a random instant of its interval."""
    model = RegisterModel()
    # (invoke time, process): when each live process issues its next operation
    ready = [(rng.random() * latency_s, p) for p in range(processes)]
    heapq.heapify(ready)
    next_process = processes
    # (effect time, seq, the operation with its result still to fill in, takes effect)
    planned: list[tuple[float, int, Operation, bool]] = []
    write_seq = 0
    for seq in range(operations):
        invoke, process = heapq.heappop(ready)
        duration = rng.expovariate(1 / latency_s)
        complete = invoke + duration
        effect_at = invoke + rng.random() * duration
        kind = rng.choice(kinds)
        value: Value = None
        if kind == "write":
            write_seq += 1
            value = write_seq * 1000
        roll = rng.random()
        outcome: Outcome = "ok"
        if roll < info_rate:
            outcome = "info"
        elif roll < info_rate + fail_rate:
            outcome = "fail"
        op = Operation(process, rng.choice(keys), kind, value, invoke, complete, outcome)
        takes_effect = outcome == "ok"
        if outcome == "info":
            # The client gave up; the request may still land, late, or never.
            process, next_process = next_process, next_process + 1
            takes_effect = rng.random() < 0.5
            if rng.random() < 0.5:
                effect_at = complete + rng.expovariate(1 / (10 * latency_s))
        planned.append((effect_at, seq, op, takes_effect))
        heapq.heappush(ready, (complete + rng.random() * latency_s / 4, process))
    state: dict[str, Value] = {}
    history: list[Operation] = []
    for _, _, op, takes_effect in sorted(planned, key=lambda p: (p[0], p[1])):
        current = state.get(op.key, model.init())
        if takes_effect:
            _, state[op.key] = model.step(current, replace(op, outcome="info"))
        result = op.value
        if op.kind == "read":
            result = current if op.outcome == "ok" else None
        elif op.kind == "incr":
            result = state[op.key] if op.outcome == "ok" else None
        history.append(replace(op, value=result))
    history.sort(key=lambda o: o.invoke)
    return history


def impossible_read(history: list[Operation], rng: random.Random) -> list[Operation] | None:
    """The history with one ``ok`` read changed to a value nothing wrote."""
    reads = [i for i, op in enumerate(history) if op.kind == "read" and op.outcome == "ok"]
    if not reads:
        return None
    i = rng.choice(reads)
    mutated = list(history)
    mutated[i] = replace(history[i], value=IMPOSSIBLE)
    return mutated


def stale_read(history: list[Operation], rng: random.Random) -> list[Operation] | None:
    """The history with one ``ok`` read changed to return a value that was
    certainly overwritten before the read began: a write W of that value
    completed before another write W2 began, and W2 completed before the read
    began. Only for keys without incr (whose values may repeat) and without
    indeterminate writes of W's value (values are unique)."""
    candidates = []
    for key in sorted({op.key for op in history}):
        ops = [op for op in history if op.key == key and op.outcome != "fail"]
        if any(op.kind == "incr" for op in ops):
            continue
        writes = [op for op in ops if op.kind == "write" and op.outcome == "ok"]
        for i, read in enumerate(history):
            if read.key != key or read.kind != "read" or read.outcome != "ok":
                continue
            for old in writes:
                assert old.complete is not None
                overwritten = any(
                    w2.invoke > old.complete
                    and w2.complete is not None
                    and w2.complete < read.invoke
                    for w2 in writes
                )
                if overwritten and old.value != read.value:
                    candidates.append((i, old.value))
    if not candidates:
        return None
    i, value = rng.choice(candidates)
    mutated = list(history)
    mutated[i] = replace(history[i], value=value)
    return mutated
