"""CLUSTER, READONLY, READWRITE and ASKING: Redis Cluster's commands on a NomadKV node.

Registered in the command table like every other command. In standalone
mode they answer as a Redis without cluster support does.

Membership changes are cluster-wide here (one Raft group), not per node as
in Redis: CLUSTER MEET adds a node to the group (as a learner, promoted to
voter once caught up), CLUSTER FORGET removes it, and CLUSTER FAILOVER run
on a follower asks the leader to hand leadership over to it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import hiredis

from nomadkv.cluster.slots import SLOTS, key_slot
from nomadkv.cluster.topology import (
    Member,
    cluster_info,
    cluster_nodes,
    cluster_shards,
    cluster_slots,
    node_line,
    node_name,
)
from nomadkv.commands.table import (
    CommandError,
    CommandSpec,
    ReplyT,
    parse_int,
    register,
)
from nomadkv.raft.errors import RequestDropped
from nomadkv.resp.reply import OK, Array, Value, Verbatim, bulk, bulk_array, integer
from nomadkv.server.client import DEFERRED, Client
from nomadkv.server.container import help_reply, run_subcommand

log = logging.getLogger("nomadkv.cluster")

DISABLED = "ERR This instance has cluster support disabled"
CALL_TIMEOUT_S = 5.0


def _cluster(ctx: Client) -> Any:
    if not ctx.node.config.cluster_enabled:
        raise CommandError(DISABLED)
    return ctx.node


def cmd_cluster(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER <subcommand> [<arg> [value] [opt] ...]"""
    return run_subcommand(CLUSTER, ctx, argv)


HELP_LINES = [
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port@bus-port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "INFO",
    "    Return information about the cluster.",
    "MYID",
    "    Return the node id.",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "MEET <ip> <port> [<bus-port>]",
    "    Add the node at <ip>:<port> to the shard group (a learner, then a voter).",
    "FORGET <node-id>",
    "    Remove a node from the shard group.",
    "FAILOVER [FORCE|TAKEOVER]",
    "    Make this replica the leader (a Raft leadership transfer).",
]


