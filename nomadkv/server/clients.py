"""CLIENT and its subcommands: the connection's name, id and library, the
list of connections, and killing them.

Owns the CLIENT LIST line format (Redis 7.2's field order: 7.0's fields,
then ``lib-name`` and ``lib-ver``). Error texts are networking.c's.

Every connection is a plain ("normal") client: NomadKV has no replicas
that connect as clients, no pub/sub and no MULTI, so the fields for those
hold their idle values.
"""

from __future__ import annotations

import time

from nomadkv.commands.table import (
    SYNTAX_ERROR,
    CommandError,
    CommandSpec,
    ReplyT,
    parse_int,
    register,
)
from nomadkv.resp.reply import NULL, OK, Verbatim, bulk, integer
from nomadkv.server.client import Client
from nomadkv.server.container import help_reply, run_subcommand

CLIENT_TYPES = (b"normal", b"master", b"slave", b"replica", b"pubsub")
NAME_ERROR = "ERR Client names cannot contain spaces, newlines or special characters."


def valid_client_name(name: bytes) -> bool:
    """Redis's rule for names and library attributes: printable ASCII, no spaces."""
    return all(0x21 <= c <= 0x7E for c in name)


def client_type(name: bytes) -> bytes:
    kind = name.lower()
    if kind not in CLIENT_TYPES:
        raise CommandError(f"ERR Unknown client type '{name.decode(errors='replace')}'")
    return b"replica" if kind == b"slave" else kind


def client_line(client: Client, now_s: float, caller: Client | None = None) -> str:
    """One CLIENT LIST / CLIENT INFO line, without the trailing newline."""
    transport = client.transport
    socket = transport.get_extra_info("socket") if transport is not None else None
    fd = socket.fileno() if socket is not None else -1
    output_bytes = transport.get_write_buffer_size() if transport is not None else 0
    output_bytes += sum(len(chunk) for chunk in client.out)
    query_bytes = client.parser.buffered_bytes()
    events = "" if client.writing_paused else "r"
    if output_bytes:
        events += "w"
    spec = client.last_spec
    # Redis sets a client's last command before running it: the caller's own line
    # shows the CLIENT LIST or CLIENT INFO that is running.
    is_caller = client is caller
    if is_caller or (spec is not None and spec.subcommands and client.last_subcommand is not None):
        spec = client.last_subcommand
    fields = (
        ("id", client.id),
        ("addr", client.address),
        ("laddr", client.local_address),
        ("fd", fd),
        ("name", client.name.decode(errors="replace")),
        ("age", int(now_s - client.created)),
        ("idle", max(0, int(now_s - client.last_interaction_ms / 1000))),
        ("flags", "r" if client.readonly else "N"),
        ("db", 0),
        ("sub", 0),
        ("psub", 0),
        ("ssub", 0),
        ("multi", -1),
        ("qbuf", query_bytes),
        ("qbuf-free", 0),
        ("argv-mem", 0),
        ("multi-mem", 0),
        ("rbs", 0),
        ("rbp", 0),
        ("obl", 0),
        ("oll", len(client.out)),
        ("omem", output_bytes),
        ("tot-mem", query_bytes + output_bytes),
        ("events", events),
        ("cmd", spec.name if spec is not None else "NULL"),
        ("user", "default"),
        ("redir", -1),
        ("resp", 3 if client.resp3 else 2),
        ("lib-name", client.lib_name.decode(errors="replace")),
        ("lib-ver", client.lib_ver.decode(errors="replace")),
    )
    return " ".join(f"{name}={value}" for name, value in fields)


def client_list(clients: list[Client], caller: Client | None = None) -> Verbatim:
    now_s = time.time()
    return Verbatim("".join(client_line(c, now_s, caller) + "\n" for c in clients).encode())


