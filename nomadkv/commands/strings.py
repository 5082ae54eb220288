"""String commands. Pure: reads take a Session, writes apply to a Keyspace.

Each handler checks what Redis 7.0's t_string.c checks, in the same order,
because a client sees which error wins. What does not depend on the keyspace
(syntax, numbers in the arguments, relative times) is checked in ``prepare``,
so that nothing invalid reaches the log; what depends on the key's value
(WRONGTYPE, a value that is not a number) is checked in ``apply``, the same
way on every replica.

The log holds absolute deadlines only: SET's EX/PX/EXAT and GETEX's become
PXAT, and SETEX/PSETEX are logged as ``SET key value PXAT <ms>``, as Redis
propagates them.
"""

from __future__ import annotations

from fractions import Fraction

from nomadkv.commands import longdouble
from nomadkv.commands.context import Session
from nomadkv.commands.table import (
    INT64_MAX,
    INT64_MIN,
    NOT_FLOAT,
    NOT_INTEGER,
    OVERFLOW,
    SYNTAX_ERROR,
    WRONGTYPE,
    WRONGTYPE_MESSAGE,
    CommandError,
    CommandSpec,
    KeySpec,
    ReplyT,
    option_name,
    parse_int,
    register,
)
from nomadkv.keyspace import Keyspace, Value
from nomadkv.resp.reply import (
    BULK_HEADERS,
    CRLF,
    EMPTY_BULK,
    LARGE_BULK_BYTES,
    NULL,
    OK,
    ONE,
    ZERO,
    LargeBulk,
    bulk,
    integer,
)

# Redis's proto-max-bulk-len default: the longest string APPEND and SETRANGE may make.
STRING_MAX_BYTES = 512 * 1024 * 1024
STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
NOT_FINITE = "ERR increment would produce NaN or Infinity"

_EXPIRE_OPTIONS = (b"EX", b"PX", b"EXAT", b"PXAT")


def _string(value: Value | None) -> bytes | None:
    """A string value, None for no key; WRONGTYPE for any other type."""
    if value is None or value.__class__ is bytes:
        return value
    raise CommandError(WRONGTYPE_MESSAGE)


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
    size = len(value)
    if size < 1024:
        return BULK_HEADERS[size] + value + CRLF
    if size < LARGE_BULK_BYTES:
        return b"$%d\r\n%b\r\n" % (size, value)
    return LargeBulk(value)


# -- SET and its options ------------------------------------------------------


