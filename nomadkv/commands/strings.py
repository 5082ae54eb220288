"""String commands. Pure: reads take a Session, writes apply to a Keyspace."""

from __future__ import annotations

from nomadkv.commands.context import Session
from nomadkv.commands.table import (
    NOT_INTEGER,
    SYNTAX_ERROR,
    WRONGTYPE,
    WRONGTYPE_MESSAGE,
    CommandError,
    CommandSpec,
    KeySpec,
    ReplyT,
    parse_int,
    register,
)
from nomadkv.keyspace import Keyspace
from nomadkv.resp.reply import NULL, OK

MAX_MS = 2**63 - 1


def cmd_get(ctx: Session, argv: list[bytes]) -> ReplyT:
    """GET key"""
    ks = ctx.keyspace
    key = argv[1]
    # Keyspace.get inlined for the hottest command: a key without a deadline
    # costs one dict lookup.
    value = ks.data.get(key)
    if value is None or (ks.expires and key in ks.expires):
        value = ks.get(key, ctx.now_ms)
        if value is None:
            return NULL
    else:
        ks.hits += 1
    if value.__class__ is not bytes:
        return WRONGTYPE
    return b"$%d\r\n%b\r\n" % (len(value), value)


def absolute_deadline(option: bytes, amount: bytes, now_ms: int, command: str) -> int:
    """Turn EX/PX/EXAT/PXAT ``amount`` into absolute Unix milliseconds."""
    number = parse_int(amount, NOT_INTEGER)
    invalid = CommandError(f"ERR invalid expire time in '{command}' command")
    if number <= 0:
        raise invalid
    if option in (b"EX", b"EXAT"):
        if number > MAX_MS // 1000:
            raise invalid
        number *= 1000
    if option in (b"EX", b"PX"):
        if number > MAX_MS - now_ms:
            raise invalid
        number += now_ms
    return number


def prepare_set(argv: list[bytes], now_ms: int) -> list[bytes]:
    """SET key value [NX | XX] [GET] [EX s | PX ms | EXAT ts | PXAT ts | KEEPTTL]

    Validates the options and rewrites EX/PX/EXAT into PXAT, so the log holds
    absolute deadlines only.
    """
    if len(argv) == 3:
        return argv
    out = argv[:3]
    condition = ttl = b""
    get = False
    i = 3
    while i < len(argv):
        option = argv[i].upper()
        if option in (b"NX", b"XX") and not condition:
            condition = option
            out.append(option)
        elif option == b"GET" and not get:
            get = True
            out.append(option)
        elif option == b"KEEPTTL" and not ttl:
            ttl = option
            out.append(option)
        elif option in (b"EX", b"PX", b"EXAT", b"PXAT") and not ttl and i + 1 < len(argv):
            ttl = option
            i += 1
            deadline = absolute_deadline(option, argv[i], now_ms, "set")
            out += (b"PXAT", b"%d" % deadline)
        else:
            raise CommandError(SYNTAX_ERROR)
        i += 1
    return out


def apply_set(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    key = argv[1]
    if len(argv) == 3:
        ks.set(key, argv[2])
        return OK
    options = argv[3:]
    reply: ReplyT = OK
    old = ks.lookup(key, now_ms)
    if b"GET" in options:
        if old is not None and old.__class__ is not bytes:
            raise CommandError(WRONGTYPE_MESSAGE)
        reply = NULL if old is None else b"$%d\r\n%b\r\n" % (len(old), old)
    if (b"NX" in options and old is not None) or (b"XX" in options and old is None):
        return NULL if reply is OK else reply
    if b"KEEPTTL" in options:
        ks.replace(key, argv[2])
    else:
        ks.set(key, argv[2])
    if b"PXAT" in options:
        deadline = int(options[options.index(b"PXAT") + 1])
        if deadline <= now_ms:
            ks.delete(key)
        else:
            ks.set_deadline(key, deadline)
    return reply


register(
    CommandSpec(
        "get",
        2,
        ("readonly", "fast"),
        cmd_get,
        KeySpec(1, 1, 1),
        group="string",
        summary="Returns the string value of a key.",
        acl_categories=("@read", "@string", "@fast"),
    ),
    CommandSpec(
        "set",
        -3,
        ("write", "denyoom"),
        apply_set,
        KeySpec(1, 1, 1),
        prepare=prepare_set,
        group="string",
        summary="Sets the string value of a key, ignoring its type. The key is created if it "
        "doesn't exist.",
        complexity="O(1)",
        acl_categories=("@write", "@string", "@slow"),
    ),
)
