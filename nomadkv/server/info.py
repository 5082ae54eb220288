"""INFO: the node's state in Redis's ``# Section`` / ``field:value`` text.

Owns the sections and their fields. Field names are Redis 7.0's wherever
Redis has the same fact, so tools that read INFO (redis-cli, exporters,
redis-benchmark) find them; facts Redis has no name for are added with
NomadKV's own names (``nomadkv_version``, the log indexes under
Persistence, the Raft section in cluster mode).

Sections: the default set is server, clients, memory, persistence, stats,
replication, cpu, modules, cluster, keyspace (plus raft in cluster mode);
``all`` adds commandstats; ``everything`` is the same, since NomadKV has
no modules. Unknown section names add nothing, as in Redis.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from itertools import islice
from typing import Any

from nomadkv import __version__
from nomadkv.commands.table import CommandError, CommandSpec, ReplyT, register
from nomadkv.resp.reply import Verbatim
from nomadkv.server.client import Client
from nomadkv.server.node import Node
from nomadkv.server.state import REDIS_VERSION, command_specs, network_totals, state_of

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
AVG_TTL_SAMPLE = 10_000  # deadlines averaged for avg_ttl; more keys are sampled


def human_bytes(n: float) -> str:
    """Redis's bytesToHuman: 1.11M, 200B, 23.54G."""
    for unit, size in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    if n >= 1024:
        return f"{n / 1024:.2f}K"
    return f"{int(n)}B"


def memory_pages() -> tuple[int, int]:
    """(resident, resident shared) pages of this process, from /proc/self/statm."""
    with open("/proc/self/statm", "rb") as f:
        fields = f.read().split()
    return int(fields[1]), int(fields[2])


def total_system_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * PAGE_BYTES


def section_server(node: Node) -> dict[str, Any]:
    state = state_of(node)
    uptime = int(time.time() - node.started_at)
    uname = platform.uname()
    return {
        "redis_version": REDIS_VERSION,
        "redis_git_sha1": "00000000",
        "redis_git_dirty": 0,
        "redis_build_id": "0",
        "redis_mode": "cluster" if node.config.cluster_enabled else "standalone",
        "nomadkv_version": __version__,
        "python_version": platform.python_version(),
        "os": f"{uname.system} {uname.release} {uname.machine}",
        "arch_bits": 64 if sys.maxsize > 2**32 else 32,
        "multiplexing_api": "epoll",
        "event_loop": type(node.loop).__module__.split(".")[0],
        "process_id": os.getpid(),
        "process_supervised": "no",
        "run_id": state.run_id,
        "tcp_port": node.config.port,
        "server_time_usec": time.time_ns() // 1000,
        "uptime_in_seconds": uptime,
        "uptime_in_days": uptime // 86400,
        "hz": 10,
        "configured_hz": 10,
        "executable": sys.executable,
        "config_file": os.path.abspath(state.config_file) if state.config_file else "",
        "io_threads_active": 0,
    }


def section_clients(node: Node) -> dict[str, Any]:
    clients = list(node.clients.values())
    return {
        "connected_clients": len(clients),
        "cluster_connections": 0,
        "maxclients": node.config.maxclients,
        "client_recent_max_input_buffer": max(
            (c.parser.buffered_bytes() for c in clients), default=0
        ),
        "client_recent_max_output_buffer": max(
            (c.transport.get_write_buffer_size() for c in clients if c.transport is not None),
            default=0,
        ),
        "blocked_clients": 0,
        "tracking_clients": 0,
        "clients_in_timeout_table": 0,
    }