def absolute_deadline(option: bytes, amount: bytes, now_ms: int, command: str) -> int:
    """EX/PX/EXAT/PXAT ``amount`` as absolute Unix milliseconds, checked as
    Redis's getExpireMillisecondsOrReply checks it."""
    number = parse_int(amount, NOT_INTEGER)
    seconds = option in (b"EX", b"EXAT")
    if number <= 0 or (seconds and number > INT64_MAX // 1000):
        raise CommandError(f"ERR invalid expire time in '{command}' command")
    if seconds:
        number *= 1000
    if option in (b"EX", b"PX"):
        number += now_ms
        if number > INT64_MAX:  # C's signed overflow, which Redis detects as <= 0
            raise CommandError(f"ERR invalid expire time in '{command}' command")
    return number


def parse_string_options(
    argv: list[bytes], first: int, for_set: bool
) -> tuple[list[bytes], bytes | None, bytes | None]:
    """SET's (``for_set``) or GETEX's options, as parseExtendedStringArgumentsOrReply
    accepts them: the flags (NX XX GET KEEPTTL PERSIST, each once, in the order
    given), then the expire option (EX PX EXAT PXAT, which may repeat: the last
    amount counts) and its amount, unchecked."""
    flags: list[bytes] = []
    expire = amount = None
    i, end = first, len(argv)
    while i < end:
        option = option_name(argv[i])
        if option in _EXPIRE_OPTIONS:
            accepted = (
                i + 1 < end
                and (expire is None or expire == option)
                and b"KEEPTTL" not in flags
                and b"PERSIST" not in flags
            )
            if accepted:
                expire, amount = option, argv[i + 1]
                i += 2
                continue
        elif for_set:
            if (
                option == b"GET"
                or (option == b"NX" and b"XX" not in flags)
                or (option == b"XX" and b"NX" not in flags)
                or (option == b"KEEPTTL" and expire is None)
            ):
                if option not in flags:
                    flags.append(option)
                i += 1
                continue
        elif option == b"PERSIST" and expire is None:
            if option not in flags:
                flags.append(option)
            i += 1
            continue
        raise CommandError(SYNTAX_ERROR)
    return flags, expire, amount


def prepare_set(argv: list[bytes], now_ms: int) -> list[bytes]:
    """SET key value [NX | XX] [GET] [EX s | PX ms | EXAT ts | PXAT ts | KEEPTTL]

    Logged as ``SET key value [NX|XX] [GET] [KEEPTTL] [PXAT ms]``.
    """
    if len(argv) == 3:
        return argv
    flags, expire, amount = parse_string_options(argv, 3, for_set=True)
    prepared = argv[:3] + flags
    if expire is not None and amount is not None:
        deadline = absolute_deadline(expire, amount, now_ms, "set")
        prepared += (b"PXAT", b"%d" % deadline)
    return prepared


def apply_set(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    key = argv[1]
    if len(argv) == 3:
        ks.set(key, argv[2])
        return OK
    options = argv[3:]
    deadline = int(options[options.index(b"PXAT") + 1]) if b"PXAT" in options else None
    old = ks.lookup(key, now_ms)
    reply: ReplyT = OK
    if b"GET" in options:
        old_string = _string(old)
        reply = NULL if old_string is None else bulk(old_string)
    if (b"NX" in options and old is not None) or (b"XX" in options and old is None):
        return NULL if reply is OK else reply
    if b"KEEPTTL" in options:
        ks.replace(key, argv[2])
    else:
        ks.set(key, argv[2])
    if deadline is not None:
        if deadline <= now_ms:
            ks.delete(key)
        else:
            ks.set_deadline(key, deadline)
    return reply


def apply_setnx(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """SETNX key value"""
    if ks.lookup(argv[1], now_ms) is not None:
        return ZERO
    ks.set(argv[1], argv[2])
    return ONE


def prepare_setex(argv: list[bytes], now_ms: int) -> list[bytes]:
    """SETEX key seconds value"""
    deadline = absolute_deadline(b"EX", argv[2], now_ms, "setex")
    return [b"SET", argv[1], argv[3], b"PXAT", b"%d" % deadline]


def prepare_psetex(argv: list[bytes], now_ms: int) -> list[bytes]:
    """PSETEX key milliseconds value"""
    deadline = absolute_deadline(b"PX", argv[2], now_ms, "psetex")
    return [b"SET", argv[1], argv[3], b"PXAT", b"%d" % deadline]


def apply_getset(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """GETSET key value"""
    old = _string(ks.lookup(argv[1], now_ms))
    ks.set(argv[1], argv[2])
    return NULL if old is None else bulk(old)


def apply_getdel(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """GETDEL key"""
    value = _string(ks.lookup(argv[1], now_ms))
    if value is None:
        return NULL
    ks.delete(argv[1])
    return bulk(value)


def prepare_getex(argv: list[bytes], now_ms: int) -> list[bytes]:
    """GETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds |
    PXAT unix-time-milliseconds | PERSIST]

    Logged as ``GETEX key [PXAT ms | PERSIST]``. A bad amount is an error only
    if the key holds a string (Redis checks it after the lookup), so it is
    logged as given and rejected by apply.
    """
    flags, expire, amount = parse_string_options(argv, 2, for_set=False)
    if expire is not None and amount is not None:
        try:
            deadline = absolute_deadline(expire, amount, now_ms, "getex")
        except CommandError:
            return [argv[0], argv[1], expire, amount]
        return [argv[0], argv[1], b"PXAT", b"%d" % deadline]
    return [argv[0], argv[1], b"PERSIST"] if flags else argv[:2]


def apply_getex(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    key = argv[1]
    value = _string(ks.lookup(key, now_ms))
    if value is None:
        return NULL
    if len(argv) == 4:
        deadline = absolute_deadline(argv[2], argv[3], now_ms, "getex")
        if deadline <= now_ms:
            ks.delete(key)
        else:
            ks.set_deadline(key, deadline)
    elif len(argv) == 3:
        ks.persist(key)
    return bulk(value)


# -- several keys -------------------------------------------------------------


def cmd_mget(ctx: Session, argv: list[bytes]) -> ReplyT:
    """MGET key [key ...]"""
    ks, now_ms = ctx.keyspace, ctx.now_ms
    null = b"_\r\n" if ctx.resp3 else b"$-1\r\n"
    parts = [b"*%d\r\n" % (len(argv) - 1)]
    for key in argv[1:]:
        value = ks.get(key, now_ms)
        parts.append(bulk(value) if isinstance(value, bytes) else null)
    return b"".join(parts)


def _check_pairs(argv: list[bytes], command: str) -> list[bytes]:
    if len(argv) % 2 == 0:  # the table's arity (-3) cannot say "an odd count"
        raise CommandError(f"ERR wrong number of arguments for '{command}' command")
    return argv


def prepare_mset(argv: list[bytes], now_ms: int) -> list[bytes]:
    """MSET key value [key value ...]"""
    return _check_pairs(argv, "mset")


def prepare_msetnx(argv: list[bytes], now_ms: int) -> list[bytes]:
    """MSETNX key value [key value ...]"""
    return _check_pairs(argv, "msetnx")


def apply_mset(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    for i in range(1, len(argv), 2):
        ks.set(argv[i], argv[i + 1])
    return OK


def apply_msetnx(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    if any(ks.lookup(argv[i], now_ms) is not None for i in range(1, len(argv), 2)):
        return ZERO
    for i in range(1, len(argv), 2):
        ks.set(argv[i], argv[i + 1])
    return ONE


# -- editing a string ---------------------------------------------------------


def apply_append(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """APPEND key value"""
    key, suffix = argv[1], argv[2]
    old = _string(ks.lookup(key, now_ms))
    if old is None:
        ks.set(key, suffix)
        return integer(len(suffix))
    if len(old) + len(suffix) > STRING_MAX_BYTES:
        raise CommandError(STRING_TOO_LONG)
    ks.replace(key, old + suffix)
    return integer(len(old) + len(suffix))


def cmd_strlen(ctx: Session, argv: list[bytes]) -> ReplyT:
    """STRLEN key"""
    value = _string(ctx.keyspace.get(argv[1], ctx.now_ms))
    return integer(0 if value is None else len(value))


def cmd_getrange(ctx: Session, argv: list[bytes]) -> ReplyT:
    """GETRANGE key start end"""
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    value = _string(ctx.keyspace.get(argv[1], ctx.now_ms))
    if value is None or (start < 0 and end < 0 and start > end):
        return EMPTY_BULK
    size = len(value)
    if start < 0:
        start = max(size + start, 0)
    if end < 0:
        end = max(size + end, 0)
    end = min(end, size - 1)
    if start > end or size == 0:
        return EMPTY_BULK
    return bulk(value[start : end + 1])


def prepare_setrange(argv: list[bytes], now_ms: int) -> list[bytes]:
    """SETRANGE key offset value"""
    if parse_int(argv[2]) < 0:
        raise CommandError("ERR offset is out of range")
    return argv


def apply_setrange(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    key, offset, patch = argv[1], int(argv[2]), argv[3]
    old = _string(ks.lookup(key, now_ms))
    if old is None:
        if not patch:
            return ZERO
        if offset + len(patch) > STRING_MAX_BYTES:
            raise CommandError(STRING_TOO_LONG)
        ks.set(key, bytes(offset) + patch)
        return integer(offset + len(patch))
    if not patch:
        return integer(len(old))
    if offset + len(patch) > STRING_MAX_BYTES:
        raise CommandError(STRING_TOO_LONG)
    if offset > len(old):
        new = old + bytes(offset - len(old)) + patch
    else:
        new = old[:offset] + patch + old[offset + len(patch) :]
    ks.replace(key, new)
    return integer(len(new))


# -- counters -----------------------------------------------------------------


def _increment(ks: Keyspace, key: bytes, by: int, now_ms: int) -> ReplyT:
    old = _string(ks.lookup(key, now_ms))
    value = 0 if old is None else parse_int(old)
    if (by < 0 and value < 0 and by < INT64_MIN - value) or (
        by > 0 and value > 0 and by > INT64_MAX - value
    ):
        raise CommandError(OVERFLOW)
    value += by
    if old is None:
        ks.set(key, b"%d" % value)
    else:
        ks.replace(key, b"%d" % value)
    return integer(value)


def apply_incr(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """INCR key"""
    return _increment(ks, argv[1], 1, now_ms)


def apply_decr(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """DECR key"""
    return _increment(ks, argv[1], -1, now_ms)


def prepare_incrby(argv: list[bytes], now_ms: int) -> list[bytes]:
    """INCRBY key increment"""
    parse_int(argv[2])
    return argv


def apply_incrby(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    return _increment(ks, argv[1], int(argv[2]), now_ms)


def prepare_decrby(argv: list[bytes], now_ms: int) -> list[bytes]:
    """DECRBY key decrement"""
    if parse_int(argv[2]) == INT64_MIN:  # its negation does not fit in 64 bits
        raise CommandError("ERR decrement would overflow")
    return argv


def apply_decrby(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    return _increment(ks, argv[1], -int(argv[2]), now_ms)


def apply_incrbyfloat(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """INCRBYFLOAT key increment

    Redis parses the key's value before the increment, and only after the
    type check, so every check runs here rather than in a prepare step.
    """
    key = argv[1]
    old = _string(ks.lookup(key, now_ms))
    value = Fraction(0) if old is None else longdouble.parse(old)
    if value is None:
        raise CommandError(NOT_FLOAT)
    increment = longdouble.parse(argv[2])
    if increment is None:
        raise CommandError(NOT_FLOAT)
    try:
        total = longdouble.add(value, increment)
    except longdouble.NotFinite:
        raise CommandError(NOT_FINITE) from None
    text = longdouble.format_human(total)
    if old is None:
        ks.set(key, text)
    else:
        ks.replace(key, text)
    return bulk(text)


_READ = ("@read", "@string", "@fast")
_WRITE_FAST = ("@write", "@string", "@fast")
_WRITE_SLOW = ("@write", "@string", "@slow")
_ONE_KEY = KeySpec(1, 1, 1)

register(
    CommandSpec(
        "get",
        2,
        ("readonly", "fast"),
        cmd_get,
        _ONE_KEY,
        group="string",
        summary="Returns the string value of a key.",
        acl_categories=_READ,
    ),
    CommandSpec(
        "set",
        -3,
        ("write", "denyoom"),
        apply_set,
        _ONE_KEY,
        prepare=prepare_set,
        plain_arity=3,  # SET key value: no option to check or rewrite
        group="string",
        summary="Sets the string value of a key, ignoring its type. The key is created if it "
        "doesn't exist.",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "setnx",
        3,
        ("write", "denyoom", "fast"),
        apply_setnx,
        _ONE_KEY,
        group="string",
        summary="Set the string value of a key only when the key doesn't exist.",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "setex",
        4,
        ("write", "denyoom"),
        apply_set,  # prepare turns SETEX into SET ... PXAT
        _ONE_KEY,
        prepare=prepare_setex,
        group="string",
        summary="Sets the string value and expiration time of a key. Creates the key if it "
        "doesn't exist.",
        since="2.0.0",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "psetex",
        4,
        ("write", "denyoom"),
        apply_set,  # prepare turns PSETEX into SET ... PXAT
        _ONE_KEY,
        prepare=prepare_psetex,
        group="string",
        summary="Sets both string value and expiration time in milliseconds of a key. The key "
        "is created if it doesn't exist.",
        since="2.6.0",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "getset",
        3,
        ("write", "denyoom", "fast"),
        apply_getset,
        _ONE_KEY,
        group="string",
        summary="Returns the previous string value of a key after setting it to a new value.",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "getdel",
        2,
        ("write", "fast"),
        apply_getdel,
        _ONE_KEY,
        group="string",
        summary="Returns the string value of a key after deleting the key.",
        since="6.2.0",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "getex",
        -2,
        ("write", "fast"),
        apply_getex,
        _ONE_KEY,
        prepare=prepare_getex,
        group="string",
        summary="Returns the string value of a key after setting its expiration time.",
        since="6.2.0",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "mget",
        -2,
        ("readonly", "fast"),
        cmd_mget,
        KeySpec(1, -1, 1),
        group="string",
        summary="Atomically returns the string values of one or more keys.",
        complexity="O(N) where N is the number of keys to retrieve.",
        acl_categories=_READ,
    ),
    CommandSpec(
        "mset",
        -3,
        ("write", "denyoom"),
        apply_mset,
        KeySpec(1, -1, 2),
        prepare=prepare_mset,
        group="string",
        summary="Atomically creates or modifies the string values of one or more keys.",
        since="1.0.1",
        complexity="O(N) where N is the number of keys to set.",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "msetnx",
        -3,
        ("write", "denyoom"),
        apply_msetnx,
        KeySpec(1, -1, 2),
        prepare=prepare_msetnx,
        group="string",
        summary="Atomically modifies the string values of one or more keys only when all keys "
        "don't exist.",
        since="1.0.1",
        complexity="O(N) where N is the number of keys to set.",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "append",
        3,
        ("write", "denyoom", "fast"),
        apply_append,
        _ONE_KEY,
        group="string",
        summary="Appends a string to the value of a key. Creates the key if it doesn't exist.",
        since="2.0.0",
        complexity="O(N) where N is the length of the resulting string (Redis: amortized O(1)).",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "strlen",
        2,
        ("readonly", "fast"),
        cmd_strlen,
        _ONE_KEY,
        group="string",
        summary="Returns the length of a string value.",
        since="2.2.0",
        acl_categories=_READ,
    ),
    CommandSpec(
        "getrange",
        4,
        ("readonly",),
        cmd_getrange,
        _ONE_KEY,
        group="string",
        summary="Returns a substring of the string stored at a key.",
        since="2.4.0",
        complexity="O(N) where N is the length of the returned string.",
        acl_categories=("@read", "@string", "@slow"),
    ),
    CommandSpec(
        "setrange",
        4,
        ("write", "denyoom"),
        apply_setrange,
        _ONE_KEY,
        prepare=prepare_setrange,
        group="string",
        summary="Overwrites a part of a string value with another by an offset. Creates the "
        "key if it doesn't exist.",
        since="2.2.0",
        complexity="O(N) where N is the length of the resulting string.",
        acl_categories=_WRITE_SLOW,
    ),
    CommandSpec(
        "incr",
        2,
        ("write", "denyoom", "fast"),
        apply_incr,
        _ONE_KEY,
        group="string",
        summary="Increments the integer value of a key by one. Uses 0 as initial value if the "
        "key doesn't exist.",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "decr",
        2,
        ("write", "denyoom", "fast"),
        apply_decr,
        _ONE_KEY,
        group="string",
        summary="Decrements the integer value of a key by one. Uses 0 as initial value if the "
        "key doesn't exist.",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "incrby",
        3,
        ("write", "denyoom", "fast"),
        apply_incrby,
        _ONE_KEY,
        prepare=prepare_incrby,
        group="string",
        summary="Increments the integer value of a key by a number. Uses 0 as initial value if "
        "the key doesn't exist.",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "decrby",
        3,
        ("write", "denyoom", "fast"),
        apply_decrby,
        _ONE_KEY,
        prepare=prepare_decrby,
        group="string",
        summary="Decrements a number from the integer value of a key. Uses 0 as initial value "
        "if the key doesn't exist.",
        acl_categories=_WRITE_FAST,
    ),
    CommandSpec(
        "incrbyfloat",
        3,
        ("write", "denyoom", "fast"),
        apply_incrbyfloat,
        _ONE_KEY,
        group="string",
        summary="Increment the floating point value of a key by a number. Uses 0 as initial "
        "value if the key doesn't exist.",
        since="2.6.0",
        acl_categories=_WRITE_FAST,
    ),
)
