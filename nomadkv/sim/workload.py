"""Simulated clients: writes and linearizable reads, and the check that reads are fresh.

Owns: `Workload`, a few sequential clients that write unique values to a few
keys through `propose` and read them through `read_index`, retrying on
another node when a request is dropped, giving up after a timeout (the
outcome is then unknown, as for a real client).
Checks: a read must return a value written at or after every write to that key
that was acknowledged before the read was invoked (linearizability of reads
against acknowledged writes; values are unique, so each maps to one log index).
Never: acknowledges a write before the replica it was proposed to applied it
at the same (index, term).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from nomadkv.raft import Entry, ReadState, RequestDropped
from nomadkv.sim.checker import Violation
from nomadkv.sim.clock import EventQueue
from nomadkv.sim.cluster import Cluster
from nomadkv.sim.machine import parse_write, write_payload


@dataclass(slots=True)
class Operation:
    client: int
    seq: int
    key: str
    is_write: bool
    invoked_ms: int
    value: str = ""
    payload: bytes = b""
    context: bytes = b""
    required_index: int = 0
    term: int = 0
    read_index: int = 0
    done: bool = False


@dataclass(slots=True)
class WorkloadStats:
    writes_acked: int = 0
    writes_unknown: int = 0
    reads_ok: int = 0
    reads_unknown: int = 0
    dropped: int = 0
    latencies_ms: list[int] = field(default_factory=list)


class Workload:
    def __init__(
        self,
        cluster: Cluster,
        events: EventQueue,
        rng: random.Random,
        clients: int,
        keys: int,
        read_ratio: float,
        timeout_ms: int,
    ) -> None:
        self.cluster = cluster
        self.events = events
        self.rng = rng
        self.keys = [f"k{i}" for i in range(keys)]
        self.read_ratio = read_ratio
        self.timeout_ms = timeout_ms
        self.stats = WorkloadStats()
        self.active = True
        self.acked_index: dict[str, int] = {}
        self.value_index: dict[str, int] = {}
        self.pending_writes: dict[tuple[int, int], Operation] = {}
        self.pending_reads: dict[tuple[int, bytes], Operation] = {}
        self.waiting_reads: dict[int, list[Operation]] = {}
        self.leader_hint: dict[int, int] = {}
        self.seq = 0
        for client in range(clients):
            events.after(rng.randint(1, 50), self._next_op, client)

    # -- issuing -----------------------------------------------------------------------------

    def _next_op(self, client: int) -> None:
        if not self.active:
            return
        self.seq += 1
        key = self.rng.choice(self.keys)
        now = self.events.now_ms
        op = Operation(client, self.seq, key, self.rng.random() >= self.read_ratio, now)
        if op.is_write:
            op.value = f"c{client}.{self.seq}"
            op.payload = write_payload(key, op.value)
        else:
            op.context = f"r{client}.{self.seq}".encode()
            op.required_index = self.acked_index.get(key, 0)
        self.events.after(self.timeout_ms, self._timeout, op)
        self._submit(op)

    def _target(self, client: int) -> int:
        hint = self.leader_hint.get(client, 0)
        if hint and self.cluster.is_up(hint) and self.rng.random() < 0.9:
            return hint
        up = [r.id for r in self.cluster.up_replicas()]
        return self.rng.choice(up) if up else 0

    def _submit(self, op: Operation) -> None:
        if op.done:
            return
        node_id = self._target(op.client)
        if not node_id:
            self.events.after(20, self._submit, op)
            return
        raw = self.cluster.replicas[node_id].raw
        try:
            if op.is_write:
                index = raw.propose(op.payload)
                op.term = raw.raft.term
                self.pending_writes[(node_id, index)] = op
            else:
                raw.read_index(op.context)
                self.pending_reads[(node_id, op.context)] = op
        except RequestDropped as e:
            self.stats.dropped += 1
            self.leader_hint[op.client] = e.leader_id
            self.events.after(self.rng.randint(5, 30), self._submit, op)
            return
        self.leader_hint[op.client] = node_id
        self.cluster.process(node_id)

    def _finish(self, op: Operation) -> None:
        if op.done:
            return
        op.done = True
        self.stats.latencies_ms.append(self.events.now_ms - op.invoked_ms)
        self.events.after(self.rng.randint(1, 20), self._next_op, op.client)

    def _timeout(self, op: Operation) -> None:
        if op.done:
            return
        if op.is_write:
            self.stats.writes_unknown += 1
        else:
            self.stats.reads_unknown += 1
        op.done = True
        self.events.after(1, self._next_op, op.client)

    # -- Listener ----------------------------------------------------------------------------

    def on_apply(self, node_id: int, entry: Entry) -> None:
        write = parse_write(entry.data)
        if write is not None:
            self.value_index.setdefault(write[1], entry.index)
        op = self.pending_writes.pop((node_id, entry.index), None)
        if op is None or op.done:
            return
        if entry.term == op.term and entry.data == op.payload:
            self.stats.writes_acked += 1
            self.acked_index[op.key] = max(self.acked_index.get(op.key, 0), entry.index)
            self._finish(op)
        # Otherwise another leader's entry took the slot; the write's fate is unknown
        # (it cannot commit any more) and the client waits for its timeout.

    def on_read_state(self, node_id: int, read_state: ReadState) -> None:
        op = self.pending_reads.pop((node_id, read_state.context), None)
        if op is None or op.done:
            return
        op.read_index = read_state.index
        self.waiting_reads.setdefault(node_id, []).append(op)

    def after_ready(self, node_id: int) -> None:
        waiting = self.waiting_reads.get(node_id)
        if not waiting:
            return
        replica = self.cluster.replicas[node_id]
        applied = replica.machine.applied_index
        still = []
        for op in waiting:
            if op.done:
                continue
            if op.read_index > applied:
                still.append(op)
                continue
            value = replica.machine.kv.get(op.key)
            index = self.value_index[value] if value is not None else 0
            if index < op.required_index:
                raise Violation(
                    f"stale read: client {op.client} read {op.key}={value!r} (index {index}) on"
                    f" node {node_id} at read index {op.read_index}, but the write at index"
                    f" {op.required_index} was acknowledged before the read began"
                )
            self.stats.reads_ok += 1
            self._finish(op)
        self.waiting_reads[node_id] = still

    def on_crash(self, node_id: int) -> None:
        """A crashed replica forgets its pending reads (their clients time out)."""
        self.waiting_reads.pop(node_id, None)