def section_memory(node: Node) -> dict[str, Any]:
    resident, shared = memory_pages()
    rss = resident * PAGE_BYTES
    # Python has no cheap count of the bytes it has allocated, so used_memory
    # is estimated as the process's resident anonymous memory: resident pages
    # that are not shared with files (the interpreter's code and libraries).
    # It therefore includes the allocator's free lists and fragmentation that
    # Redis reports separately, and mem_fragmentation_ratio stays near 1.
    used = max(rss - shared * PAGE_BYTES, 0)
    state = state_of(node)
    state.memory_peak = max(state.memory_peak, used)
    system = total_system_memory()
    return {
        "used_memory": used,
        "used_memory_human": human_bytes(used),
        "used_memory_rss": rss,
        "used_memory_rss_human": human_bytes(rss),
        "used_memory_peak": state.memory_peak,
        "used_memory_peak_human": human_bytes(state.memory_peak),
        "used_memory_peak_perc": f"{100 * used / state.memory_peak:.2f}%"
        if state.memory_peak
        else "100.00%",
        "used_memory_estimate": "resident-anonymous",
        "total_system_memory": system,
        "total_system_memory_human": human_bytes(system),
        "maxmemory": 0,
        "maxmemory_human": "0B",
        "maxmemory_policy": "noeviction",
        "mem_fragmentation_ratio": f"{rss / used:.2f}" if used else "0.00",
        "mem_allocator": "pymalloc",
        "lazyfree_pending_objects": 0,
    }


def section_persistence(node: Node) -> dict[str, Any]:
    return node.info_persistence()


def section_stats(node: Node) -> dict[str, Any]:
    state = state_of(node)
    stats = node.stats
    net_in, net_out = network_totals(node)
    specs = command_specs()
    return {
        "total_connections_received": stats.connections_received,
        "total_commands_processed": sum(spec.calls for spec in specs),
        "instantaneous_ops_per_sec": round(state.ops.per_second()),
        "total_net_input_bytes": net_in,
        "total_net_output_bytes": net_out,
        "instantaneous_input_kbps": f"{state.input_bytes.per_second() / 1024:.2f}",
        "instantaneous_output_kbps": f"{state.output_bytes.per_second() / 1024:.2f}",
        "rejected_connections": stats.connections_rejected,
        "expired_keys": stats.expired_keys,
        "evicted_keys": 0,
        "evicted_clients": 0,
        "keyspace_hits": node.keyspace.hits,
        "keyspace_misses": node.keyspace.misses,
        "pubsub_channels": 0,
        "pubsub_patterns": 0,
        "total_forks": stats.snapshots + int(node.snapshot_in_progress),
        "unexpected_error_replies": stats.unexpected_errors,
        "total_protocol_errors": stats.protocol_errors,
        "total_rejected_calls": sum(spec.rejected_calls for spec in all_specs(specs)),
        "total_failed_calls": sum(spec.failed_calls for spec in all_specs(specs)),
    }


def section_replication(node: Node) -> dict[str, Any]:
    # A cluster node reports its role, its master or its replicas (ClusterNode).
    info_replication: Callable[[], dict[str, Any]] | None = getattr(node, "info_replication", None)
    fields = (
        info_replication()
        if info_replication is not None
        else {"role": "master", "connected_slaves": 0}
    )
    return {
        **fields,
        "master_failover_state": "no-failover",
        "master_replid": state_of(node).run_id,
        "master_repl_offset": node.machine.applied_index,
    }


def section_cpu(node: Node) -> dict[str, Any]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    main = resource.getrusage(resource.RUSAGE_THREAD)  # INFO runs on the event loop's thread
    return {
        "used_cpu_sys": f"{me.ru_stime:.6f}",
        "used_cpu_user": f"{me.ru_utime:.6f}",
        "used_cpu_sys_children": f"{children.ru_stime:.6f}",
        "used_cpu_user_children": f"{children.ru_utime:.6f}",
        "used_cpu_sys_main_thread": f"{main.ru_stime:.6f}",
        "used_cpu_user_main_thread": f"{main.ru_utime:.6f}",
    }


def section_modules(node: Node) -> dict[str, Any]:
    return {}


def section_cluster(node: Node) -> dict[str, Any]:
    return {"cluster_enabled": int(node.config.cluster_enabled)}


def section_raft(node: Node) -> dict[str, Any]:
    info_raft: Callable[[], dict[str, Any]] | None = getattr(node, "info_raft", None)
    return info_raft() if info_raft is not None else {}


