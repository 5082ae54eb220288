"""CONFIG GET / SET / RESETSTAT / REWRITE over the options table of
``nomadkv.config``.

Owns how a running node takes a new configuration: CONFIG SET checks every
pair first (Redis's errors, in Redis's order), builds one new frozen
``Config`` and swaps it in whole, so a failed SET changes nothing; then
``apply_config`` tells the parts that copied a value at connection time
(each client's parser limits, authentication, the log level). Everything
else reads ``node.config`` when it acts (appendfsync at each flush, timeout
and the snapshot policy at each tick, maxclients at each accept, the
output buffer limit at each write).

CONFIG GET also answers three read-only facts tools ask Redis for
(redis-benchmark reads ``save`` and ``appendonly``): NomadKV always logs
every write (``appendonly yes``), has one database, and no RDB save points.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from typing import Any

from nomadkv.commands.glob import matches
from nomadkv.commands.table import SYNTAX_ERROR, CommandError, CommandSpec, ReplyT, register
from nomadkv.config import (
    FSYNC_POLICIES,
    LOGLEVELS,
    OPTIONS,
    OPTIONS_BY_NAME,
    Config,
    ConfigError,
    Option,
    _size,
)
from nomadkv.resp.reply import OK, Map
from nomadkv.server.client import Client
from nomadkv.server.container import help_reply, run_subcommand
from nomadkv.server.node import Node
from nomadkv.server.state import state_of

INT_MAX = 2**31 - 1
MEMORY_UNITS = {
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
LLONG_MAX = 2**63 - 1
MAXIMUM = {"maxclients": 2**32 - 1}  # Redis's bound where it is not INT_MAX or LLONG_MAX
READ_ONLY_FACTS = {"appendonly": "yes", "databases": "1", "save": ""}
CHOICES = {"appendfsync": FSYNC_POLICIES, "loglevel": LOGLEVELS}
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
}


def render_value(value: Any) -> str:
    """An option's value as CONFIG GET shows it (Redis: yes/no, plain numbers)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def parse_value(option: Option, raw: bytes) -> Any:
    """The value CONFIG SET would store, or the reason (Redis's words) it cannot."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        # Options are text (the TOML file is UTF-8): stored with replacement
        # characters, a requirepass of other bytes would lock every client out.
        raise ConfigError("argument must be UTF-8 text") from None
    default = option.default
    if isinstance(default, bool):
        if text.lower() not in ("yes", "no"):
            raise ConfigError("argument must be 'yes' or 'no'")
        return text.lower() == "yes"
    if isinstance(default, int):
        if option.parse is _size:
            # config.c: memtoull, digits and an optional unit (b, k, kb, m, mb, g, gb).
            found = re.fullmatch(r"([0-9]+)(b|k|kb|m|mb|g|gb)?", text, re.IGNORECASE)
            if found is None:
                raise ConfigError("argument must be a memory value")
            value = int(found.group(1)) * MEMORY_UNITS[(found.group(2) or "b").lower()]
        elif re.fullmatch(r"0|-?[1-9][0-9]{0,18}", text) is None:  # string2ll
            raise ConfigError("argument couldn't be parsed into an integer")
        else:
            value = int(text)
        low = option.minimum if option.minimum is not None else -LLONG_MAX - 1
        high = MAXIMUM.get(option.name, LLONG_MAX if option.parse is _size else INT_MAX)
        if not low <= value <= high:
            raise ConfigError(f"argument must be between {low} and {high} inclusive")
        return value
    choices = CHOICES.get(option.name)
    if choices is not None and text.lower() not in choices:
        raise ConfigError(f"argument(s) must be one of the following: {', '.join(choices)}")
    return option.parse(text)


def apply_config(node: Node, config: Config) -> None:
    """Make ``config`` the node's, and update what copied the old values."""
    old, node.config = node.config, config
    for client in node.clients.values():
        parser = client.parser
        parser.max_bulk_len = config.proto_max_bulk_len
        parser.max_query_buffer = config.client_query_buffer_limit
        if not config.requirepass:
            # Redis: with the default user back to nopass, no connection needs AUTH.
            client.authenticated = parser.authenticated = True
    if config.loglevel != old.loglevel:
        logging.getLogger().setLevel(LOG_LEVELS[config.loglevel])


def set_failed(name: str, reason: str) -> str:
    return f"ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"


