"""One seeded simulation run: a fault phase, a healing phase, and the verdict.

Owns: `SimParams` (everything a run varies, drawn from its seed: cluster size,
Raft options, fault rates, workload), `Simulation` (drives a Cluster, a
SimNetwork, a Workload, a fault injector and a membership operator on one
EventQueue) and `SimResult`.
Phases (VOPR-style): during the fault phase, partitions (symmetric and
asymmetric), crashes that lose unsynced writes, restarts, message loss,
duplication, reordering, membership changes and leadership transfers are
injected at random; then the network heals, every replica restarts, and the
cluster must elect a leader, commit a fresh entry and apply it on every
member, and serve a read, within a bounded number of ticks (liveness).
Never: uses global randomness or the wall clock. One seed replays a run
exactly: `python -m nomadkv.sim --seed <seed>`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from nomadkv.raft import (
    ConfChange,
    ConfChangeError,
    ConfChangeTransition,
    Config,
    Entry,
    InvariantViolation,
    MessageType,
    ReadState,
    Ready,
    RequestDropped,
    StateRole,
    add_learner,
    add_voter,
    remove_node,
)
from nomadkv.raft.confchange import ConfChangeSingle
from nomadkv.sim.checker import Violation
from nomadkv.sim.clock import EventQueue
from nomadkv.sim.cluster import Cluster, Replica, ReplicaOptions
from nomadkv.sim.network import LinkFaults, SimNetwork
from nomadkv.sim.workload import Workload, WorkloadStats

TICK_MS = 10
PROBE_READ = b"probe-read:"
MAX_MEMBERS = 7
# A re-added node is promoted back to voter once this close to the leader's log
# (what the server does for CLUSTER MEET).
PROMOTE_LAG_ENTRIES = 16


@dataclass(slots=True)
class WipedNode:
    """A node that lost its disk, on its way back in as a new member (docs/raft.md):
    removed from the configuration (unless it is a learner), restarted empty as a
    joiner, added as a learner, promoted once caught up if it was a voter."""

    node_id: int
    was_voter: bool
    stage: str = "remove"  # -> "add" -> "promote" -> "done"


@dataclass(frozen=True, slots=True)
class SimParams:
    nodes: int
    election_ticks: int
    heartbeat_ticks: int
    pre_vote: bool
    check_quorum: bool
    lease_reads: bool
    max_size_per_msg: int
    max_inflight_msgs: int
    snapshot_every: int
    snapshot_keep: int
    snapshot_chunk_bytes: int
    fault_ms: int
    fault_gap_ms: int
    crashes: bool
    partitions: bool
    lossy: bool
    membership: bool
    transfers: bool
    buggify: float
    clients: int
    read_ratio: float
    liveness_ticks: int
    disk_loss: bool

    @classmethod
    def from_seed(cls, seed: int) -> SimParams:
        rng = random.Random(f"params:{seed}")
        election_ticks = rng.randint(8, 16)
        check_quorum = rng.random() < 0.8
        return cls(
            nodes=rng.choice((3, 5)),
            election_ticks=election_ticks,
            heartbeat_ticks=rng.randint(1, 3),
            pre_vote=rng.random() < 0.8,
            check_quorum=check_quorum,
            lease_reads=check_quorum and rng.random() < 0.4,
            max_size_per_msg=rng.choice((1, 1, 16, 64, 1 << 20)),
            max_inflight_msgs=rng.choice((1, 4, 256)),
            snapshot_every=rng.choice((8, 20, 50, 1 << 30)),
            snapshot_keep=rng.choice((0, 3, 10)),
            snapshot_chunk_bytes=rng.choice((16, 64, 1 << 20)),
            fault_ms=rng.randint(1500, 3000),
            fault_gap_ms=rng.choice((30, 100, 200, 400)),
            crashes=rng.random() < 0.8,
            partitions=rng.random() < 0.8,
            lossy=rng.random() < 0.7,
            membership=rng.random() < 0.5,
            transfers=rng.random() < 0.5,
            buggify=rng.choice((0.0, 0.1, 0.3, 0.5)),
            clients=rng.randint(1, 6),
            read_ratio=rng.choice((0.2, 0.5, 0.8)),
            liveness_ticks=60 * election_ticks,
            disk_loss=rng.random() < 0.4,  # drawn last: the other draws keep their values
        )

    def replica_options(self) -> ReplicaOptions:
        config = Config(
            id=1,
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            max_inflight_msgs=self.max_inflight_msgs,
            max_size_per_msg=self.max_size_per_msg,
            snapshot_chunk_bytes=self.snapshot_chunk_bytes,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            lease_reads=self.lease_reads,
        )
        return ReplicaOptions(config, self.snapshot_every, self.snapshot_keep)


@dataclass(slots=True)
class SimResult:
    seed: int
    ok: bool
    error: str = ""
    sim_ms: int = 0
    messages: int = 0
    commit_index: int = 0
    heal_ticks: int = 0
    stats: WorkloadStats = field(default_factory=WorkloadStats)

    def replay_line(self, mutation: str = "") -> str:
        extra = f" --mutation {mutation}" if mutation else ""
        return f"python -m nomadkv.sim --seed {self.seed:#x}{extra}"


class Simulation:
    def __init__(
        self,
        seed: int,
        params: SimParams | None = None,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.seed = seed
        self.params = params if params is not None else SimParams.from_seed(seed)
        self.rng = random.Random(seed)
        self.events = EventQueue()
        self.network = SimNetwork(self.events, random.Random(self.rng.getrandbits(64)))
        self._trace = trace
        self.cluster = Cluster(
            self.params.replica_options(),
            self.network,
            random.Random(self.rng.getrandbits(64)),
            trace=self._stamp if trace else None,
        )
        self.network.attach(self.cluster)
        self.fault_rng = random.Random(self.rng.getrandbits(64))
        self.member_seen_at: dict[int, int] = {}
        self.next_id = self.params.nodes + 1
        self.ticking: set[int] = set()
        self.wiped: WipedNode | None = None
        self.probe_data = b""
        self.probe_term = 0
        self.probe_index = 0
        self.probe_applied = False
        self.probe_read_ok = False
        self.healing = False

    def _stamp(self, line: str) -> None:
        if self._trace is not None:
            self._trace(f"{self.events.now_ms:>7}ms {line}")

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> SimResult:
        result = SimResult(self.seed, ok=True)
        try:
            self._run(result)
        except (Violation, InvariantViolation) as e:
            result.ok = False
            result.error = f"{type(e).__name__}: {e}"
        result.sim_ms = self.events.now_ms
        result.messages = self.network.sent
        return result

    def _run(self, result: SimResult) -> None:
        p = self.params
        founders = tuple(range(1, p.nodes + 1))
        for node_id in founders:
            self.cluster.add_replica(node_id, founders)
            self.ticking.add(node_id)
            self.events.after(self.rng.randint(1, TICK_MS), self._tick, node_id)
        self.workload = Workload(
            self.cluster,
            self.events,
            random.Random(self.rng.getrandbits(64)),
            clients=p.clients,
            keys=4,
            read_ratio=p.read_ratio,
            timeout_ms=4 * p.election_ticks * TICK_MS,
        )
        self.cluster.listener = self
        if p.lossy:
            self.network.faults = self._random_link_faults()
        self.events.after(p.fault_gap_ms, self._inject_fault)
        if p.membership or p.transfers:
            self.events.after(self.fault_rng.randint(100, 400), self._operate)
        self.events.run_until(p.fault_ms, self._after_step)

        self._heal()
        heal_start = self.events.now_ms
        deadline = heal_start + p.liveness_ticks * TICK_MS
        self.events.after(TICK_MS, self._drive_probe)
        if not self.events.run_until(deadline, self._after_step_until_live):
            raise Violation(
                f"liveness: no leader committed and applied a fresh entry on every member"
                f" within {p.liveness_ticks} ticks of healing ({self._describe_state()})"
            )
        result.heal_ticks = (self.events.now_ms - heal_start) // TICK_MS
        leader = self.cluster.leader()
        result.commit_index = leader.raw.raft.log.commit_index if leader else 0
        result.stats = self.workload.stats

    def _after_step(self) -> bool:
        self.cluster.check()
        return False

    def _after_step_until_live(self) -> bool:
        self.cluster.check()
        return self.probe_applied and self.probe_read_ok

    def _tick(self, node_id: int) -> None:
        replica = self.cluster.replicas[node_id]
        if replica.decommissioned:
            self.ticking.discard(node_id)
            return
        self.cluster.tick(node_id)
        self.events.after(TICK_MS, self._tick, node_id)

    # -- faults ------------------------------------------------------------------------------

    def _random_link_faults(self) -> LinkFaults:
        rng = self.fault_rng
        return LinkFaults(
            loss=rng.choice((0.0, 0.01, 0.05, 0.15)),
            duplicate=rng.choice((0.0, 0.02, 0.1)),
            delay_min_ms=1,
            delay_max_ms=rng.choice((2, 10, 25)),
            slow=rng.choice((0.0, 0.02, 0.1)),
            slow_max_ms=rng.choice((50, 200, 400)),
        )

    def _inject_fault(self) -> None:
        if self.healing:
            return
        p = self.params
        rng = self.fault_rng
        kinds = ["heal"]
        if p.partitions:
            kinds += ["heal", "isolate", "isolate_leader", "split", "one_way"]
        if p.crashes:
            kinds += ["crash", "crash_leader", "restart"]
        if p.lossy:
            kinds.append("links")
        if p.disk_loss:
            kinds.append("wipe")
        kind = rng.choice(kinds)
        live = [r.id for r in self.cluster.replicas.values() if not r.decommissioned]
        net = self.network
        if kind == "heal":
            net.blocked.clear()
        elif kind == "isolate":
            net.blocked.clear()
            net.isolate(rng.choice(live), live)
        elif kind == "isolate_leader":
            leader = self.cluster.leader()
            if leader is not None:
                net.isolate(leader.id, live)
        elif kind == "split":
            net.blocked.clear()
            side = rng.sample(live, rng.randint(1, max(1, len(live) // 2)))
            net.split(side, [n for n in live if n not in side])
        elif kind == "one_way":
            src = rng.choice(live)
            net.block_one_way(src, rng.sample(live, rng.randint(1, len(live))))
        elif kind in ("crash", "crash_leader"):
            up = [n for n in live if self.cluster.is_up(n)]
            leader = self.cluster.leader()
            if kind == "crash_leader" and leader is not None:
                up = [leader.id]
            if up:
                victim = rng.choice(up)
                self._crash(victim)
                self.events.after(rng.randint(20, 800), self._restart, victim)
        elif kind == "restart":
            for n in live:
                self._restart(n)
        elif kind == "wipe":
            victim = rng.choice(live)
            if self._can_lose(victim):
                self._wipe(victim)
        else:
            net.faults = self._random_link_faults()
        self._stamp(f"fault {kind} blocked={sorted(net.blocked)}")
        self.events.after(rng.randint(p.fault_gap_ms // 2, p.fault_gap_ms * 2), self._inject_fault)

    def _crash(self, node_id: int) -> None:
        self.cluster.crash(node_id)
        self.workload.on_crash(node_id)

    def _restart(self, node_id: int) -> None:
        if not self.cluster.replicas[node_id].decommissioned:
            self.cluster.restart(node_id)

    def _can_lose(self, node_id: int) -> bool:
        """Whether the group survives losing `node_id`'s data: one such loss at a time,
        and the other voters must be able to commit its removal. So: a learner; or a
        voter of a simple configuration of at least three voters, all running and all
        using that configuration (a voter still on an older one, or one that never
        received anything, would make the loss a second failure)."""
        if self.wiped is not None and self.wiped.stage != "done":
            return False
        leader = self.cluster.leader()
        if leader is None:
            return False
        cs = leader.raw.conf_state()
        if node_id in cs.learners:
            return True
        if node_id not in cs.voters or len(cs.voters) < 3 or cs.voters_outgoing:
            return False
        settled = leader.raw.raft.pending_conf_index
        replicas = self.cluster.replicas
        return all(
            replicas[v].up and replicas[v].raw.raft.log.last_applied >= settled for v in cs.voters
        )

    def _wipe(self, node_id: int) -> None:
        leader = self.cluster.leader()
        was_voter = leader is not None and leader.raw.raft.tracker.is_voter(node_id)
        self.cluster.wipe(node_id)
        self.network.drop_connections(node_id)
        self.workload.on_crash(node_id)
        self.wiped = WipedNode(node_id, was_voter)
        self.events.after(TICK_MS, self._bring_back_wiped)

    def _bring_back_wiped(self) -> None:
        """The operator's runbook for a node that lost its data, one step per call,
        retried until it takes: CLUSTER FORGET, restart with --cluster-join, CLUSTER
        MEET, promotion once caught up. Runs in the healing phase too."""
        wiped = self.wiped
        if wiped is None or wiped.stage == "done":
            return
        self.events.after(2 * TICK_MS, self._bring_back_wiped)
        leader = self.cluster.leader()
        if leader is None:
            return
        node_id = wiped.node_id
        raw = leader.raw
        cs = raw.conf_state()  # as of the leader's applied index: committed
        change = None
        if wiped.stage == "remove":
            # A learner never voted and its acknowledgements never counted: it may come
            # back empty without leaving (the leader finds it holds less than it
            # acknowledged and sends the snapshot). A voter must be removed first.
            if node_id not in cs.members() or node_id in cs.learners:
                self._stamp(f"operator: node {node_id} restarts empty to rejoin")
                self.cluster.rejoin(node_id)
                self._start_ticking(node_id)
                wiped.stage = "add"
                return
            change = remove_node(node_id)
        elif wiped.stage == "add":
            if node_id in cs.members():
                wiped.stage = "promote" if wiped.was_voter else "done"
                return
            change = add_learner(node_id)
        else:
            progress = raw.status().progress.get(node_id)
            if progress is None or not progress.is_learner:
                wiped.stage = "done"  # promoted, or removed by the other operator
                return
            if (
                progress.state == "REPLICATE"
                and progress.recent_active
                and progress.match_index + PROMOTE_LAG_ENTRIES >= raw.status().last_index
            ):
                change = add_voter(node_id)
        if change is None or cs.voters_outgoing:
            return
        try:
            raw.propose_conf_change(ConfChange((change,)))
        except (RequestDropped, ConfChangeError):
            return
        self._stamp(f"operator: propose {change} for wiped node {node_id}")
        self.cluster.process(leader.id)

    def _start_ticking(self, node_id: int) -> None:
        if node_id not in self.ticking:
            self.ticking.add(node_id)
            self.events.after(1 + node_id % TICK_MS, self._tick, node_id)

    def _heal(self) -> None:
        self.healing = True
        self.network.heal()
        for replica in self.cluster.replicas.values():
            if not replica.decommissioned:
                self.cluster.restart(replica.id)
        self._stamp("heal: network clean, every replica up")

    # -- membership operator -----------------------------------------------------------------

    def _operate(self) -> None:
        p = self.params
        rng = self.fault_rng
        self.events.after(rng.randint(150, 600), self._operate)
        leader = self.cluster.leader()
        if leader is None:
            return
        self._decommission_removed(leader)
        if self.healing:
            return
        cs = leader.raw.conf_state()
        actions = []
        if p.membership and not cs.voters_outgoing:
            actions += ["add_learner", "promote", "remove", "demote", "replace"]
        if p.transfers:
            actions.append("transfer")
        if not actions:
            return
        action = rng.choice(actions)
        voters = list(cs.voters)
        learners = list(cs.learners)
        changes: tuple[ConfChangeSingle, ...] = ()
        transition = ConfChangeTransition.AUTO
        if action == "transfer":
            target = rng.choice(voters)
            try:
                leader.raw.transfer_leadership(target)
            except RequestDropped:
                return
            self._stamp(f"operator: transfer leadership {leader.id} -> {target}")
            self.cluster.process(leader.id)
            return
        members = len(voters) + len(learners)
        if action == "add_learner" and members < MAX_MEMBERS:
            changes = (add_learner(self.next_id),)
        elif action == "promote" and learners:
            changes = (add_voter(rng.choice(learners)),)
        elif action == "remove" and len(voters) > 3:
            changes = (remove_node(rng.choice(voters)),)
        elif action == "remove" and learners:
            changes = (remove_node(rng.choice(learners)),)
        elif action == "demote" and len(voters) > 3:
            changes = (add_learner(rng.choice(voters)),)
        elif action == "replace" and learners:
            changes = (add_voter(rng.choice(learners)), remove_node(rng.choice(voters)))
            transition = rng.choice(list(ConfChangeTransition)[:2])
        if not changes:
            return
        try:
            leader.raw.propose_conf_change(ConfChange(changes, transition))
        except RequestDropped:
            return
        self._stamp(f"operator: propose {changes} {transition.name}")
        if action == "add_learner":
            self.cluster.add_replica(self.next_id)
            self.ticking.add(self.next_id)
            self.events.after(rng.randint(1, TICK_MS), self._tick, self.next_id)
            self.next_id += 1
        self.cluster.process(leader.id)

    def _decommission_removed(self, leader: Replica) -> None:
        """Shut down replicas that a committed configuration change removed.

        A replica's configuration is the one as of its applied index, which may lag.
        Node x was removed if some replica applied a configuration containing x at
        index i, and the leader applied past i to a configuration without x.
        """
        seen = self.member_seen_at
        for up in self.cluster.up_replicas():
            applied = up.raw.raft.log.last_applied
            for node_id in up.raw.conf_state().members():
                seen[node_id] = max(seen.get(node_id, 0), applied)
        applied = leader.raw.raft.log.last_applied
        members = leader.raw.conf_state().members()
        wiped = self.wiped
        rejoining = wiped.node_id if wiped is not None and wiped.stage == "add" else 0
        for node_id, seen_at in sorted(seen.items()):
            replica = self.cluster.replicas.get(node_id)
            if node_id in members or seen_at >= applied or replica is None:
                continue
            if node_id == rejoining:
                seen.pop(node_id)  # removed on purpose; it is being added again
                continue
            if not replica.decommissioned:
                self._stamp(f"operator: decommission removed node {node_id}")
                self.cluster.decommission(node_id)
                self.workload.on_crash(node_id)

    # -- liveness ----------------------------------------------------------------------------

    def on_apply(self, node_id: int, entry: Entry) -> None:
        if self.probe_term and entry.data == self.probe_data:
            self.probe_index = entry.index
        self.workload.on_apply(node_id, entry)

    def on_read_state(self, node_id: int, read_state: ReadState) -> None:
        if read_state.context.startswith(PROBE_READ):
            self.probe_read_ok = True
            return
        self.workload.on_read_state(node_id, read_state)

    def after_ready(self, node_id: int) -> None:
        self.workload.after_ready(node_id)

    def after_send(self, node_id: int, ready: Ready) -> None:
        """Buggify (FoundationDB style): strike at the moments that matter most: right
        after a node granted a vote (crash it, then restart it at once), right after a
        node became leader (cut it off before its first appends land), and now and then
        right after a leader sent appends (cut it off mid-replication) or a follower
        acknowledged one (crash it for a while)."""
        chance = self.params.buggify
        if not chance or self.healing:
            return
        rng = self.fault_rng
        soft = ready.soft_state
        if soft is not None and soft.role is StateRole.LEADER and rng.random() < chance:
            self.events.after(rng.randint(0, 5), self._isolate_for_a_while, node_id)
        elif sends(ready, MessageType.APPEND) and rng.random() < chance / 3:
            self.events.after(rng.randint(0, 10), self._isolate_for_a_while, node_id)
        if sends(ready, MessageType.VOTE_RESP) and rng.random() < chance:
            self.events.after(rng.randint(0, 3), self._bounce, node_id, 1, 20)
        elif sends(ready, MessageType.APPEND_RESP) and rng.random() < chance / 10:
            self.events.after(rng.randint(0, 3), self._bounce, node_id, 20, 500)

    def _isolate_for_a_while(self, node_id: int) -> None:
        others = [n for n in self.cluster.replicas if n != node_id]
        self.network.isolate(node_id, others)
        self._stamp(f"buggify: isolate {node_id}")
        self.events.after(self.fault_rng.randint(50, 400), self._rejoin, node_id)

    def _rejoin(self, node_id: int) -> None:
        self.network.blocked = {link for link in self.network.blocked if node_id not in link}

    def _bounce(self, node_id: int, down_min_ms: int, down_max_ms: int) -> None:
        self._stamp(f"buggify: bounce {node_id}")
        self._crash(node_id)
        self.events.after(self.fault_rng.randint(down_min_ms, down_max_ms), self._restart, node_id)

    def _drive_probe(self) -> None:
        """After healing: get a fresh entry committed and applied on every member of the
        leader's configuration, then a read served, re-proposing if leadership moves."""
        self.events.after(TICK_MS, self._drive_probe)
        leader = self.cluster.leader()
        if leader is None:
            return
        raw = leader.raw
        if not self.probe_index:
            if self.probe_term != raw.raft.term:
                self.probe_data = b"probe:%d" % self.events.now_ms
                try:
                    raw.propose(self.probe_data)
                except RequestDropped:
                    return
                self.probe_term = raw.raft.term
                self.cluster.process(leader.id)
            return
        if not self.probe_applied:
            self.probe_applied = all(
                m.up and m.machine.applied_index >= self.probe_index for m in self._members(leader)
            )
        if self.probe_applied and not self.probe_read_ok:
            try:
                raw.read_index(b"%s%d" % (PROBE_READ, self.events.now_ms))
            except RequestDropped:
                return
            self.cluster.process(leader.id)

    def _members(self, leader: Replica) -> list[Replica]:
        cs = leader.raw.conf_state()
        return [self.cluster.replicas[n] for n in sorted(cs.members())]

    def _describe_state(self) -> str:
        parts = []
        for r in self.cluster.replicas.values():
            if r.decommissioned:
                continue
            if not r.up:
                parts.append(f"{r.id}:down")
                continue
            st = r.raw.status()
            parts.append(f"{r.id}:{st.role.name}/t{st.term}/c{st.commit_index}/a{st.applied_index}")
        return " ".join(parts)


def sends(ready: Ready, kind: MessageType) -> bool:
    """Whether the Ready sends a message of `kind` (granted or accepted, not a rejection)."""
    return any(m.type is kind and not m.reject for m in ready.messages)


def run_seed(seed: int, trace: Callable[[str], None] | None = None) -> SimResult:
    return Simulation(seed, trace=trace).run()
