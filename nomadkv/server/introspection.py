"""COMMAND and its subcommands, generated from the command table.

Owns the shapes of Redis 7's command introspection replies. A COMMAND INFO
entry is ``[name, arity, flags, first key, last key, step, ACL categories,
tips, key specs, subcommands]`` (flags and categories are sets of status
strings in RESP3, arrays in RESP2), which is what redis-py's RedisCluster
parses at start-up.

Key specs are derived from the table's (first, last, step) triple: a
``begin_search`` by index and a ``find_keys`` range, flagged ``RO access``
for reads and ``RW update`` for writes (the table does not record the finer
Redis flags such as ``OW`` or ``RM delete``). No command has movable keys,
and the table records no tips, so tips are empty. COMMAND DOCS gives the
summary, since, group and complexity (the table has no argument lists).
"""

from __future__ import annotations

from typing import Any

from nomadkv.commands.glob import matches
from nomadkv.commands.table import (
    COMMANDS,
    CommandError,
    CommandSpec,
    ReplyT,
    register,
)
from nomadkv.resp.reply import NULL, Array, Map, SetReply, Status, Value, bulk_array, integer
from nomadkv.server.client import Client
from nomadkv.server.container import help_reply, run_subcommand
from nomadkv.server.state import command_specs

# The order Redis prints flags and ACL categories in (server.c addCommandFlags,
# acl.c ACLCommandCategories); flags Redis hides from COMMAND are left out.
FLAG_ORDER = (
    "write",
    "readonly",
    "denyoom",
    "module",
    "admin",
    "pubsub",
    "noscript",
    "blocking",
    "loading",
    "stale",
    "skip_monitor",
    "skip_slowlog",
    "asking",
    "fast",
    "no_auth",
    "no_mandatory_keys",
    "no_async_loading",
    "no_multi",
    "movablekeys",
    "allow_busy",
)
CATEGORY_ORDER = (
    "@keyspace",
    "@read",
    "@write",
    "@set",
    "@sortedset",
    "@list",
    "@hash",
    "@string",
    "@bitmap",
    "@hyperloglog",
    "@geo",
    "@stream",
    "@pubsub",
    "@admin",
    "@fast",
    "@slow",
    "@blocking",
    "@dangerous",
    "@connection",
    "@transaction",
    "@scripting",
)


def in_redis_order(names: tuple[str, ...], order: tuple[str, ...]) -> list[Status]:
    return [Status(name) for name in order if name in names]


def find_command(name: bytes) -> CommandSpec | None:
    """A command by name, or a subcommand by ``container|sub``."""
    container_name, _, sub_name = name.lower().partition(b"|")
    spec = COMMANDS.get(container_name)
    if spec is None or not sub_name:
        return spec
    return spec.subcommands.get(sub_name)


def key_specs(spec: CommandSpec) -> list[Value]:
    keys = spec.keys
    if keys.first == 0:
        return []
    flags = ("RW", "update") if spec.write else ("RO", "access")
    # Redis's range spec counts lastkey from the first key; negative from the end.
    last = keys.last - keys.first if keys.last >= 0 else keys.last
    return [
        Map(
            [
                ("flags", SetReply([Status(flag) for flag in flags])),
                ("begin_search", Map([("type", "index"), ("spec", Map([("index", keys.first)]))])),
                (
                    "find_keys",
                    Map(
                        [
                            ("type", "range"),
                            (
                                "spec",
                                Map([("lastkey", last), ("keystep", keys.step), ("limit", 0)]),
                            ),
                        ]
                    ),
                ),
            ]
        )
    ]


def command_entry(spec: CommandSpec) -> Array:
    keys = spec.keys
    return Array(
        [
            spec.name,
            spec.arity,
            SetReply(in_redis_order(spec.flags, FLAG_ORDER)),
            keys.first,
            keys.last,
            keys.step,
            SetReply(in_redis_order(spec.acl_categories, CATEGORY_ORDER)),
            SetReply([]),
            SetReply(key_specs(spec)),
            # commands.c addReplyCommandSubCommands: a set when there are none, else an array.
            Array([command_entry(sub) for sub in spec.subcommands.values()])
            if spec.subcommands
            else SetReply([]),
        ]
    )


def command_docs(spec: CommandSpec) -> Map:
    fields: list[tuple[Value, Value]] = [
        ("summary", spec.summary),
        ("since", spec.since),
        ("group", spec.group),
        ("complexity", spec.complexity),
    ]
    if spec.subcommands:
        fields.append(
            (
                "subcommands",
                Map([(sub.name, command_docs(sub)) for sub in spec.subcommands.values()]),
            )
        )
    return Map(fields)


def cmd_command(ctx: Client, argv: list[bytes]) -> ReplyT:
    """COMMAND <subcommand> [<arg> [value] [opt] ...]"""
    if len(argv) == 1:
        return Array([command_entry(spec) for spec in command_specs()])
    return run_subcommand(COMMAND, ctx, argv)


def cmd_command_count(ctx: Client, argv: list[bytes]) -> ReplyT:
    """COMMAND COUNT"""
    return integer(len(command_specs()))


def cmd_command_info(ctx: Client, argv: list[bytes]) -> ReplyT:
    """COMMAND INFO [command-name [command-name ...]]"""
    if len(argv) == 2:
        return Array([command_entry(spec) for spec in command_specs()])
    entries: list[Value] = []
    for name in argv[2:]:
        spec = find_command(name)
        entries.append(command_entry(spec) if spec is not None else NULL)
    return Array(entries)