def average_ttl_ms(node: Node, now_ms: int) -> int:
    """Mean time to live of keys with a deadline, over at most AVG_TTL_SAMPLE of
    them (Redis's avg_ttl is an estimate too, from its expiry sampling)."""
    deadlines = node.keyspace.expires
    if not deadlines:
        return 0
    sample = list(islice(deadlines.values(), AVG_TTL_SAMPLE))
    return max(0, sum(deadline - now_ms for deadline in sample) // len(sample))


def section_keyspace(node: Node) -> dict[str, Any]:
    keyspace = node.keyspace
    if not len(keyspace):
        return {}
    now_ms = int(time.time() * 1000)
    avg_ttl = average_ttl_ms(node, now_ms)
    return {"db0": f"keys={len(keyspace)},expires={len(keyspace.expires)},avg_ttl={avg_ttl}"}


def all_specs(specs: list[CommandSpec]) -> list[CommandSpec]:
    """Commands and subcommands, containers replaced by their subcommands."""
    out: list[CommandSpec] = []
    for spec in specs:
        if spec.subcommands:
            out.extend(spec.subcommands.values())
        else:
            out.append(spec)
    return out


def section_commandstats(node: Node) -> dict[str, Any]:
    rows = {}
    for spec in sorted(all_specs(command_specs()), key=lambda s: s.name):
        if not (spec.calls or spec.failed_calls or spec.rejected_calls):
            continue
        usec = int(spec.usec)
        per_call = usec / spec.calls if spec.calls else 0.0
        rows[f"cmdstat_{spec.name}"] = (
            f"calls={spec.calls},usec={usec},usec_per_call={per_call:.2f},"
            f"rejected_calls={spec.rejected_calls},failed_calls={spec.failed_calls}"
        )
    return rows


SECTIONS: dict[str, Callable[[Node], dict[str, Any]]] = {
    "server": section_server,
    "clients": section_clients,
    "memory": section_memory,
    "persistence": section_persistence,
    "stats": section_stats,
    "replication": section_replication,
    "cpu": section_cpu,
    "modules": section_modules,
    "commandstats": section_commandstats,
    "cluster": section_cluster,
    "raft": section_raft,
    "keyspace": section_keyspace,
}
DEFAULT = (
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "cluster",
    "raft",
    "keyspace",
)
TITLES = {"cpu": "CPU", "commandstats": "Commandstats"}


def chosen_sections(node: Node, names: list[bytes]) -> list[str]:
    """Section names in Redis's order for INFO's arguments (none means ``default``)."""
    wanted = {name.decode(errors="replace").lower() for name in names} or {"default"}
    chosen = wanted & SECTIONS.keys()
    if wanted & {"default", "all", "everything"}:
        chosen.update(DEFAULT)
    if wanted & {"all", "everything"}:
        chosen.add("commandstats")
    if not node.config.cluster_enabled and "raft" not in wanted:
        chosen.discard("raft")
    return [name for name in SECTIONS if name in chosen]


def render(node: Node, sections: list[str]) -> bytes:
    parts = []
    for name in sections:
        fields = SECTIONS[name](node)
        lines = [f"# {TITLES.get(name, name.capitalize())}"]
        lines += [f"{key}:{value}" for key, value in fields.items()]
        parts.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(parts).encode()


def cmd_info(ctx: Client, argv: list[bytes]) -> ReplyT:
    """INFO [section [section ...]]"""
    node = ctx.node
    try:
        return Verbatim(render(node, chosen_sections(node, argv[1:])))
    except OSError as exc:  # /proc unreadable
        raise CommandError(f"ERR cannot read process statistics: {exc}") from None


register(
    CommandSpec(
        "info",
        -1,
        ("loading", "stale"),
        cmd_info,
        group="server",
        summary="Returns information and statistics about the server.",
        complexity="O(1)",
        acl_categories=("@slow", "@dangerous"),
    ),
)
