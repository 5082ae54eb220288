"""Server and connection commands: the ones that touch the process, the
connection or the node rather than the keyspace (PING, HELLO, AUTH, INFO, ...).

Registered in the same table as the data commands, so the gate, COMMAND
and the arity tests treat them alike.
"""

from __future__ import annotations

import time

from nomadkv import __version__
from nomadkv.commands.table import CommandError, CommandSpec, ReplyT, register
from nomadkv.resp.reply import OK, PONG, Map, bulk, integer
from nomadkv.server.client import Client, CloseConnection

REDIS_VERSION = "7.0.15"  # the Redis release whose behaviour NomadKV follows


def cmd_ping(ctx: Client, argv: list[bytes]) -> ReplyT:
    """PING [message]"""
    if len(argv) == 2:
        return bulk(argv[1])
    return PONG


def cmd_echo(ctx: Client, argv: list[bytes]) -> ReplyT:
    """ECHO message"""
    return bulk(argv[1])


def cmd_quit(ctx: Client, argv: list[bytes]) -> ReplyT:
    """QUIT"""
    raise CloseConnection(OK)


def cmd_select(ctx: Client, argv: list[bytes]) -> ReplyT:
    """SELECT index"""
    if argv[1] != b"0":
        try:
            int(argv[1])
        except ValueError:
            raise CommandError("ERR value is not an integer or out of range") from None
        raise CommandError("ERR SELECT is not allowed in cluster mode")
    return OK


def cmd_auth(ctx: Client, argv: list[bytes]) -> ReplyT:
    """AUTH [username] password"""
    if len(argv) > 3:
        raise CommandError("ERR syntax error")
    username = argv[1] if len(argv) == 3 else b"default"
    if not ctx.node.config.requirepass and len(argv) == 2:
        raise CommandError(
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?"
        )
    if username != b"default" or not ctx.authenticate(argv[-1]):
        raise CommandError("WRONGPASS invalid username-password pair or user is disabled.")
    return OK


def cmd_hello(ctx: Client, argv: list[bytes]) -> ReplyT:
    """HELLO [protover [AUTH username password] [SETNAME clientname]]"""
    version = 2 if not ctx.resp3 else 3
    i = 1
    if len(argv) > 1:
        try:
            version = int(argv[1])
        except ValueError:
            raise CommandError("ERR Protocol version is not an integer or out of range") from None
        if version not in (2, 3):
            raise CommandError("NOPROTO unsupported protocol version")
        i = 2
    name = None
    while i < len(argv):
        option = argv[i].upper()
        remaining = len(argv) - i - 1
        if option == b"AUTH" and remaining >= 2:
            if argv[i + 1] != b"default" or not ctx.authenticate(argv[i + 2]):
                raise CommandError("WRONGPASS invalid username-password pair or user is disabled.")
            i += 3
        elif option == b"SETNAME" and remaining >= 1:
            name = argv[i + 1]
            if any(c <= 32 or c > 126 for c in name):
                raise CommandError(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                )
            i += 2
        else:
            raise CommandError(
                f"ERR Syntax error in HELLO option '{argv[i].decode(errors='replace')}'"
            )
    if not ctx.authenticated:
        raise CommandError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if name is not None:
        ctx.name = name
    ctx.resp3 = version == 3
    return Map(
        [
            ("server", "redis"),
            ("version", REDIS_VERSION),
            ("proto", version),
            ("id", ctx.id),
            ("mode", "standalone"),
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


def nomadkv_version() -> str:
    return __version__


_CONNECTION = ("@connection", "@fast")

register(
    CommandSpec(
        "ping",
        -1,
        ("fast", "sentinel"),
        cmd_ping,
        group="connection",
        summary="Returns the server's liveliness response.",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "echo",
        2,
        ("fast",),
        cmd_echo,
        group="connection",
        summary="Returns the given string.",
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "quit",
        1,
        ("allow_busy", "noscript", "loading", "stale", "fast", "no_auth"),
        cmd_quit,
        group="connection",
        summary="Closes the connection.",
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
        acl_categories=_CONNECTION,
    ),
    CommandSpec(
        "hello",
        -1,
        ("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        cmd_hello,
        group="connection",
        summary="Handshakes with the Redis server.",
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
        acl_categories=("@fast",),
    ),
)
