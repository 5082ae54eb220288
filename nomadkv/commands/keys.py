"""Generic key commands (DEL, EXISTS, TYPE, KEYS, SCAN, RENAME, COPY, FLUSHALL,
RANDOMKEY, ...) and the internal expiry command. Pure.

Checks follow Redis 7.0's db.c in order. NomadKV has one database, like
Redis Cluster: COPY's DB option accepts 0 only and answers other indexes as
Redis does in cluster mode.

SCAN's guarantee (see ``Keyspace.scan``): a full iteration returns every key
that was present from its first call to its last; keys may come back twice
if keys were removed meanwhile, and COUNT is a hint, as in Redis.
"""

from __future__ import annotations

import random
import re

from nomadkv.commands.context import Session
from nomadkv.commands.glob import compile_pattern
from nomadkv.commands.table import (
    NOT_INTEGER,
    SYNTAX_ERROR,
    CommandError,
    CommandSpec,
    KeySpec,
    ReplyT,
    option_name,
    parse_int,
    register,
)
from nomadkv.keyspace import Keyspace, copy_value, type_name
from nomadkv.resp.reply import NULL, OK, ONE, ZERO, bulk, bulk_array, integer

# Not in the client table: the node proposes it to delete keys past their
# deadline, so that every replica deletes them at the same log position.
EXPIRED = b"nomadkv.expired"

DATABASES = 16  # Redis's default: COPY's DB index is checked against it before cluster mode
SCAN_COUNT_DEFAULT = 10
RANDOMKEY_TRIES = 16  # random picks before listing the live keys (all may be expired)
_RANDOMKEY_RNG = random.Random()  # seeded from the OS
UINT64_MAX = 2**64 - 1
_CURSOR = re.compile(rb"([+-]?)0*(\d+)")