def cmd_client(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT <subcommand> [<arg> [value] [opt] ...]"""
    return run_subcommand(CLIENT, ctx, argv)


def cmd_client_id(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT ID"""
    return integer(ctx.id)


def cmd_client_getname(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT GETNAME"""
    return bulk(ctx.name) if ctx.name else NULL


def cmd_client_setname(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT SETNAME connection-name"""
    if not valid_client_name(argv[2]):
        raise CommandError(NAME_ERROR)
    ctx.name = argv[2]
    return OK


def cmd_client_setinfo(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT SETINFO <LIB-NAME libname | LIB-VER libver>"""
    attribute = argv[2].lower()
    if attribute not in (b"lib-name", b"lib-ver"):
        raise CommandError(f"ERR Unrecognized option '{argv[2].decode(errors='replace')}'")
    if not valid_client_name(argv[3]):
        raise CommandError(
            f"ERR {argv[2].decode(errors='replace')} cannot contain spaces, newlines or "
            "special characters."
        )
    if attribute == b"lib-name":
        ctx.lib_name = argv[3]
    else:
        ctx.lib_ver = argv[3]
    return OK


def cmd_client_info(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT INFO"""
    return Verbatim((client_line(ctx, time.time(), ctx) + "\n").encode())


def cmd_client_list(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT LIST [TYPE <NORMAL | MASTER | REPLICA | PUBSUB>] [ID client-id [client-id ...]]"""
    clients = ctx.node.clients
    if len(argv) == 4 and argv[2].lower() == b"type":
        kind = client_type(argv[3])
        return client_list(list(clients.values()) if kind == b"normal" else [], ctx)
    if len(argv) > 3 and argv[2].lower() == b"id":
        chosen = []
        for text in argv[3:]:
            ident = parse_int(text, "ERR Invalid client ID")
            if ident in clients:
                chosen.append(clients[ident])
        return client_list(chosen, ctx)
    if len(argv) != 2:
        raise CommandError(SYNTAX_ERROR)
    return client_list(list(clients.values()), ctx)


def cmd_client_kill(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT KILL <ip:port | <[ID client-id] | [TYPE <NORMAL | MASTER | SLAVE | REPLICA |
    PUBSUB>] | [USER username] | [ADDR ip:port] | [LADDR ip:port] | [SKIPME <YES | NO>]>
    [...]>"""
    ident = 0
    kind = None
    address = local_address = None
    skip_me = True
    if len(argv) == 3:  # the old form: CLIENT KILL addr:port, which may kill the caller
        address = argv[2].decode(errors="replace")
        skip_me = False
    elif len(argv) % 2 == 0:
        for option, value in zip(argv[2::2], argv[3::2], strict=True):
            option = option.lower()  # noqa: PLW2901
            if option == b"id":
                ident = parse_int(value, "ERR client-id should be greater than 0")
                if ident < 1:
                    raise CommandError("ERR client-id should be greater than 0")
            elif option == b"type":
                kind = client_type(value)
            elif option == b"addr":
                address = value.decode(errors="replace")
            elif option == b"laddr":
                local_address = value.decode(errors="replace")
            elif option == b"user":
                if value != b"default":
                    raise CommandError(f"ERR No such user '{value.decode(errors='replace')}'")
            elif option == b"skipme":
                if value.lower() not in (b"yes", b"no"):
                    raise CommandError(SYNTAX_ERROR)
                skip_me = value.lower() == b"yes"
            else:
                raise CommandError(SYNTAX_ERROR)
    else:
        raise CommandError(SYNTAX_ERROR)
    killed = 0
    for client in list(ctx.node.clients.values()):
        if address is not None and client.address != address:
            continue
        if local_address is not None and client.local_address != local_address:
            continue
        if kind is not None and kind != b"normal":
            continue
        if ident and client.id != ident:
            continue
        if client is ctx:
            if skip_me:
                continue
            ctx.close_after_reply = True
        else:
            client.close()
        killed += 1
    if len(argv) == 3:
        if not killed:
            raise CommandError("ERR No such client")
        return OK
    return integer(killed)


def cmd_client_no_evict(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT NO-EVICT <ON | OFF>"""
    # NomadKV never evicts clients (there is no maxmemory-clients), so the
    # flag changes nothing; it is accepted as Redis accepts it.
    if argv[2].lower() not in (b"on", b"off"):
        raise CommandError(SYNTAX_ERROR)
    return OK


def cmd_client_no_touch(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT NO-TOUCH <ON | OFF>"""
    # NomadKV keeps no access times (no LRU/LFU eviction, no OBJECT IDLETIME),
    # so there is nothing for the flag to leave untouched.
    if argv[2].lower() not in (b"on", b"off"):
        raise CommandError(SYNTAX_ERROR)
    return OK


HELP_LINES = [
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients with the specified IDs.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
]


def cmd_client_help(ctx: Client, argv: list[bytes]) -> ReplyT:
    """CLIENT HELP"""
    return help_reply("CLIENT", HELP_LINES)


def _sub(
    name: str,
    arity: int,
    handler: object,
    summary: str,
    since: str,
    flags: tuple[str, ...] = ("noscript", "loading", "stale"),
    acl: tuple[str, ...] = ("@slow", "@connection"),
    complexity: str = "O(1)",
) -> CommandSpec:
    return CommandSpec(
        f"client|{name}",
        arity,
        flags,
        handler,  # type: ignore[arg-type]
        group="connection",
        summary=summary,
        since=since,
        complexity=complexity,
        acl_categories=acl,
    )


_ADMIN_FLAGS = ("admin", "noscript", "loading", "stale")
_ADMIN_ACL = ("@admin", "@slow", "@dangerous", "@connection")

CLIENT = CommandSpec(
    "client",
    -2,
    (),
    cmd_client,
    group="connection",
    summary="A container for client connection commands.",
    since="2.4.0",
    complexity="Depends on subcommand.",
    acl_categories=("@slow",),
    subcommands={
        spec.name.split("|")[1].encode(): spec
        for spec in (
            _sub(
                "id", 2, cmd_client_id, "Returns the unique client ID of the connection.", "5.0.0"
            ),
            _sub("getname", 2, cmd_client_getname, "Returns the name of the connection.", "2.6.9"),
            _sub("setname", 3, cmd_client_setname, "Sets the connection name.", "2.6.9"),
            _sub(
                "setinfo",
                4,
                cmd_client_setinfo,
                "Sets information specific to the client or connection.",
                "7.2.0",
            ),
            _sub(
                "info",
                2,
                cmd_client_info,
                "Returns information about the connection.",
                "6.2.0",
            ),
            _sub(
                "list",
                -2,
                cmd_client_list,
                "Lists open connections.",
                "2.4.0",
                _ADMIN_FLAGS,
                _ADMIN_ACL,
                "O(N) where N is the number of client connections",
            ),
            _sub(
                "kill",
                -3,
                cmd_client_kill,
                "Terminates open connections.",
                "2.4.0",
                _ADMIN_FLAGS,
                _ADMIN_ACL,
                "O(N) where N is the number of client connections",
            ),
            _sub(
                "no-evict",
                3,
                cmd_client_no_evict,
                "Sets the client eviction mode of the connection.",
                "7.0.0",
                _ADMIN_FLAGS,
                _ADMIN_ACL,
            ),
            _sub(
                "no-touch",
                3,
                cmd_client_no_touch,
                "Controls whether commands sent by the client affect the LRU/LFU of accessed keys.",
                "7.2.0",
                ("noscript", "loading", "stale"),
                ("@slow", "@connection"),
            ),
            _sub(
                "help",
                2,
                cmd_client_help,
                "Returns helpful text about the different subcommands.",
                "5.0.0",
                ("loading", "stale"),
            ),
        )
    },
)

register(CLIENT)
