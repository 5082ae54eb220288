"""Replicas of one Raft group in one thread, each running the Ready loop against a SimDisk.

Owns: `Replica` (a RawNode, its simulated disk and its state machine),
`Cluster` (the replicas, crash and restart, the Ready loop exactly as the
server will run it, and the safety checks after every step) and the
`Transport` and `Listener` seams that the network and the workload plug into.
Never: reads a clock or global randomness; time is whatever the driver says,
randomness comes from the RNG it is given.
Invariants: the Ready loop persists, syncs when asked, sends, applies, then
advances; a crashed replica keeps only what its disk synced; a wiped one keeps
nothing and restarts only as a joiner.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from nomadkv.raft import Config, Message, RawNode, ReadState, Ready, StateRole
from nomadkv.raft.entry import Entry
from nomadkv.sim.checker import SafetyChecker
from nomadkv.sim.disk import SimDisk
from nomadkv.sim.machine import KvMachine


class Transport(Protocol):
    def send(self, message: Message) -> None: ...


class Listener(Protocol):
    """What the client workload (and the fault injector) observe of the replicas."""

    def after_send(self, node_id: int, ready: Ready) -> None: ...

    def on_apply(self, node_id: int, entry: Entry) -> None: ...

    def on_read_state(self, node_id: int, read_state: ReadState) -> None: ...

    def after_ready(self, node_id: int) -> None: ...


class NullListener:
    def after_send(self, node_id: int, ready: Ready) -> None:
        pass

    def on_apply(self, node_id: int, entry: Entry) -> None:
        pass

    def on_read_state(self, node_id: int, read_state: ReadState) -> None:
        pass

    def after_ready(self, node_id: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ReplicaOptions:
    """How every replica is configured; `config.id` and `config.voters` are set per node."""

    config: Config
    snapshot_every: int = 1 << 62
    snapshot_keep: int = 0


class Replica:
    __slots__ = ("decommissioned", "disk", "founders", "id", "machine", "raw", "rng", "up")

    def __init__(self, node_id: int, founders: tuple[int, ...], rng: random.Random) -> None:
        self.id = node_id
        self.founders = founders
        self.rng = rng
        self.disk = SimDisk()
        self.machine = KvMachine()
        self.raw: RawNode
        self.up = False
        self.decommissioned = False

    @property
    def role(self) -> StateRole:
        return self.raw.role if self.up else StateRole.FOLLOWER


class Cluster:
    def __init__(
        self,
        options: ReplicaOptions,
        transport: Transport,
        rng: random.Random,
        listener: Listener | None = None,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self.transport = transport
        self.rng = rng
        self.listener: Listener = listener if listener is not None else NullListener()
        self.checker = SafetyChecker()
        self.replicas: dict[int, Replica] = {}
        self.trace = trace

    # -- membership of the simulation --------------------------------------------------------

    def add_replica(self, node_id: int, founders: tuple[int, ...] = ()) -> Replica:
        """A founding member (founders = the initial voters) or a joiner (founders = ())."""
        replica = Replica(node_id, founders, random.Random(self.rng.getrandbits(64)))
        self.replicas[node_id] = replica
        self._start(replica)
        return replica

    def _start(self, replica: Replica) -> None:
        snapshot = replica.disk.live.snapshot()
        machine = KvMachine()
        if snapshot.meta.index:
            machine.restore(snapshot)
        replica.machine = machine
        config = replace(
            self.options.config,
            id=replica.id,
            voters=replica.founders,
            applied=snapshot.meta.index,
        )
        replica.raw = RawNode(config, replica.disk.live, replica.rng)
        replica.up = True
        if self.trace:
            self.trace(f"node {replica.id} starts (applied {snapshot.meta.index})")
        self.process(replica.id)

    def crash(self, node_id: int) -> None:
        replica = self.replicas[node_id]
        if not replica.up:
            return
        replica.up = False
        replica.disk.crash()
        if self.trace:
            self.trace(f"node {node_id} crashes")

    def restart(self, node_id: int) -> None:
        replica = self.replicas[node_id]
        if replica.up or replica.decommissioned:
            return
        self._start(replica)

    def wipe(self, node_id: int) -> None:
        """The node loses its whole disk: it crashes and comes back only through `rejoin`
        (as docs/raft.md says a member that lost its data must: removed from the group,
        then started empty as a joiner and added again)."""
        self.crash(node_id)
        replica = self.replicas[node_id]
        replica.disk = SimDisk()
        replica.founders = ()
        replica.decommissioned = True
        if self.trace:
            self.trace(f"node {node_id} loses its disk")

    def rejoin(self, node_id: int) -> None:
        """Start a wiped node again as a joiner: empty storage, no configuration."""
        replica = self.replicas[node_id]
        replica.decommissioned = False
        self._start(replica)

    def decommission(self, node_id: int) -> None:
        self.crash(node_id)
        self.replicas[node_id].decommissioned = True

    def is_up(self, node_id: int) -> bool:
        replica = self.replicas.get(node_id)
        return replica is not None and replica.up

    def up_replicas(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.up]

    def leader(self) -> Replica | None:
        """The running leader of the highest term, if any."""
        best = None
        for r in self.replicas.values():
            if (
                r.up
                and r.raw.role is StateRole.LEADER
                and (best is None or r.raw.raft.term > best.raw.raft.term)
            ):
                best = r
        return best

    # -- inputs ------------------------------------------------------------------------------

    def tick(self, node_id: int) -> None:
        replica = self.replicas[node_id]
        if replica.up:
            replica.raw.tick()
            self.process(node_id)

    def deliver(self, message: Message) -> None:
        replica = self.replicas.get(message.to)
        if replica is None or not replica.up:
            return
        if self.trace:
            self.trace(f"deliver {describe(message)}")
        replica.raw.step(message)
        self.process(message.to)

    # -- the Ready loop ------------------------------------------------------------------------

    def process(self, node_id: int) -> None:
        replica = self.replicas[node_id]
        raw = replica.raw
        raft = raw.raft
        log = raft.log
        checker = self.checker
        listener = self.listener
        while raw.has_ready():
            rd = raw.ready()
            checker.on_commit(node_id, log, raft.term)
            disk = replica.disk
            if rd.snapshot is not None:
                disk.apply_snapshot(rd.snapshot)
            if rd.entries:
                checker.on_persist(node_id, log, rd.entries)
                disk.append(rd.entries)
            if rd.hard_state is not None:
                disk.set_hard_state(rd.hard_state)
            if rd.must_sync:
                disk.sync()
            if self.trace and (rd.soft_state or rd.hard_state):
                self.trace(f"node {node_id} {rd.soft_state} {rd.hard_state}")
            send = self.transport.send
            for m in rd.messages:
                send(m)
            listener.after_send(node_id, rd)
            machine = replica.machine
            if rd.snapshot is not None:
                machine.restore(rd.snapshot)
                checker.on_restore(node_id, machine.applied_index, machine.digest)
            for e in rd.committed_entries:
                machine.apply(e)
                checker.on_apply(node_id, e, machine.digest)
                listener.on_apply(node_id, e)
            for rs in rd.read_states:
                listener.on_read_state(node_id, rs)
            raw.advance(rd)
            listener.after_ready(node_id)
            self._maybe_snapshot(replica)

    def _maybe_snapshot(self, replica: Replica) -> None:
        options = self.options
        applied = replica.machine.applied_index
        if applied - replica.disk.live.snapshot().meta.index >= options.snapshot_every:
            replica.disk.create_snapshot(
                applied,
                replica.raw.conf_state(),
                replica.machine.snapshot_data(),
                options.snapshot_keep,
            )

    def check(self) -> None:
        """Election Safety and Leader Completeness over every running replica."""
        self.checker.check_roles(
            [
                (r.id, r.raw.role, r.raw.raft.term, r.raw.raft.log)
                for r in self.replicas.values()
                if r.up
            ]
        )


def describe(m: Message) -> str:
    """A one-line transcript form of a message."""
    parts = [f"{m.sender}->{m.to} {m.type.name} t{m.term}"]
    if m.index or m.log_term:
        parts.append(f"i{m.index}/t{m.log_term}")
    if m.commit:
        parts.append(f"c{m.commit}")
    if m.entries:
        parts.append(f"[{m.entries[0].index}..{m.entries[-1].index}]")
    if m.reject:
        parts.append(f"REJECT hint {m.reject_hint}")
    if m.snapshot is not None:
        s = m.snapshot
        parts.append(f"snap@{s.meta.index} off {s.offset}+{len(s.data)}{' done' if s.done else ''}")
    return " ".join(parts)
