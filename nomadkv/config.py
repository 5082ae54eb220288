"""Configuration: one table of options drives the TOML file, the command-line
flags, CONFIG GET/SET and the commented reference in conf/nomadkv.toml.

Option names are Redis's where Redis has the option (``appendfsync``,
``requirepass``, ``proto-max-bulk-len``), so CONFIG GET answers what Redis
tools expect. A ``Config`` is frozen; CONFIG SET builds a new one.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FSYNC_POLICIES = ("everysec", "always", "no")  # config.c's order, which its errors list
LOGLEVELS = ("debug", "verbose", "notice", "warning")


class ConfigError(Exception):
    pass


def _size(value: Any) -> int:
    """Redis-style sizes: 1024, "64mb", "1gb"."""
    if isinstance(value, bool):
        raise ConfigError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    try:  # int() refuses some digits isdigit() takes ("²") and numbers of 4300+ digits
        for suffix, factor in (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("b", 1)):
            if text.endswith(suffix) and text[: -len(suffix)].isdigit():
                return int(text[: -len(suffix)]) * factor
        if text.lstrip("-").isdigit():
            return int(text)
    except ValueError:
        pass
    raise ConfigError(f"not a size: {value!r}")


def _int(value: Any) -> int:
    if isinstance(value, (bool, float)):  # TOML's 1.5 would be cut to 1 silently
        raise ConfigError(f"not an integer: {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not an integer: {value!r}") from None


def _port(value: Any) -> int:
    port = _int(value)
    if port > 65535:  # the kernel would take it modulo 65536
        raise ConfigError(f"not a port: {value!r}")
    return port


def _str(value: Any) -> str:
    if not isinstance(value, (str, bytes)):
        raise ConfigError(f"not a string: {value!r}")
    return value.decode() if isinstance(value, bytes) else value


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _str(value).lower()
        if text not in choices:
            raise ConfigError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _str(value).lower()
    if text in ("yes", "true", "1"):
        return True
    if text in ("no", "false", "0"):
        return False
    raise ConfigError(f"not yes/no: {value!r}")


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # as in the TOML file, the command line (--name) and CONFIG GET
    parse: Callable[[Any], Any]
    default: Any
    help: str
    settable: bool = False  # CONFIG SET may change it at run time
    minimum: int | None = None

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("bind", _str, "127.0.0.1", "Address for client connections (loopback by default)."),
    Option("port", _port, 6379, "RESP port for clients.", minimum=0),
    Option(
        "http-port", _port, 3000, "HTTP sidecar port (REST, /metrics); 0 turns it off.", minimum=0
    ),
    Option("http-bind", _str, "", "Address of the HTTP sidecar; empty means the same as bind."),
    Option(
        "http-maxclients",
        _int,
        1024,
        "Most HTTP sidecar connections at once; one more is answered 503 and closed.",
        minimum=1,
    ),
    Option("dir", _str, "./data", "Directory for the log and snapshots."),
    Option(
        "requirepass",
        _str,
        "",
        "Password clients must give with AUTH (and the HTTP sidecar as a bearer token); "
        "empty means none.",
        settable=True,
    ),
    Option(
        "appendfsync",
        _choice(FSYNC_POLICIES),
        "always",
        "always: reply only after the write is fsync'd (group commit); everysec: fsync "
        "once a second; no: leave it to the OS.",
        settable=True,
    ),
    Option("maxclients", _int, 10000, "Most client connections at once.", settable=True, minimum=1),
    Option(
        "timeout",
        _int,
        0,
        "Close a client idle for this many seconds; 0 never.",
        settable=True,
        minimum=0,
    ),
    Option(
        "proto-max-bulk-len",
        _size,
        512 * 1024 * 1024,
        "Largest bulk string a client may send.",
        settable=True,
        minimum=1024 * 1024,
    ),
    Option(
        "client-query-buffer-limit",
        _size,
        1024 * 1024 * 1024,
        "Largest unparsed input per client before it is disconnected.",
        settable=True,
        minimum=1024 * 1024,
    ),
    Option(
        "client-output-buffer-limit-bytes",
        _size,
        256 * 1024 * 1024,
        "Disconnect a client whose unsent replies pass this size (reading from it pauses "
        "long before, at 1 MiB).",
        settable=True,
        minimum=1024 * 1024,
    ),
    Option(
        "snapshot-after-log-bytes",
        _size,
        64 * 1024 * 1024,
        "Take a snapshot once the log written since the newest snapshot reaches this size; "
        "the log is then truncated up to the snapshot before it. 0: never by size.",
        settable=True,
        minimum=0,
    ),
    Option(
        "snapshot-interval-seconds",
        _int,
        3600,
        "Take a snapshot at least this often when anything changed; 0 never on time.",
        settable=True,
        minimum=0,
    ),
    Option(
        "log-segment-bytes",
        _size,
        64 * 1024 * 1024,
        "Size at which the log rolls over to a new segment file.",
        minimum=4096,
    ),
    Option(
        "loglevel",
        _choice(LOGLEVELS),
        "notice",
        "debug, verbose, notice or warning.",
        settable=True,
    ),
    Option("tcp-backlog", _int, 511, "Listen backlog of the client socket.", minimum=1),
    Option("daemonize", _bool, False, "Accepted for Redis compatibility; must be no."),
    # -- cluster mode (a shard group replicated by Raft) -------------------------------------
    Option(
        "node-id",
        _int,
        0,
        "This node's id in the cluster (a positive integer); 0 runs a standalone node.",
        minimum=0,
    ),
    Option(
        "peers",
        _str,
        "",
        "Every founding voting member, this node included, as ID@HOST:BUSPORT,... "
        "(like etcd's --initial-cluster). A member's client port is its bus port - 10000.",
    ),
    Option(
        "cluster-secret",
        _str,
        "",
        "Shared secret peers prove on the cluster bus; required in cluster mode.",
    ),
    Option(
        "cluster-port",
        _port,
        0,
        "Cluster bus port; 0 means the client port + 10000 (as Redis Cluster).",
        minimum=0,
    ),
    Option(
        "cluster-announce-ip",
        _str,
        "",
        "Address peers and clients are given for this node (MOVED, CLUSTER NODES); empty "
        "means the first bind address. Set it when binding 0.0.0.0 (containers).",
    ),
    Option(
        "cluster-join",
        _bool,
        False,
        "Start empty and wait to be added with CLUSTER MEET instead of bootstrapping from --peers.",
    ),
    Option(
        "proxy-to-leader",
        _bool,
        False,
        "On a follower, forward commands to the leader and relay its reply instead of "
        "answering -MOVED (for clients that do not speak Redis Cluster).",
        settable=True,
    ),
    Option("raft-tick-ms", _int, 50, "Length of one Raft tick.", minimum=1),
    Option(
        "raft-election-ticks",
        _int,
        10,
        "Election timeout in ticks (randomized between 1x and 2x).",
        minimum=3,
    ),
    Option("raft-heartbeat-ticks", _int, 2, "Leader heartbeat interval in ticks.", minimum=1),
    Option(
        "raft-max-entry-bytes",
        _size,
        8 * 1024 * 1024,
        "Largest Raft log entry: writes are batched into entries up to this size, and a "
        "single write larger than it is refused (writing, fsyncing and sending a 64 MB "
        "entry stalled a leader past its election timeout).",
        minimum=64 * 1024,
    ),
    Option(
        "raft-lease-reads",
        _bool,
        False,
        "Serve linearizable reads from a leader lease instead of a ReadIndex round; assumes "
        "clocks that drift by less than one tick per election timeout (docs/raft.md).",
    ),
)

OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True, slots=True)
class Config:
    bind: str = "127.0.0.1"
    port: int = 6379
    http_port: int = 3000
    http_bind: str = ""
    http_maxclients: int = 1024
    dir: str = "./data"
    requirepass: str = ""
    appendfsync: str = "always"
    maxclients: int = 10000
    timeout: int = 0
    proto_max_bulk_len: int = 512 * 1024 * 1024
    client_query_buffer_limit: int = 1024 * 1024 * 1024
    client_output_buffer_limit_bytes: int = 256 * 1024 * 1024
    snapshot_after_log_bytes: int = 64 * 1024 * 1024
    snapshot_interval_seconds: int = 3600
    log_segment_bytes: int = 64 * 1024 * 1024
    loglevel: str = "notice"
    tcp_backlog: int = 511
    daemonize: bool = False
    node_id: int = 0
    peers: str = ""
    cluster_secret: str = ""
    cluster_port: int = 0
    cluster_announce_ip: str = ""
    cluster_join: bool = False
    proxy_to_leader: bool = False
    raft_tick_ms: int = 50
    raft_election_ticks: int = 10
    raft_heartbeat_ticks: int = 2
    raft_lease_reads: bool = False
    raft_max_entry_bytes: int = 8 * 1024 * 1024

    def get(self, name: str) -> Any:
        return getattr(self, OPTIONS_BY_NAME[name].field)

    def with_values(self, values: dict[str, Any]) -> Config:
        """A copy with ``values`` (option name -> raw value) parsed and checked."""
        changes = {}
        for name, raw in values.items():
            option = OPTIONS_BY_NAME.get(name)
            if option is None:
                raise ConfigError(f"unknown option '{name}'")
            try:
                value = option.parse(raw)
            except ConfigError as exc:
                raise ConfigError(f"option '{name}': {exc}") from None
            if option.minimum is not None and value < option.minimum:
                raise ConfigError(f"option '{name}' must be at least {option.minimum}")
            changes[option.field] = value
        config = dataclasses.replace(self, **changes)
        if config.node_id and config.bus_port > 65535:
            raise ConfigError(
                f"the cluster bus port (port + 10000 = {config.bus_port}) is not a port: "
                "set cluster-port"
            )
        if config.daemonize:
            raise ConfigError("daemonize yes is not supported: run under a process supervisor")
        if config.node_id:
            if not config.cluster_secret:
                raise ConfigError("cluster mode (node-id) needs a cluster-secret")
            peers = config.peer_addresses()
            if not config.cluster_join and config.node_id not in peers:
                raise ConfigError(f"peers must list this node (id {config.node_id})")
            if config.raft_heartbeat_ticks >= config.raft_election_ticks:
                raise ConfigError("raft-heartbeat-ticks must be below raft-election-ticks")
        return config

    @property
    def http_address(self) -> str:
        return self.http_bind or self.bind

    @property
    def bus_port(self) -> int:
        return self.cluster_port or self.port + 10000

    @property
    def cluster_enabled(self) -> bool:
        return self.node_id > 0

    def peer_addresses(self) -> dict[int, tuple[str, int]]:
        """``peers`` parsed: raft id -> (host, bus port)."""
        found: dict[int, tuple[str, int]] = {}
        for item in filter(None, (p.strip() for p in self.peers.split(","))):
            try:
                ident, address = item.split("@", 1)
                host, port = address.rsplit(":", 1)
                found[int(ident)] = (host, int(port))
            except ValueError:
                raise ConfigError(f"peers: '{item}' is not ID@HOST:BUSPORT") from None
        if any(ident <= 0 for ident in found):
            raise ConfigError("peers: node ids must be positive")
        return found


def load(path: str | None, overrides: dict[str, Any]) -> Config:
    """Defaults, then the TOML file, then command-line ``overrides``."""
    values: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as f:
                values.update(tomllib.load(f))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config().with_values(values)


def reference_toml() -> str:
    """The commented reference file, every option at its default."""
    lines = ["# NomadKV configuration: every option at its default.", ""]
    for option in OPTIONS:
        lines.append(f"# {option.help}")
        default = option.default
        if isinstance(default, bool):
            text = "true" if default else "false"
        elif isinstance(default, str):
            text = f'"{default}"'
        else:
            text = str(default)
        lines.append(f"{option.name} = {text}")
        lines.append("")
    return "\n".join(lines)