def apply_expired(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    deleted = sum(ks.delete_if_expired(key, now_ms) for key in argv[1:])
    return integer(deleted)


def apply_del(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """DEL key [key ...]  (and UNLINK key [key ...])"""
    deleted = 0
    for key in argv[1:]:
        if ks.lookup(key, now_ms) is not None:
            ks.delete(key)
            deleted += 1
    return integer(deleted)


def cmd_exists(ctx: Session, argv: list[bytes]) -> ReplyT:
    """EXISTS key [key ...]"""
    ks, now_ms = ctx.keyspace, ctx.now_ms
    return integer(sum(ks.peek(key, now_ms) is not None for key in argv[1:]))


def cmd_touch(ctx: Session, argv: list[bytes]) -> ReplyT:
    """TOUCH key [key ...]"""
    ks, now_ms = ctx.keyspace, ctx.now_ms
    return integer(sum(ks.get(key, now_ms) is not None for key in argv[1:]))


def cmd_type(ctx: Session, argv: list[bytes]) -> ReplyT:
    """TYPE key"""
    value = ctx.keyspace.peek(argv[1], ctx.now_ms)
    return b"+%b\r\n" % (b"none" if value is None else type_name(value))


# -- listing keys -------------------------------------------------------------


def cmd_keys(ctx: Session, argv: list[bytes]) -> ReplyT:
    """KEYS pattern"""
    live = ctx.keyspace.live_keys(ctx.now_ms)
    if argv[1] == b"*":
        return bulk_array(live)
    match = compile_pattern(argv[1])
    return bulk_array(key for key in live if match(key))


def parse_cursor(arg: bytes) -> int:
    """A SCAN cursor as Redis reads it with strtoul: an unsigned 64-bit number,
    a sign allowed (negative numbers wrap), the empty string read as 0."""
    text = arg.split(b"\0", 1)[0]  # Redis reads the argument as a C string
    found = _CURSOR.fullmatch(text)
    if text and (found is None or len(found.group(2)) > 20):
        raise CommandError("ERR invalid cursor")
    if found is None:
        return 0
    cursor = int(found.group(2))
    if cursor > UINT64_MAX:
        raise CommandError("ERR invalid cursor")
    return (-cursor) & UINT64_MAX if found.group(1) == b"-" else cursor


def cmd_scan(ctx: Session, argv: list[bytes]) -> ReplyT:
    """SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]"""
    cursor = parse_cursor(argv[1])
    count = SCAN_COUNT_DEFAULT
    pattern = kind = None
    i = 2
    while i < len(argv):
        option = option_name(argv[i])
        if option == b"COUNT" and i + 1 < len(argv):
            count = parse_int(argv[i + 1], NOT_INTEGER)
            if count < 1:
                raise CommandError(SYNTAX_ERROR)
        elif option == b"MATCH" and i + 1 < len(argv):
            pattern = argv[i + 1]
        elif option == b"TYPE" and i + 1 < len(argv):
            kind = option_name(argv[i + 1]).lower()  # compared with strcasecmp
        else:
            raise CommandError(SYNTAX_ERROR)
        i += 2
    ks, now_ms = ctx.keyspace, ctx.now_ms
    next_cursor, candidates = ks.scan(cursor, count)
    match = compile_pattern(pattern) if pattern is not None and pattern != b"*" else None
    keys = []
    for key in candidates:
        value = ks.peek(key, now_ms)
        if value is None or (match is not None and not match(key)):
            continue
        if kind is not None and type_name(value) != kind:
            continue
        keys.append(key)
    return b"*2\r\n%b%b" % (bulk(b"%d" % next_cursor), bulk_array(keys))


def cmd_randomkey(ctx: Session, argv: list[bytes]) -> ReplyT:
    """RANDOMKEY

    A read, so the pick needs no agreement between replicas: it comes from
    this process's own generator.
    """
    ks, now_ms = ctx.keyspace, ctx.now_ms
    if not ks.data:
        return NULL
    rng = _RANDOMKEY_RNG
    keys = ks.sample_keys()
    for _ in range(RANDOMKEY_TRIES):
        key = keys[rng.randrange(len(keys))]
        if ks.peek(key, now_ms) is not None:
            return bulk(key)
    live = list(ks.live_keys(now_ms))
    return bulk(rng.choice(live)) if live else NULL


# -- moving keys --------------------------------------------------------------


def _rename(ks: Keyspace, argv: list[bytes], now_ms: int, nx: bool) -> ReplyT:
    source, target = argv[1], argv[2]
    value = ks.lookup(source, now_ms)
    if value is None:
        raise CommandError("ERR no such key")
    if source == target:
        return ZERO if nx else OK
    deadline = ks.deadline(source)
    if ks.lookup(target, now_ms) is not None:
        if nx:
            return ZERO
        ks.delete(target)
    ks.set(target, value)
    if deadline is not None:
        ks.set_deadline(target, deadline)
    ks.delete(source)
    return ONE if nx else OK


def apply_rename(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """RENAME key newkey"""
    return _rename(ks, argv, now_ms, nx=False)


def apply_renamenx(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """RENAMENX key newkey"""
    return _rename(ks, argv, now_ms, nx=True)


def prepare_copy(argv: list[bytes], now_ms: int) -> list[bytes]:
    """COPY source destination [DB destination-db] [REPLACE]

    Logged as ``COPY source destination [REPLACE]``.
    """
    replace = False
    database = 0
    i = 3
    while i < len(argv):
        option = option_name(argv[i])
        if option == b"REPLACE":
            replace = True
        elif option == b"DB" and i + 1 < len(argv):
            i += 1
            database = parse_int(argv[i])
            if not -(2**31) <= database < 2**31:
                raise CommandError(
                    "ERR value is out of range, value must between -2147483648 and 2147483647"
                )
            if not 0 <= database < DATABASES:
                raise CommandError("ERR DB index is out of range")
        else:
            raise CommandError(SYNTAX_ERROR)
        i += 1
    if database != 0:
        raise CommandError("ERR Copying to another database is not allowed in cluster mode")
    if argv[1] == argv[2]:
        raise CommandError("ERR source and destination objects are the same")
    return [argv[0], argv[1], argv[2], b"REPLACE"] if replace else argv[:3]


def apply_copy(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    source, target = argv[1], argv[2]
    value = ks.lookup(source, now_ms)
    if value is None:
        return ZERO
    deadline = ks.deadline(source)
    if ks.lookup(target, now_ms) is not None:
        if len(argv) == 3:
            return ZERO
        ks.delete(target)
    ks.set(target, copy_value(value))
    if deadline is not None:
        ks.set_deadline(target, deadline)
    return ONE


def prepare_flush(argv: list[bytes], now_ms: int) -> list[bytes]:
    """FLUSHALL [ASYNC | SYNC]  (and FLUSHDB [ASYNC | SYNC])

    Both modes free memory at once: logged without the option.
    """
    if len(argv) == 1 or (len(argv) == 2 and option_name(argv[1]) in (b"SYNC", b"ASYNC")):
        return argv[:1]
    raise CommandError(SYNTAX_ERROR)


def apply_flush(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    ks.flush()
    return OK


INTERNAL: dict[bytes, CommandSpec] = {
    EXPIRED: CommandSpec("nomadkv.expired", -2, ("write",), apply_expired, KeySpec(1, -1, 1))
}

_READ_FAST = ("@keyspace", "@read", "@fast")
_WRITE_SLOW = ("@keyspace", "@write", "@slow")
_DANGEROUS = ("@keyspace", "@write", "@slow", "@dangerous")

register(
    CommandSpec(
        "del",
        -2,
        ("write",),
        apply_del,
        KeySpec(1, -1, 1),
        summary="Deletes one or more keys.",
        complexity="O(N) where N is the number of keys that will be removed.",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "unlink",
        -2,
        ("write", "fast"),
        apply_del,
        KeySpec(1, -1, 1),
        summary="Asynchronously deletes one or more keys.",
        since="4.0.0",
        complexity="O(N) where N is the number of keys that will be removed.",
        acl_categories=("@keyspace", "@write", "@fast"),
    ),
    CommandSpec(
        "exists",
        -2,
        ("readonly", "fast"),
        cmd_exists,
        KeySpec(1, -1, 1),
        summary="Determines whether one or more keys exist.",
        complexity="O(N) where N is the number of keys to check.",
        acl_categories=_READ_FAST,
    ),
    CommandSpec(
        "touch",
        -2,
        ("readonly", "fast"),
        cmd_touch,
        KeySpec(1, -1, 1),
        summary="Returns the number of existing keys out of those specified after updating "
        "the time they were last accessed.",
        since="3.2.1",
        complexity="O(N) where N is the number of keys that will be touched.",
        acl_categories=_READ_FAST,
    ),
    CommandSpec(
        "type",
        2,
        ("readonly", "fast"),
        cmd_type,
        KeySpec(1, 1, 1),
        summary="Determines the type of value stored at a key.",
        acl_categories=_READ_FAST,
    ),
    CommandSpec(
        "keys",
        2,
        ("readonly",),
        cmd_keys,
        summary="Returns all key names that match a pattern.",
        complexity="O(N) with N being the number of keys in the database.",
        acl_categories=("@keyspace", "@read", "@slow", "@dangerous"),
    ),
    CommandSpec(
        "scan",
        -2,
        ("readonly",),
        cmd_scan,
        summary="Iterates over the key names in the database.",
        since="2.8.0",
        complexity="O(1) for every call. O(N) for a complete iteration, and for the first "
        "call after the set of keys changed.",
        acl_categories=("@keyspace", "@read", "@slow"),
    ),
    CommandSpec(
        "randomkey",
        1,
        ("readonly",),
        cmd_randomkey,
        summary="Returns a random key name from the database.",
        complexity="O(N) in the worst case (Redis: O(1)).",
        acl_categories=("@keyspace", "@read", "@slow"),
    ),
    CommandSpec(
        "rename",
        3,
        ("write",),
        apply_rename,
        KeySpec(1, 2, 1),
        summary="Renames a key and overwrites the destination.",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "renamenx",
        3,
        ("write", "fast"),
        apply_renamenx,
        KeySpec(1, 2, 1),
        summary="Renames a key only when the target key name doesn't exist.",
        acl_categories=("@keyspace", "@write", "@fast"),
    ),
    CommandSpec(
        "copy",
        -3,
        ("write", "denyoom"),
        apply_copy,
        KeySpec(1, 2, 1),
        prepare=prepare_copy,
        summary="Copies the value of a key to a new key.",
        since="6.2.0",
        complexity="O(N) worst case for collections, where N is the number of nested items. "
        "O(1) for string values.",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "flushdb",
        -1,
        ("write",),
        apply_flush,
        prepare=prepare_flush,
        group="server",
        summary="Remove all keys from the current database.",
        complexity="O(N) where N is the number of keys in the selected database",
        acl_categories=_DANGEROUS,
    ),
    CommandSpec(
        "flushall",
        -1,
        ("write",),
        apply_flush,
        prepare=prepare_flush,
        group="server",
        summary="Removes all keys from all databases.",
        complexity="O(N) where N is the total number of keys in all databases",
        acl_categories=_DANGEROUS,
    ),
)
