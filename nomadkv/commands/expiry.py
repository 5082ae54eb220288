"""Expiry commands: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (NX XX GT LT), TTL,
PTTL, EXPIRETIME, PEXPIRETIME, PERSIST. Pure.

The four EXPIRE commands are checked in ``prepare`` as Redis 7.0's expire.c
checks them (options first, then the number, then overflow, naming the
command in the error) and logged as ``PEXPIREAT key <absolute ms> [flags]``,
so that replaying the log gives the same deadline. Apply compares deadlines
(NX XX GT LT) and deletes the key when the deadline has passed at the
entry's time, as Redis deletes it at once rather than storing a past
deadline.
"""

from __future__ import annotations

from nomadkv.commands.context import Session
from nomadkv.commands.table import (
    INT64_MAX,
    CommandError,
    CommandSpec,
    KeySpec,
    PrepareHandler,
    ReplyT,
    option_name,
    parse_int,
    quoted,
    register,
)
from nomadkv.keyspace import Keyspace
from nomadkv.resp.reply import ONE, ZERO, integer

# C's LLONG_MIN / 1000, which truncates towards zero (Python's // floors).
_SECONDS_MIN = -(2**63 // 1000)
_SECONDS_MAX = INT64_MAX // 1000
_FLAGS = (b"NX", b"XX", b"GT", b"LT")


def parse_expire_flags(argv: list[bytes]) -> list[bytes]:
    """The NX XX GT LT flags after ``key time``, upper-cased, checked for conflicts."""
    flags = []
    for arg in argv[3:]:
        flag = option_name(arg)
        if flag not in _FLAGS:
            raise CommandError(f"ERR Unsupported option {quoted(arg)}")
        flags.append(flag)
    if b"NX" in flags and (b"XX" in flags or b"GT" in flags or b"LT" in flags):
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in flags and b"LT" in flags:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    return flags


def _absolute(
    argv: list[bytes], now_ms: int, command: str, seconds: bool, relative: bool
) -> list[bytes]:
    flags = parse_expire_flags(argv)
    when = parse_int(argv[2])
    invalid = CommandError(f"ERR invalid expire time in '{command}' command")
    if seconds:
        if not _SECONDS_MIN <= when <= _SECONDS_MAX:
            raise invalid
        when *= 1000
    base = now_ms if relative else 0
    if when > INT64_MAX - base:
        raise invalid
    return [b"PEXPIREAT", argv[1], b"%d" % (when + base), *sorted(set(flags))]


def prepare_expire(argv: list[bytes], now_ms: int) -> list[bytes]:
    """EXPIRE key seconds [NX | XX | GT | LT]"""
    return _absolute(argv, now_ms, "expire", seconds=True, relative=True)


def prepare_pexpire(argv: list[bytes], now_ms: int) -> list[bytes]:
    """PEXPIRE key milliseconds [NX | XX | GT | LT]"""
    return _absolute(argv, now_ms, "pexpire", seconds=False, relative=True)


def prepare_expireat(argv: list[bytes], now_ms: int) -> list[bytes]:
    """EXPIREAT key unix-time-seconds [NX | XX | GT | LT]"""
    return _absolute(argv, now_ms, "expireat", seconds=True, relative=False)


def prepare_pexpireat(argv: list[bytes], now_ms: int) -> list[bytes]:
    """PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]"""
    return _absolute(argv, now_ms, "pexpireat", seconds=False, relative=False)


def apply_pexpireat(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT], as prepared."""
    key, when, flags = argv[1], int(argv[2]), argv[3:]
    if ks.lookup(key, now_ms) is None:
        return ZERO
    if flags:
        current = ks.deadline(key)
        if b"NX" in flags and current is not None:
            return ZERO
        if b"XX" in flags and current is None:
            return ZERO
        # No deadline counts as an infinite one.
        if b"GT" in flags and (current is None or when <= current):
            return ZERO
        if b"LT" in flags and current is not None and when >= current:
            return ZERO
    if when <= now_ms:
        ks.delete(key)
    else:
        ks.set_deadline(key, when)
    return ONE


def apply_persist(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """PERSIST key"""
    if ks.lookup(argv[1], now_ms) is None:
        return ZERO
    return ONE if ks.persist(argv[1]) else ZERO


def _ttl(ctx: Session, key: bytes, milliseconds: bool, absolute: bool) -> ReplyT:
    ks, now_ms = ctx.keyspace, ctx.now_ms
    if ks.peek(key, now_ms) is None:
        return integer(-2)
    deadline = ks.deadline(key)
    if deadline is None:
        return integer(-1)
    left = max(deadline if absolute else deadline - now_ms, 0)
    return integer(left if milliseconds else (left + 500) // 1000)


def cmd_ttl(ctx: Session, argv: list[bytes]) -> ReplyT:
    """TTL key"""
    return _ttl(ctx, argv[1], milliseconds=False, absolute=False)


def cmd_pttl(ctx: Session, argv: list[bytes]) -> ReplyT:
    """PTTL key"""
    return _ttl(ctx, argv[1], milliseconds=True, absolute=False)


def cmd_expiretime(ctx: Session, argv: list[bytes]) -> ReplyT:
    """EXPIRETIME key"""
    return _ttl(ctx, argv[1], milliseconds=False, absolute=True)


def cmd_pexpiretime(ctx: Session, argv: list[bytes]) -> ReplyT:
    """PEXPIRETIME key"""
    return _ttl(ctx, argv[1], milliseconds=True, absolute=True)


_ONE_KEY = KeySpec(1, 1, 1)
_WRITE = ("@keyspace", "@write", "@fast")
_READ = ("@keyspace", "@read", "@fast")


def _expire_spec(name: str, prepare: PrepareHandler, summary: str, since: str) -> CommandSpec:
    # The handler is PEXPIREAT's apply: every EXPIRE command is logged in that form.
    return CommandSpec(
        name,
        -3,
        ("write", "fast"),
        apply_pexpireat,
        _ONE_KEY,
        prepare=prepare,
        summary=summary,
        since=since,
        acl_categories=_WRITE,
    )


def _ttl_spec(name: str, handler: object, summary: str, since: str) -> CommandSpec:
    return CommandSpec(
        name,
        2,
        ("readonly", "fast"),
        handler,  # type: ignore[arg-type]
        _ONE_KEY,
        summary=summary,
        since=since,
        acl_categories=_READ,
    )


register(
    _expire_spec(
        "expire", prepare_expire, "Sets the expiration time of a key in seconds.", "1.0.0"
    ),
    _expire_spec(
        "pexpire", prepare_pexpire, "Sets the expiration time of a key in milliseconds.", "2.6.0"
    ),
    _expire_spec(
        "expireat",
        prepare_expireat,
        "Sets the expiration time of a key to a Unix timestamp.",
        "1.2.0",
    ),
    _expire_spec(
        "pexpireat",
        prepare_pexpireat,
        "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        "2.6.0",
    ),
    _ttl_spec("ttl", cmd_ttl, "Returns the expiration time in seconds of a key.", "1.0.0"),
    _ttl_spec("pttl", cmd_pttl, "Returns the expiration time in milliseconds of a key.", "2.6.0"),
    _ttl_spec(
        "expiretime",
        cmd_expiretime,
        "Returns the expiration time of a key as a Unix timestamp.",
        "7.0.0",
    ),
    _ttl_spec(
        "pexpiretime",
        cmd_pexpiretime,
        "Returns the expiration time of a key as a Unix milliseconds timestamp.",
        "7.0.0",
    ),
    CommandSpec(
        "persist",
        2,
        ("write", "fast"),
        apply_persist,
        _ONE_KEY,
        summary="Removes the expiration time of a key.",
        since="2.2.0",
        acl_categories=_WRITE,
    ),
)
