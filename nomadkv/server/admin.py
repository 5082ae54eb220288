"""Server and connection commands: the ones that touch the process, the
connection or the node rather than the keyspace (PING, HELLO, AUTH, SAVE,
SHUTDOWN, ...).

Registered in the same table as the data commands, so the gate, COMMAND
and the arity tests treat them alike. Importing this module also registers
the other server command families: CLIENT (``clients``), INFO (``info``),
CONFIG (``configuration``) and COMMAND (``introspection``).

Error texts are Redis 7.0's (server.c, networking.c, acl.c, rdb.c).
"""

from __future__ import annotations

import hmac
import logging
import time

from nomadkv import __version__
from nomadkv.commands.table import (
    SYNTAX_ERROR,
    CommandError,
    CommandSpec,
    ReplyT,
    parse_int,
    register,
)
from nomadkv.resp.reply import OK, PONG, Map, bulk, integer, simple
from nomadkv.server.client import DEFERRED, Client, CloseConnection
from nomadkv.server.clients import NAME_ERROR, valid_client_name
from nomadkv.server.node import SnapshotInProgress
from nomadkv.server.state import REDIS_VERSION, attach

__all__ = ["REDIS_VERSION", "attach", "nomadkv_version"]

log = logging.getLogger("nomadkv.admin")

WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
BGSAVE_IN_PROGRESS = "ERR Background save already in progress"
RESET = simple("RESET")


def nomadkv_version() -> str:
    return __version__


def credentials_valid(ctx: Client, username: bytes, password: bytes) -> bool:
    """Redis's default user: without requirepass it has ``nopass`` (any password
    is accepted for it); with one, the password must match (constant time).
    No other user exists."""
    if username != b"default":
        return False
    expected = ctx.node.config.requirepass.encode()
    return not expected or hmac.compare_digest(password, expected)


def set_authenticated(ctx: Client, authenticated: bool) -> None:
    ctx.authenticated = authenticated
    ctx.parser.authenticated = authenticated


def cmd_ping(ctx: Client, argv: list[bytes]) -> ReplyT:
    """PING [message]"""
    if len(argv) > 2:
        raise CommandError("ERR wrong number of arguments for 'ping' command")
    if len(argv) == 2:
        return bulk(argv[1])
    return PONG


def cmd_echo(ctx: Client, argv: list[bytes]) -> ReplyT:
    """ECHO message"""
    return bulk(argv[1])


def cmd_quit(ctx: Client, argv: list[bytes]) -> ReplyT:
    """QUIT"""
    raise CloseConnection(OK)


def cmd_reset(ctx: Client, argv: list[bytes]) -> ReplyT:
    """RESET"""
    # networking.c clearClientConnectionState: RESP2, no name, the default
    # user's authentication state, no READONLY; library name and version stay.
    ctx.resp3 = False
    ctx.name = b""
    ctx.readonly = False
    set_authenticated(ctx, not ctx.node.config.requirepass)
    return RESET


def cmd_select(ctx: Client, argv: list[bytes]) -> ReplyT:
    """SELECT index"""
    index = parse_int(argv[1])
    if not -(2**31) <= index < 2**31:
        raise CommandError(
            "ERR value is out of range, value must between -2147483648 and 2147483647"
        )
    if index != 0:
        if ctx.node.config.cluster_enabled:
            raise CommandError("ERR SELECT is not allowed in cluster mode")
        raise CommandError("ERR DB index is out of range")  # one database, as `databases 1`
    return OK


def cmd_auth(ctx: Client, argv: list[bytes]) -> ReplyT:
    """AUTH [username] password"""
    if len(argv) > 3:
        raise CommandError(SYNTAX_ERROR)
    if len(argv) == 2 and not ctx.node.config.requirepass:
        raise CommandError(
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?"
        )
    username = argv[1] if len(argv) == 3 else b"default"
    if not credentials_valid(ctx, username, argv[-1]):
        raise CommandError(WRONGPASS)
    set_authenticated(ctx, True)
    return OK


