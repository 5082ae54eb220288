"""Where RESP replies end, without decoding them. Pure.

A node that relays another node's replies (a follower proxying to its
leader) must pass them through byte for byte: decoding with hiredis and
encoding again would lose distinctions a client can see (``+OK`` and
``$2 OK`` decode alike).
"""

from __future__ import annotations

_LINE = frozenset(b"+-:_#,(")  # simple string, error, integer, null, bool, double, big number
_BLOB = frozenset(b"$=!")  # bulk string, verbatim string, bulk error
_AGGREGATE = frozenset(b"*~>")  # array, set, push
_PAIRS = frozenset(b"%|")  # map, attribute


class FramingError(ValueError):
    pass


def reply_end(buffer: bytes, start: int) -> int:
    """The offset just past the complete reply at ``start``, or -1 if it is incomplete."""
    if start >= len(buffer):
        return -1
    kind = buffer[start]
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        return -1
    if kind in _LINE:
        return line_end + 2
    try:
        length = int(buffer[start + 1 : line_end])
    except ValueError:
        raise FramingError(f"bad length in {buffer[start:line_end][:32]!r}") from None
    position = line_end + 2
    if kind in _BLOB:
        if length < 0:
            return position
        end = position + length + 2
        return end if end <= len(buffer) else -1
    if kind in _AGGREGATE or kind in _PAIRS:
        count = length * 2 if kind in _PAIRS else length
        for _ in range(max(count, 0)):
            position = reply_end(buffer, position)
            if position < 0:
                return -1
        return position
    raise FramingError(f"unknown reply type {chr(kind)!r}")


def split_replies(buffer: bytes) -> tuple[list[bytes], int]:
    """The complete replies at the start of ``buffer`` and how many bytes they span."""
    replies: list[bytes] = []
    position = 0
    while True:
        end = reply_end(buffer, position)
        if end < 0:
            return replies, position
        replies.append(buffer[position:end])
        position = end
