"""The cluster as clients see it, and the CLUSTER replies that describe it. Pure.

A ``Topology`` is a snapshot of what this node knows: the members of the
shard group with their addresses, who votes, who leads, and the Raft term
(reported as the config epoch). With one shard group it owns all 16384
slots; the leader is the group's master, the other members its replicas.

Redis node ids are 40 hex characters; ours are derived from the Raft id so
that they are stable across restarts and equal on every node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from nomadkv.cluster.slots import SLOTS
from nomadkv.resp.reply import Array, Map, Reply, Value, Verbatim


def node_name(raft_id: int) -> str:
    return hashlib.sha1(b"nomadkv-node:%d" % raft_id).hexdigest()


@dataclass(frozen=True, slots=True)
class Member:
    raft_id: int
    host: str
    port: int  # the client (RESP) port
    bus_port: int

    @property
    def name(self) -> str:
        return node_name(self.raft_id)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Topology:
    my_id: int
    members: tuple[Member, ...]  # sorted by raft id
    voters: frozenset[int]
    learners: frozenset[int]
    leader_id: int  # 0 when no leader is known
    epoch: int  # the Raft term
    match_index: dict[int, int] = field(default_factory=dict)  # replication offsets
    # Members this node has not heard from for a node timeout (ClusterNode.topology):
    # shown as Redis shows a failed node (``fail``, ``disconnected``, health failed)
    # and left out of CLUSTER SLOTS, ROLE and INFO replication.
    failed: frozenset[int] = frozenset()

    def member(self, raft_id: int) -> Member | None:
        for member in self.members:
            if member.raft_id == raft_id:
                return member
        return None

    @property
    def leader(self) -> Member | None:
        return self.member(self.leader_id) if self.leader_id else None

    @property
    def master(self) -> Member | None:
        """The member reported as master: the leader, else the lowest voter, so
        that clients always see every slot covered and retry on CLUSTERDOWN."""
        leader = self.leader
        if leader is not None:
            return leader
        for member in self.members:
            if member.raft_id in self.voters:
                return member
        return self.members[0] if self.members else None

    def replicas(self) -> list[Member]:
        master = self.master
        return [m for m in self.members if master is None or m.raft_id != master.raft_id]

    def live_replicas(self) -> list[Member]:
        return [m for m in self.replicas() if m.raft_id not in self.failed]


def _node_entry(member: Member) -> Value:
    return [member.host.encode(), member.port, member.name.encode(), Map([])]


def cluster_slots(topology: Topology) -> Reply:
    """CLUSTER SLOTS: one range, 0-16383, master first, then the replicas."""
    master = topology.master
    if master is None:
        return Array([])
    nodes: list[Value] = [_node_entry(master)]
    nodes += [_node_entry(m) for m in topology.live_replicas()]  # Redis skips failed ones
    return Array([[0, SLOTS - 1, *nodes]])


def _shard_node(topology: Topology, member: Member, role: str) -> Map:
    return Map(
        [
            (b"id", member.name.encode()),
            (b"port", member.port),
            (b"ip", member.host.encode()),
            (b"endpoint", member.host.encode()),
            (b"role", role.encode()),
            (b"replication-offset", topology.match_index.get(member.raft_id, 0)),
            (b"health", b"failed" if member.raft_id in topology.failed else b"online"),
        ]
    )


def cluster_shards(topology: Topology) -> Reply:
    """CLUSTER SHARDS (Redis 7): one shard holding every slot."""
    master = topology.master
    if master is None:
        return Array([])
    nodes: list[Value] = [_shard_node(topology, master, "master")]
    nodes += [_shard_node(topology, m, "replica") for m in topology.replicas()]
    return Array([Map([(b"slots", [0, SLOTS - 1]), (b"nodes", nodes)])])


def node_line(topology: Topology, member: Member) -> str:
    """One line of CLUSTER NODES (and of CLUSTER REPLICAS), in Redis's format:
    ``<id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <config-epoch>
    <link-state> <slot>...``"""
    master = topology.master
    is_master = master is not None and member.raft_id == master.raft_id
    flags = ["myself"] if member.raft_id == topology.my_id else []
    flags.append("master" if is_master else "slave")
    link = "connected"
    if member.raft_id in topology.failed:
        flags.append("fail")
        link = "disconnected"
    master_field = "-" if is_master or master is None else master.name
    line = (
        f"{member.name} {member.host}:{member.port}@{member.bus_port} {','.join(flags)} "
        f"{master_field} 0 0 {topology.epoch} {link}"
    )
    if is_master:
        line += f" 0-{SLOTS - 1}"
    return line


def cluster_nodes(topology: Topology) -> bytes:
    """CLUSTER NODES: a line per member."""
    return "".join(node_line(topology, m) + "\n" for m in topology.members).encode()


def cluster_info(topology: Topology, messages_sent: int, messages_received: int) -> Reply:
    ok = topology.leader_id != 0
    fields = {
        "cluster_state": "ok" if ok else "fail",
        "cluster_slots_assigned": SLOTS,
        "cluster_slots_ok": SLOTS if ok else 0,
        "cluster_slots_pfail": 0,
        "cluster_slots_fail": 0 if ok else SLOTS,
        "cluster_known_nodes": len(topology.members),
        "cluster_size": 1,
        "cluster_current_epoch": topology.epoch,
        "cluster_my_epoch": topology.epoch,
        "cluster_stats_messages_sent": messages_sent,
        "cluster_stats_messages_received": messages_received,
        "total_cluster_links_buffer_limit_exceeded": 0,
    }
    text = "".join(f"{k}:{v}\r\n" for k, v in fields.items())
    return Verbatim(text.encode())
