"""Hand-driven clusters for scenario tests: you choose who ticks, what is delivered, who fails.

Owns: `Scenario`, a Cluster on a ManualNetwork with the safety checkers on,
plus the verbs scenario tests are written in: campaign, propose, deliver,
drop, isolate, heal, crash, restart, wipe, rejoin, and a transcript of what happened.
Never: advances time or delivers anything unless asked, so a scenario reads
like the paper's figures, step by step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from nomadkv.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    Config,
    Entry,
    Message,
    RawNode,
    ReadState,
    Ready,
    StateRole,
)
from nomadkv.sim.cluster import Cluster, Replica, ReplicaOptions, describe
from nomadkv.sim.network import ManualNetwork


class Recorder:
    """The Listener of a scenario: keeps every Ready, read state and applied entry per node."""

    def __init__(self) -> None:
        self.readies: dict[int, list[Ready]] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.applied: dict[int, list[Entry]] = {}

    def after_send(self, node_id: int, ready: Ready) -> None:
        self.readies.setdefault(node_id, []).append(ready)

    def on_apply(self, node_id: int, entry: Entry) -> None:
        self.applied.setdefault(node_id, []).append(entry)

    def on_read_state(self, node_id: int, read_state: ReadState) -> None:
        self.read_states.setdefault(node_id, []).append(read_state)

    def after_ready(self, node_id: int) -> None:
        pass


class Scenario:
    def __init__(
        self,
        voters: tuple[int, ...] = (1, 2, 3),
        seed: int = 0,
        config: Config | None = None,
        snapshot_every: int = 1 << 62,
        snapshot_keep: int = 0,
    ) -> None:
        base = config if config is not None else Config(id=1)
        self.transcript: list[str] = []
        self.network = ManualNetwork()
        self.recorder = Recorder()
        self.cluster = Cluster(
            ReplicaOptions(replace(base, id=1), snapshot_every, snapshot_keep),
            self.network,
            random.Random(seed),
            listener=self.recorder,
            trace=self.transcript.append,
        )
        self.network.attach(self.cluster)
        for node_id in voters:
            self.cluster.add_replica(node_id, voters)

    # -- looking -----------------------------------------------------------------------------

    def node(self, node_id: int) -> RawNode:
        return self.cluster.replicas[node_id].raw

    def replica(self, node_id: int) -> Replica:
        return self.cluster.replicas[node_id]

    def leader_id(self) -> int:
        leader = self.cluster.leader()
        return leader.id if leader is not None else 0

    def role(self, node_id: int) -> StateRole:
        return self.cluster.replicas[node_id].role

    def term(self, node_id: int) -> int:
        return self.node(node_id).raft.term

    def commit(self, node_id: int) -> int:
        return self.node(node_id).raft.log.commit_index

    def applied_values(self, node_id: int) -> dict[str, str]:
        return dict(self.cluster.replicas[node_id].machine.kv)

    def in_flight(self) -> list[Message]:
        return self.network.take()

    # -- acting ------------------------------------------------------------------------------

    def tick(self, node_id: int, times: int = 1) -> None:
        for _ in range(times):
            self.cluster.tick(node_id)
            self.cluster.check()

    def tick_all(self, times: int = 1) -> None:
        for _ in range(times):
            for replica in list(self.cluster.replicas.values()):
                if replica.up:
                    self.cluster.tick(replica.id)
            self.cluster.check()

    def campaign(self, node_id: int) -> None:
        self.transcript.append(f"node {node_id} campaigns")
        self.node(node_id).campaign()
        self.cluster.process(node_id)

    def propose(self, node_id: int, data: bytes) -> int:
        index = self.node(node_id).propose(data)
        self.transcript.append(f"node {node_id} proposes {data!r} at {index}")
        self.cluster.process(node_id)
        return index

    def propose_conf_change(
        self,
        node_id: int,
        *changes: ConfChangeSingle,
        transition: ConfChangeTransition = ConfChangeTransition.AUTO,
    ) -> int:
        index = self.node(node_id).propose_conf_change(ConfChange(changes, transition))
        self.transcript.append(f"node {node_id} proposes {changes} at {index}")
        self.cluster.process(node_id)
        return index

    def act(self, node_id: int, action: Callable[[RawNode], object]) -> None:
        """Call any RawNode input on `node_id`, then run its Ready loop."""
        action(self.node(node_id))
        self.cluster.process(node_id)

    def deliver(self) -> int:
        """Deliver until the network is quiet."""
        return self.network.deliver_all()

    def deliver_only(self, keep: Callable[[Message], bool]) -> None:
        """Deliver until quiet, dropping every message for which `keep` is false."""
        while self.network.queue:
            for m in self.network.take():
                if keep(m):
                    self.cluster.deliver(m)
                    self.cluster.check()
                else:
                    self.transcript.append(f"drop {describe(m)}")

    def add_node(self, node_id: int) -> Replica:
        """Start an empty replica that waits to be added (a joiner)."""
        return self.cluster.add_replica(node_id)

    def isolate(self, node_id: int) -> None:
        self.transcript.append(f"isolate {node_id}")
        self.network.isolate(node_id)

    def cut(self, a: int, b: int) -> None:
        self.transcript.append(f"cut {a} <-> {b}")
        self.network.cut(a, b)

    def heal(self) -> None:
        self.transcript.append("heal")
        self.network.heal()

    def crash(self, node_id: int) -> None:
        self.cluster.crash(node_id)

    def restart(self, node_id: int) -> None:
        self.cluster.restart(node_id)

    def wipe(self, node_id: int) -> None:
        """The node crashes and loses its whole disk; it stays down until `rejoin`."""
        self.cluster.wipe(node_id)

    def rejoin(self, node_id: int) -> None:
        """Start a wiped node again, empty and without configuration (a joiner)."""
        self.cluster.rejoin(node_id)

    def settle(self, rounds: int = 50) -> None:
        """Tick everyone and deliver, `rounds` times: time passes on a healthy network."""
        for _ in range(rounds):
            self.tick_all()
            self.deliver()
