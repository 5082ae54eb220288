"""RESP reply encoding.

Owns the bytes a reply becomes. Pure: no I/O.

Handlers return either ``bytes`` (an already encoded reply that reads the same
in RESP2 and RESP3: simple strings, errors, integers, bulk strings, arrays of
those) or a :class:`Reply` whose encoding depends on the protocol version
(nulls, maps, sets, doubles, booleans, verbatim strings, and arrays holding
any of those). The connection calls ``reply.encode(resp3)`` only for the
latter, so the common path is a single type check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Union

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED = b"+QUEUED\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"
EMPTY_ARRAY = b"*0\r\n"
EMPTY_BULK = b"$0\r\n\r\n"

_SMALL_INTS = [b":%d\r\n" % i for i in range(-1, 1024)]


# Bulk string headers of the common sizes, built once: concatenating one is
# cheaper than %-formatting a header per reply (measured 83 vs 119 ns).
BULK_HEADERS = [b"$%d\r\n" % n for n in range(1024)]
CRLF = b"\r\n"


def bulk(value: bytes) -> bytes:
    size = len(value)
    if size < 1024:
        return BULK_HEADERS[size] + value + CRLF
    return b"$%d\r\n%b\r\n" % (size, value)


def integer(value: int) -> bytes:
    if -1 <= value < 1023:
        return _SMALL_INTS[value + 1]
    return b":%d\r\n" % value


def simple(text: str) -> bytes:
    return b"+%b\r\n" % text.encode()


def error(text: str) -> bytes:
    """``text`` starts with the error code: ``ERR ...``, ``WRONGTYPE ...``."""
    return b"-%b\r\n" % text.replace("\r", " ").replace("\n", " ").encode()


def bulk_array(values: Iterable[bytes]) -> bytes:
    """An array of bulk strings (never null): same bytes in RESP2 and RESP3."""
    parts = [b"$%d\r\n%b\r\n" % (len(v), v) for v in values]
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


class Reply:
    """A reply whose bytes depend on the protocol version."""

    __slots__ = ()

    def encode(self, resp3: bool) -> bytes:
        raise TypeError(f"{type(self).__name__} must define encode()")


class LargeBulk(Reply):
    """A bulk string of at least LARGE_BULK_BYTES, which a connection writes as its
    header, the stored value itself and CRLF (``Client.write_large_bulk``) rather
    than copying it into one reply: 1,000 replies of a 256 kB value that a client
    does not read cost a leader 120 ms of page faults and copies as bytes, 2 ms
    as references (docs/decisions.md)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def encode(self, resp3: bool) -> bytes:
        return bulk(self.value)


LARGE_BULK_BYTES = 64 * 1024


class _Constant(Reply):
    __slots__ = ("resp2", "resp3")

    def __init__(self, resp2: bytes, resp3: bytes) -> None:
        self.resp2 = resp2
        self.resp3 = resp3

    def encode(self, resp3: bool) -> bytes:
        return self.resp3 if resp3 else self.resp2


NULL = _Constant(b"$-1\r\n", b"_\r\n")
NULL_ARRAY = _Constant(b"*-1\r\n", b"_\r\n")
TRUE = _Constant(b":1\r\n", b"#t\r\n")
FALSE = _Constant(b":0\r\n", b"#f\r\n")


class Status:
    """A simple string inside a composite reply (``+OK`` as an array element)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Error:
    """An error inside a composite reply."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


Value = Union[
    bytes,
    str,
    int,
    float,
    None,
    Reply,
    Status,
    Error,
    "list[Value]",
    "tuple[Value, ...]",
    "dict[Any, Any]",
]


def format_double(value: float) -> bytes:
    """Redis's %.17g formatting, with inf spelled as Redis spells it."""
    if value == float("inf"):
        return b"inf"
    if value == float("-inf"):
        return b"-inf"
    if math.isnan(value):
        return b"nan"
    return b"%.17g" % value


def encode_value(value: Value, resp3: bool) -> bytes:
    """Encode a Python value: bytes/str are bulk strings, int integer, None null,
    float double, list/tuple array, dict map."""
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if isinstance(value, bool):
        return (TRUE if value else FALSE).encode(resp3)
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, str):
        return bulk(value.encode())
    if value is None:
        return NULL.encode(resp3)
    if isinstance(value, Reply):
        return value.encode(resp3)
    if isinstance(value, (list, tuple)):
        items = b"".join([encode_value(v, resp3) for v in value])
        return b"*%d\r\n%b" % (len(value), items)
    if isinstance(value, dict):
        return Map(value).encode(resp3)
    if isinstance(value, float):
        return Double(value).encode(resp3)
    if isinstance(value, Status):
        return simple(value.text)
    if isinstance(value, Error):
        return error(value.text)
    raise TypeError(f"cannot encode {type(value).__name__} as RESP")


class Array(Reply):
    """An array whose elements may be nulls, maps or other protocol-dependent values."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable[Value]) -> None:
        self.items = list(items)

    def encode(self, resp3: bool) -> bytes:
        return encode_value(self.items, resp3)


class Map(Reply):
    """RESP3 map; a flat array of key, value, key, value in RESP2."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: Mapping[Value, Value] | Iterable[tuple[Value, Value]]) -> None:
        self.pairs = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)

    def encode(self, resp3: bool) -> bytes:
        body = b"".join([encode_value(k, resp3) + encode_value(v, resp3) for k, v in self.pairs])
        if resp3:
            return b"%%%d\r\n%b" % (len(self.pairs), body)
        return b"*%d\r\n%b" % (2 * len(self.pairs), body)


class SetReply(Reply):
    """RESP3 set; a plain array in RESP2."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable[Value]) -> None:
        self.items = list(items)

    def encode(self, resp3: bool) -> bytes:
        body = b"".join([encode_value(v, resp3) for v in self.items])
        return b"%b%d\r\n%b" % (b"~" if resp3 else b"*", len(self.items), body)


class Double(Reply):
    """RESP3 double; a bulk string in RESP2."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value

    def encode(self, resp3: bool) -> bytes:
        text = format_double(self.value)
        if resp3:
            return b",%b\r\n" % text
        return bulk(text)


class Verbatim(Reply):
    """RESP3 verbatim text (INFO, CLIENT LIST); a bulk string in RESP2."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text

    def encode(self, resp3: bool) -> bytes:
        if resp3:
            return b"=%d\r\ntxt:%b\r\n" % (len(self.text) + 4, self.text)
        return bulk(self.text)