def cmd_config(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CONFIG <subcommand> [<arg> [value] [opt] ...]"""
    return run_subcommand(CONFIG, ctx, argv)


def cmd_config_get(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CONFIG GET parameter [parameter ...]"""
    config = ctx.node.config
    values = {option.name: render_value(config.get(option.name)) for option in OPTIONS}
    values.update(READ_ONLY_FACTS)
    found: dict[str, str] = {}
    for pattern in argv[2:]:
        if not any(c in pattern for c in b"*?["):
            # config.c: a plain name is looked up (any case) and answered as given.
            name = pattern.decode(errors="replace")
            if name.lower() in values and name.lower() not in found:
                found[name] = values[name.lower()]
            continue
        for name, value in values.items():
            if name not in found and matches(pattern.lower(), name.encode().lower()):
                found[name] = value
    return Map(found)


def cmd_config_set(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CONFIG SET parameter value [parameter value ...]"""
    if len(argv) % 2:
        raise CommandError(SYNTAX_ERROR)
    pairs = list(zip(argv[2::2], argv[3::2], strict=True))
    # config.c configSetCommand: every name is checked before any value, and
    # the first problem found is the one reported.
    seen: set[str] = set()
    for raw_name, _ in pairs:
        name = raw_name.decode(errors="replace")
        option = OPTIONS_BY_NAME.get(name.lower())
        if option is None and name.lower() not in READ_ONLY_FACTS:
            raise CommandError(
                f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            )
        if option is None or not option.settable:
            raise CommandError(set_failed(name, "can't set immutable config"))
        if option.name in seen:
            raise CommandError(set_failed(name, "duplicate parameter"))
        seen.add(option.name)
    values = {}
    for raw_name, raw_value in pairs:
        option = OPTIONS_BY_NAME[raw_name.decode().lower()]
        try:
            values[option.name] = parse_value(option, raw_value)
        except ConfigError as exc:
            raise CommandError(set_failed(raw_name.decode(), str(exc))) from None
    try:
        config = ctx.node.config.with_values(values)
    except ConfigError as exc:
        raise CommandError(set_failed(raw_name.decode(), str(exc))) from None
    apply_config(ctx.node, config)
    return OK


def cmd_config_resetstat(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CONFIG RESETSTAT"""
    node = ctx.node
    stats = node.stats
    stats.connections_received = stats.connections_rejected = 0
    stats.expired_keys = stats.protocol_errors = stats.unexpected_errors = 0
    stats.net_input_bytes = stats.net_output_bytes = 0
    for client in node.clients.values():
        client.bytes_in = client.bytes_out = 0
    node.keyspace.hits = node.keyspace.misses = 0
    from nomadkv.server.info import all_specs
    from nomadkv.server.state import command_specs

    specs = command_specs()
    for spec in specs + all_specs(specs):
        spec.calls = spec.rejected_calls = spec.failed_calls = 0
        spec.usec = 0.0
    state_of(node).memory_peak = 0
    return OK


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def rewritten_config(text: str, config: Config) -> str:
    """The config file ``text`` with every option that differs from the running
    value rewritten in place (comments and order kept), and options set away
    from their default but absent from the file appended, as Redis does."""
    written = tomllib.loads(text)
    lines = text.splitlines()
    positions: dict[str, int] = {}
    for number, line in enumerate(lines):
        key = (
            line.split("=", 1)[0].strip()
            if "=" in line and not line.lstrip().startswith("#")
            else ""
        )
        if key in OPTIONS_BY_NAME:
            positions[key] = number
    appended = []
    for option in OPTIONS:
        current = config.get(option.name)
        if option.name in written:
            if option.parse(written[option.name]) != current and option.name in positions:
                lines[positions[option.name]] = f"{option.name} = {toml_value(current)}"
        elif current != option.default:
            appended.append(f"{option.name} = {toml_value(current)}")
    if appended:
        lines += ["", "# Set at run time (CONFIG REWRITE)", *appended]
    return "\n".join(lines) + "\n"


def cmd_config_rewrite(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CONFIG REWRITE"""
    path = state_of(ctx.node).config_file
    if not path:
        raise CommandError("ERR The server is running without a config file")
    try:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        new_text = rewritten_config(text, ctx.node.config)
        temporary = f"{path}.rewrite-{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except (OSError, tomllib.TOMLDecodeError, ConfigError) as exc:
        raise CommandError(f"ERR Rewriting config file: {exc}") from None
    return OK


HELP_LINES = [
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
]


def cmd_config_help(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CONFIG HELP"""
    return help_reply("CONFIG", HELP_LINES)


_ADMIN_FLAGS = ("admin", "noscript", "loading", "stale")
_ADMIN_ACL = ("@admin", "@slow", "@dangerous")


def _sub(name: str, arity: int, handler: Any, summary: str, since: str) -> CommandSpec:
    admin = name != "help"
    return CommandSpec(
        f"config|{name}",
        arity,
        _ADMIN_FLAGS if admin else ("loading", "stale"),
        handler,
        group="server",
        summary=summary,
        since=since,
        complexity="O(N) when N is the number of configuration parameters provided"
        if name in ("get", "set")
        else "O(1)",
        acl_categories=_ADMIN_ACL if admin else ("@slow",),
    )


CONFIG = CommandSpec(
    "config",
    -2,
    (),
    cmd_config,
    group="server",
    summary="A container for server configuration commands.",
    since="2.0.0",
    complexity="Depends on subcommand.",
    acl_categories=("@slow",),
    subcommands={
        spec.name.split("|")[1].encode(): spec
        for spec in (
            _sub(
                "get",
                -3,
                cmd_config_get,
                "Returns the effective values of configuration parameters.",
                "2.0.0",
            ),
            _sub("set", -4, cmd_config_set, "Sets configuration parameters in-flight.", "2.0.0"),
            _sub("resetstat", 2, cmd_config_resetstat, "Resets the server's statistics.", "2.0.0"),
            _sub(
                "rewrite",
                2,
                cmd_config_rewrite,
                "Persists the effective configuration to file.",
                "2.8.0",
            ),
            _sub(
                "help",
                2,
                cmd_config_help,
                "Returns helpful text about the different subcommands.",
                "5.0.0",
            ),
        )
    },
)

register(CONFIG)