def cmd_hello(ctx: Client, argv: list[bytes]) -> ReplyT:
    """HELLO [protover [AUTH username password] [SETNAME clientname]]"""
    version = 3 if ctx.resp3 else 2
    i = 1
    if len(argv) > 1:
        version = parse_int(argv[1], "ERR Protocol version is not an integer or out of range")
        if version not in (2, 3):
            raise CommandError("NOPROTO unsupported protocol version")
        i = 2
    credentials = None
    name = None
    while i < len(argv):
        option = argv[i].upper()
        remaining = len(argv) - i - 1
        if option == b"AUTH" and remaining >= 2:
            credentials = (argv[i + 1], argv[i + 2])
            i += 3
        elif option == b"SETNAME" and remaining >= 1:
            name = argv[i + 1]
            i += 2
        else:
            raise CommandError(
                f"ERR Syntax error in HELLO option '{argv[i].decode(errors='replace')}'"
            )
    if credentials is not None:
        if not credentials_valid(ctx, *credentials):
            raise CommandError(WRONGPASS)
        set_authenticated(ctx, True)
    if not ctx.authenticated:
        raise CommandError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if name is not None:
        if not valid_client_name(name):
            raise CommandError(NAME_ERROR)
        ctx.name = name
    ctx.resp3 = version == 3
    return Map(
        [
            ("server", "redis"),
            ("version", REDIS_VERSION),
            ("proto", version),
            ("id", ctx.id),
            ("mode", "cluster" if ctx.node.config.cluster_enabled else "standalone"),
            ("role", "master"),
            ("modules", []),
        ]
    )


def cmd_dbsize(ctx: Client, argv: list[bytes]) -> ReplyT:
    """DBSIZE"""
    return integer(len(ctx.keyspace))


def cmd_time(ctx: Client, argv: list[bytes]) -> ReplyT:
    """TIME"""
    now_us = time.time_ns() // 1000
    seconds, micros = divmod(now_us, 1_000_000)
    return b"*2\r\n%b%b" % (bulk(b"%d" % seconds), bulk(b"%d" % micros))


def cmd_lastsave(ctx: Client, argv: list[bytes]) -> ReplyT:
    """LASTSAVE"""
    return integer(int(ctx.node.last_snapshot_at))


def cmd_save(ctx: Client, argv: list[bytes]) -> ReplyT:
    """SAVE"""

    # Redis blocks the whole server while it saves; here the snapshot child
    # writes while the loop keeps serving, and only this client waits.
    def done(ok: bool) -> None:
        ctx.deliver(OK if ok else b"-ERR\r\n")
        ctx.commit_done()

    try:
        ctx.node.start_snapshot(done)
    except SnapshotInProgress:
        raise CommandError(BGSAVE_IN_PROGRESS) from None
    return DEFERRED


def cmd_bgsave(ctx: Client, argv: list[bytes]) -> ReplyT:
    """BGSAVE [SCHEDULE]"""
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() != b"schedule"):
        raise CommandError(SYNTAX_ERROR)
    # The snapshot child is the only child process a node has, so SCHEDULE
    # (which waits for an AOF rewrite child in Redis) never applies: while a
    # snapshot runs, Redis answers "already in progress" with or without it.
    try:
        ctx.node.start_snapshot()
    except SnapshotInProgress:
        raise CommandError(BGSAVE_IN_PROGRESS) from None
    return simple("Background saving started")