def cmd_command_docs(ctx: Client, argv: list[bytes]) -> ReplyT:
    """COMMAND DOCS [command-name [command-name ...]]"""
    if len(argv) == 2:
        specs = command_specs()
    else:
        specs = [spec for spec in map(find_command, argv[2:]) if spec is not None]
    return Map([(spec.name, command_docs(spec)) for spec in specs])


def every_name(specs: list[CommandSpec]) -> list[tuple[str, CommandSpec]]:
    """Commands and their subcommands, as COMMAND LIST names them."""
    names = []
    for spec in specs:
        names.append((spec.name, spec))
        names += [(sub.name, sub) for sub in spec.subcommands.values()]
    return names


def cmd_command_list(ctx: Client, argv: list[bytes]) -> ReplyT:
    """COMMAND LIST [FILTERBY <MODULE module-name | ACLCAT category | PATTERN pattern>]"""
    names = every_name(command_specs())
    if len(argv) == 2:
        return bulk_array(name.encode() for name, _ in names)
    if len(argv) != 5 or argv[2].lower() != b"filterby":
        raise CommandError("ERR syntax error")
    kind, value = argv[3].lower(), argv[4]
    if kind == b"module":
        chosen: list[str] = []  # no modules
    elif kind == b"aclcat":
        category = "@" + value.decode(errors="replace").lower()
        chosen = [name for name, spec in names if category in spec.acl_categories]
    elif kind == b"pattern":
        chosen = [name for name, _ in names if matches(value.lower(), name.encode().lower())]
    else:
        raise CommandError("ERR syntax error")
    return bulk_array(name.encode() for name in chosen)


def keys_of(argv: list[bytes]) -> tuple[CommandSpec, list[bytes]]:
    """The command COMMAND GETKEYS was given, and its keys (db.c getKeysFromCommand)."""
    spec = find_command(argv[2])
    if spec is not None and spec.subcommands and len(argv) > 3:
        spec = spec.subcommands.get(argv[3].lower(), spec)
    if spec is None:
        raise CommandError("ERR Invalid command specified")
    argc = len(argv) - 2
    if (argc != spec.arity) if spec.arity > 0 else (argc < -spec.arity):
        raise CommandError("ERR Invalid number of arguments specified for command")
    keys = spec.keys.keys(argv[2:])
    if not keys:
        raise CommandError("ERR The command has no key arguments")
    return spec, keys


def cmd_command_getkeys(ctx: Client, argv: list[bytes]) -> ReplyT:
    """COMMAND GETKEYS command [arg [arg ...]]"""
    _, keys = keys_of(argv)
    return bulk_array(keys)


def cmd_command_getkeysandflags(ctx: Client, argv: list[bytes]) -> ReplyT:
    """COMMAND GETKEYSANDFLAGS command [arg [arg ...]]"""
    spec, keys = keys_of(argv)
    flags = ("RW", "update") if spec.write else ("RO", "access")
    flag_set = SetReply([Status(flag) for flag in flags])
    return Array([[key, flag_set] for key in keys])


HELP_LINES = [
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
]


def cmd_command_help(ctx: Client, argv: list[bytes]) -> ReplyT:
    """COMMAND HELP"""
    return help_reply("COMMAND", HELP_LINES)


def _sub(
    name: str, arity: int, handler: Any, summary: str, complexity: str = "O(1)"
) -> CommandSpec:
    return CommandSpec(
        f"command|{name}",
        arity,
        ("loading", "stale"),
        handler,
        group="server",
        summary=summary,
        since="2.8.13" if name in ("count", "getkeys", "info") else "7.0.0",
        complexity=complexity,
        acl_categories=("@slow", "@connection"),
    )


COMMAND = CommandSpec(
    "command",
    -1,
    ("loading", "stale"),
    cmd_command,
    group="server",
    summary="Returns detailed information about all commands.",
    since="2.8.13",
    complexity="O(N) where N is the total number of Redis commands",
    acl_categories=("@slow", "@connection"),
    subcommands={
        spec.name.split("|")[1].encode(): spec
        for spec in (
            _sub("count", 2, cmd_command_count, "Returns a count of commands."),
            _sub(
                "info",
                -2,
                cmd_command_info,
                "Returns information about one, multiple or all commands.",
                "O(N) where N is the number of commands to look up",
            ),
            _sub(
                "docs",
                -2,
                cmd_command_docs,
                "Returns documentary information about one, multiple or all commands.",
                "O(N) where N is the number of commands to look up",
            ),
            _sub(
                "list",
                -2,
                cmd_command_list,
                "Returns a list of command names.",
                "O(N) where N is the total number of Redis commands",
            ),
            _sub(
                "getkeys",
                -4,
                cmd_command_getkeys,
                "Extracts the key names from an arbitrary command.",
                "O(N) where N is the number of arguments to the command",
            ),
            _sub(
                "getkeysandflags",
                -4,
                cmd_command_getkeysandflags,
                "Extracts the key names and access flags for an arbitrary command.",
                "O(N) where N is the number of arguments to the command",
            ),
            _sub(
                "help", 2, cmd_command_help, "Returns helpful text about the different subcommands."
            ),
        )
    },
)

register(COMMAND)