def cmd_cluster_help(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER HELP"""
    return help_reply("CLUSTER", HELP_LINES)


def cmd_cluster_slots(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER SLOTS"""
    return cluster_slots(_cluster(ctx).topology())


def cmd_cluster_shards(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER SHARDS"""
    return cluster_shards(_cluster(ctx).topology())


def cmd_cluster_nodes(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER NODES"""
    return Verbatim(cluster_nodes(_cluster(ctx).topology()))


def cmd_cluster_replicas(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER REPLICAS node-id (and its old name, CLUSTER SLAVES)"""
    topology = _cluster(ctx).topology()
    member = next((m for m in topology.members if m.name.encode() == argv[2]), None)
    if member is None:
        raise CommandError(f"ERR Unknown node {argv[2].decode(errors='replace')}")
    master = topology.master
    if master is None or member.raft_id != master.raft_id:
        raise CommandError("ERR The specified node is not a master")
    return bulk_array([node_line(topology, m).encode() for m in topology.replicas()])


def cmd_cluster_info(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER INFO"""
    node = _cluster(ctx)
    return cluster_info(node.topology(), node.messages_sent, node.messages_received)


def cmd_cluster_myid(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER MYID"""
    return bulk(node_name(_cluster(ctx).raft_id).encode())


def cmd_cluster_keyslot(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER KEYSLOT key"""
    return integer(key_slot(argv[2]))


def _slot_argument(value: bytes) -> int:
    slot = parse_int(value)
    if not 0 <= slot < SLOTS:
        raise CommandError("ERR Invalid slot")
    return slot


def cmd_cluster_countkeysinslot(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER COUNTKEYSINSLOT slot"""
    _cluster(ctx)
    slot = _slot_argument(argv[2])
    return integer(sum(1 for key in ctx.keyspace.live_keys(ctx.now_ms) if key_slot(key) == slot))


def cmd_cluster_getkeysinslot(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER GETKEYSINSLOT slot count"""
    _cluster(ctx)
    slot = parse_int(argv[2])
    count = parse_int(argv[3])
    if not 0 <= slot < SLOTS or count < 0:
        raise CommandError("ERR Invalid slot or number of keys")
    keys: list[bytes] = []
    for key in ctx.keyspace.live_keys(ctx.now_ms):
        if len(keys) >= count:
            break
        if key_slot(key) == slot:
            keys.append(key)
    return bulk_array(keys)


def cmd_cluster_member(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER NOMADKV-MEMBER: this node's raft id and addresses (used by MEET)."""
    node = _cluster(ctx)
    config = node.config
    return bulk_array(
        [b"%d" % node.raft_id, node.host.encode(), b"%d" % config.port, b"%d" % config.bus_port]
    )


def cmd_cluster_meet(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER MEET ip port [cluster-bus-port]"""
    node = _cluster(ctx)
    port = parse_int(argv[3], "ERR Invalid TCP base port specified: " + argv[3].decode("latin-1"))
    if not 0 < port < 65536:
        raise CommandError(f"ERR Invalid TCP base port specified: {port}")
    if not node.is_leader:
        raise CommandError("ERR CLUSTER MEET must be sent to the leader (see CLUSTER NODES)")
    host = argv[2].decode(errors="replace")

    async def meet() -> None:
        try:
            reply = await call_node(
                host, port, node.config.requirepass, b"CLUSTER", b"NOMADKV-MEMBER"
            )
            member = Member(int(reply[0]), reply[1].decode(), int(reply[2]), int(reply[3]))
            if member.raft_id in node.topology().voters:
                raise CommandError(f"ERR node {member.raft_id} is already a member")
            node.add_member(member)
            answer: bytes = OK
        except CommandError as exc:
            answer = exc.reply()
        except RequestDropped as exc:
            answer = b"-ERR cannot add the node now: %b\r\n" % exc.reason.encode()
        except (
            OSError,
            TimeoutError,
            ValueError,
            TypeError,
            IndexError,
            AttributeError,
            hiredis.ProtocolError,
        ) as exc:  # all but the first two: what answered is not a NomadKV node
            answer = b"-ERR cannot reach %b:%d: %b\r\n" % (host.encode(), port, str(exc).encode())
        ctx.deliver(answer)
        ctx.commit_done()

    node.loop.create_task(meet())
    return DEFERRED


def cmd_cluster_forget(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER FORGET node-id"""
    node = _cluster(ctx)
    name = argv[2].decode(errors="replace")
    target = next((m.raft_id for m in node.members.values() if m.name == name), None)
    if target is None:
        raise CommandError(f"ERR Unknown node {name}")
    if not node.is_leader:
        raise CommandError("ERR CLUSTER FORGET must be sent to the leader (see CLUSTER NODES)")
    try:
        node.remove_member(target)
    except RequestDropped as exc:
        raise CommandError(f"ERR cannot remove the node now: {exc.reason}") from None
    return OK


def cmd_cluster_failover(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER FAILOVER [FORCE | TAKEOVER]"""
    node = _cluster(ctx)
    if len(argv) == 3 and argv[2].upper() not in (b"FORCE", b"TAKEOVER"):
        raise CommandError("ERR syntax error")
    if node.is_leader:
        raise CommandError("ERR You should send CLUSTER FAILOVER to a replica")
    leader = node.members.get(node.leader_id)
    if leader is None:
        raise CommandError("ERR no leader is known to hand over leadership")

    async def ask_leader() -> None:
        try:
            await call_node(
                leader.host,
                leader.port,
                node.config.requirepass,
                b"CLUSTER",
                b"NOMADKV-TRANSFER",
                b"%d" % node.raft_id,
            )
            answer: bytes = OK
        except CommandError as exc:
            answer = exc.reply()
        except (OSError, TimeoutError) as exc:
            answer = b"-ERR cannot reach the leader: %b\r\n" % str(exc).encode()
        ctx.deliver(answer)
        ctx.commit_done()

    node.loop.create_task(ask_leader())
    return DEFERRED


def cmd_cluster_transfer(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLUSTER NOMADKV-TRANSFER raft-id: the leader hands leadership to raft-id."""
    node = _cluster(ctx)
    try:
        node.transfer_leadership(parse_int(argv[2]))
    except RequestDropped as exc:
        raise CommandError(f"ERR cannot transfer leadership: {exc.reason}") from None
    return OK


def cmd_role(ctx: Client, argv: list[bytes]) -> ReplyT:
    """ROLE"""
    node: Any = ctx.node
    applied = node.machine.applied_index
    if not node.config.cluster_enabled:
        return Array([b"master", applied, []])
    if node.is_leader:
        topology = node.topology()
        replicas: list[Value] = [
            [
                m.host.encode(),
                str(m.port).encode(),
                str(topology.match_index.get(m.raft_id, 0)).encode(),
            ]
            for m in topology.live_replicas()
        ]
        return Array([b"master", applied, replicas])
    leader = node.members.get(node.leader_id)
    if leader is None:
        return Array([b"slave", b"?", -1, b"connect", applied])
    state = b"connect" if leader.raft_id in node.topology().failed else b"connected"
    return Array([b"slave", leader.host.encode(), leader.port, state, applied])


def cmd_readonly(ctx: Client, argv: list[bytes]) -> ReplyT:
    """READONLY"""
    _cluster(ctx)
    ctx.readonly = True
    return OK


def cmd_readwrite(ctx: Client, argv: list[bytes]) -> ReplyT:
    """READWRITE"""
    _cluster(ctx)
    ctx.readonly = False
    return OK


def cmd_asking(ctx: Client, argv: list[bytes]) -> ReplyT:
    """ASKING"""
    _cluster(ctx)
    return OK


async def call_node(host: str, port: int, password: str, *argv: bytes) -> Any:
    """Send one command to another node's client port and return its parsed reply;
    an error reply raises CommandError."""

    async def exchange() -> Any:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            commands = ([[b"AUTH", password.encode()]] if password else []) + [list(argv)]
            for command in commands:
                parts = [b"$%d\r\n%b\r\n" % (len(a), a) for a in command]
                writer.write(b"*%d\r\n%b" % (len(parts), b"".join(parts)))
            parser = hiredis.Reader()
            replies: list[Any] = []
            while len(replies) < len(commands):
                data = await reader.read(65536)
                if not data:
                    raise OSError("connection closed")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    replies.append(reply)
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    raise CommandError(str(reply))
            return replies[-1]
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), CALL_TIMEOUT_S)


def _sub(name: str, arity: int, flags: tuple[str, ...], handler: Any, summary: str) -> CommandSpec:
    return CommandSpec(
        f"cluster|{name}",
        arity,
        flags,
        handler,
        group="cluster",
        summary=summary,
        since="3.0.0",
        acl_categories=("@slow",),
    )


CLUSTER = CommandSpec(
    "cluster",
    -2,
    (),
    cmd_cluster,
    group="cluster",
    summary="A container for Redis Cluster commands.",
    since="3.0.0",
    complexity="Depends on subcommand.",
    acl_categories=("@slow",),
    subcommands={
        spec.name.split("|")[1].encode(): spec
        for spec in (
            _sub(
                "help",
                2,
                ("loading", "stale"),
                cmd_cluster_help,
                "Returns helpful text about the different subcommands.",
            ),
            _sub(
                "slots",
                2,
                ("loading", "stale"),
                cmd_cluster_slots,
                "Returns the mapping of cluster slots to nodes.",
            ),
            _sub(
                "shards",
                2,
                ("loading", "stale"),
                cmd_cluster_shards,
                "Returns the mapping of cluster slots to shards.",
            ),
            _sub(
                "nodes",
                2,
                ("loading", "stale"),
                cmd_cluster_nodes,
                "Returns the cluster configuration for a node.",
            ),
            _sub(
                "info",
                2,
                ("loading", "stale"),
                cmd_cluster_info,
                "Returns information about the state of a node.",
            ),
            _sub("myid", 2, ("loading", "stale"), cmd_cluster_myid, "Returns the ID of a node."),
            _sub(
                "replicas",
                3,
                ("admin", "stale"),
                cmd_cluster_replicas,
                "Lists the replica nodes of a master node.",
            ),
            _sub(
                "slaves",
                3,
                ("admin", "stale"),
                cmd_cluster_replicas,
                "Lists the replica nodes of a master node.",
            ),
            _sub("keyslot", 3, ("stale",), cmd_cluster_keyslot, "Returns the hash slot for a key."),
            _sub(
                "countkeysinslot",
                3,
                ("stale",),
                cmd_cluster_countkeysinslot,
                "Returns the number of keys in a hash slot.",
            ),
            _sub(
                "getkeysinslot",
                4,
                ("stale",),
                cmd_cluster_getkeysinslot,
                "Returns the key names in a hash slot.",
            ),
            _sub(
                "meet",
                -4,
                ("admin", "stale", "no_async_loading"),
                cmd_cluster_meet,
                "Adds a node to the cluster's shard group (as a learner, then a voter).",
            ),
            _sub(
                "forget",
                3,
                ("admin", "stale", "no_async_loading"),
                cmd_cluster_forget,
                "Removes a node from the cluster's shard group.",
            ),
            _sub(
                "failover",
                -2,
                ("admin", "stale", "no_async_loading"),
                cmd_cluster_failover,
                "Makes this replica the leader (a Raft leadership transfer).",
            ),
            _sub(
                "nomadkv-member",
                2,
                ("stale",),
                cmd_cluster_member,
                "NomadKV: this node's Raft id and addresses.",
            ),
            _sub(
                "nomadkv-transfer",
                3,
                ("admin", "stale"),
                cmd_cluster_transfer,
                "NomadKV: the leader transfers leadership to the given Raft id.",
            ),
        )
    },
)

register(
    CLUSTER,
    CommandSpec(
        "role",
        1,
        ("noscript", "loading", "stale", "fast"),
        cmd_role,
        group="server",
        summary="Returns the replication role.",
        since="2.8.12",
        acl_categories=("@admin", "@fast", "@dangerous"),
    ),
    CommandSpec(
        "readonly",
        1,
        ("loading", "stale", "fast"),
        cmd_readonly,
        group="cluster",
        summary="Enables read-only queries for a connection to a Redis Cluster replica.",
        since="3.0.0",
        acl_categories=("@fast", "@connection"),
    ),
    CommandSpec(
        "readwrite",
        1,
        ("loading", "stale", "fast"),
        cmd_readwrite,
        group="cluster",
        summary="Enables read-write queries for a connection to a Redis Cluster replica.",
        since="3.0.0",
        acl_categories=("@fast", "@connection"),
    ),
    CommandSpec(
        "asking",
        1,
        ("fast",),
        cmd_asking,
        group="cluster",
        summary="Signals that a cluster client is following an -ASK redirect.",
        since="3.0.0",
        acl_categories=("@fast", "@connection"),
    ),
)