def cmd_shutdown(ctx: Client, argv: list[bytes]) -> ReplyT:
    """SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]"""
    options = {arg.lower() for arg in argv[1:]}
    if not options <= {b"nosave", b"save", b"now", b"force", b"abort"}:
        raise CommandError(SYNTAX_ERROR)
    if (b"abort" in options and len(argv) > 2) or {b"save", b"nosave"} <= options:
        raise CommandError(SYNTAX_ERROR)
    if b"abort" in options:
        # There is no replica to wait for, so a shutdown never lingers to be aborted.
        raise CommandError("ERR No shutdown in progress.")
    node = ctx.node
    if b"save" not in options:
        # Every acknowledged write is in the log already; the shutdown path
        # flushes and closes it. The client sees the connection close, as in Redis.
        log.warning("SHUTDOWN requested by client %s", ctx.address)
        node.request_shutdown()
        return DEFERRED

    def saved(ok: bool) -> None:
        if ok or b"force" in options:
            node.request_shutdown()
            return
        log.warning("SHUTDOWN SAVE: the snapshot failed; not shutting down")
        ctx.deliver(b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n")
        ctx.commit_done()

    log.warning("SHUTDOWN SAVE requested by client %s: taking a snapshot first", ctx.address)
    try:
        node.start_snapshot(saved)
    except SnapshotInProgress:
        # Redis kills a running child and saves again; here the running
        # snapshot covers the state at its start, so take one more after it.
        node.when_snapshot_done(lambda ok: node.start_snapshot(saved))
    return DEFERRED


_CONNECTION = ("@connection", "@fast")
_ADMIN = ("@admin", "@slow", "@dangerous")

register(
    CommandSpec(
        "ping",
        -1,
        ("fast",),
        cmd_ping,
        group="connection",
        summary="Returns the server's liveliness response.",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "echo",
        2,
        ("loading", "stale", "fast"),
        cmd_echo,
        group="connection",
        summary="Returns the given string.",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "quit",
        -1,
        ("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        cmd_quit,
        group="connection",
        summary="Closes the connection.",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "reset",
        1,
        ("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        cmd_reset,
        group="connection",
        summary="Resets the connection.",
        since="6.2.0",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "select",
        2,
        ("loading", "stale", "fast"),
        cmd_select,
        group="connection",
        summary="Changes the selected database.",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "auth",
        -2,
        ("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        cmd_auth,
        group="connection",
        summary="Authenticates the connection.",
        complexity="O(N) where N is the number of passwords defined for the user",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "hello",
        -1,
        ("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        cmd_hello,
        group="connection",
        summary="Handshakes with the Redis server.",
        since="6.0.0",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "dbsize",
        1,
        ("readonly", "fast"),
        cmd_dbsize,
        group="server",
        summary="Returns the number of keys in the database.",
        acl_categories=("@keyspace", "@read", "@fast"),
    ),
    CommandSpec(
        "time",
        1,
        ("loading", "stale", "fast"),
        cmd_time,
        group="server",
        summary="Returns the server time.",
        since="2.6.0",
        acl_categories=("@fast",),
    ),
    CommandSpec(
        "lastsave",
        1,
        ("loading", "stale", "fast"),
        cmd_lastsave,
        group="server",
        summary="Returns the Unix timestamp of the last successful save to disk.",
        acl_categories=("@admin", "@fast", "@dangerous"),
    ),
    CommandSpec(
        "save",
        1,
        ("admin", "noscript", "no_async_loading", "no_multi"),
        cmd_save,
        group="server",
        summary="Synchronously saves the database(s) to disk.",
        complexity="O(N) where N is the total number of keys in all databases",
        acl_categories=_ADMIN,
    ),
    CommandSpec(
        "bgsave",
        -1,
        ("admin", "noscript", "no_async_loading"),
        cmd_bgsave,
        group="server",
        summary="Asynchronously saves the database(s) to disk.",
        complexity="O(1)",
        acl_categories=_ADMIN,
    ),
    CommandSpec(
        "shutdown",
        -1,
        ("admin", "noscript", "loading", "stale", "no_multi", "allow_busy"),
        cmd_shutdown,
        group="server",
        summary="Synchronously saves the database(s) to disk and shuts down the Redis server.",
        complexity="O(N) when saving, where N is the total number of keys in all databases "
        "when saving data, otherwise O(1)",
        acl_categories=_ADMIN,
    ),
)

# The other server command families register themselves on import.
from nomadkv.server import configuration, info, introspection  # noqa: E402, F401
