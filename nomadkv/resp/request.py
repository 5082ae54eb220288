"""Client requests: bytes in, argument lists out.

Owns framing of what clients send: RESP multibulk (parsed by hiredis) and
inline commands (``PING`` typed into telnet), and the limits Redis enforces
on them. Pure: no I/O.

Limits stay off the hot path. hiredis reads headers only when ``gets`` is
called and never waits for more than the client sends, so an exact Python
walk over the buffered frames runs only when something could break a limit:
a buffered frame larger than ``proto-max-bulk-len`` (only then can one of its
bulks be), a first header long enough to announce 10 million elements, or an
unauthenticated client (whose limits are tiny). A header announcing a huge
array that slips past this (later in a pipelined chunk) costs only address
space: hiredis's list is calloc'd and its pages are touched as elements
arrive, which the query buffer limit bounds; a failed allocation surfaces as
MemoryError and closes that connection.
"""

from __future__ import annotations

import hiredis

INLINE_MAX_BYTES = 64 * 1024
MULTIBULK_MAX_LEN = 4 * 1024 * 1024
UNAUTHENTICATED_MULTIBULK_MAX = 10
UNAUTHENTICATED_BULK_MAX = 16 * 1024


class ProtocolError(Exception):
    """The stream cannot be parsed; reply ``-ERR <message>`` and close."""


class QueryBufferExceeded(Exception):
    """The client's unparsed input passed ``client-query-buffer-limit``: close it."""


_INLINE_ESCAPES = {
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("b"): b"\b",
    ord("a"): b"\a",
}
_HEX = b"0123456789abcdefABCDEF"


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command line as Redis's sdssplitargs does."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\r\n\v\f":
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_double = in_single = False
        while True:
            c = line[i] if i < n else None
            if in_double:
                if c is None:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                if (
                    c == 0x5C
                    and i + 3 < n
                    and line[i + 1] == ord("x")
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    current += _INLINE_ESCAPES.get(line[i], bytes([line[i]]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in b" \t\r\n\v\f":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    in_double = False
                else:
                    current.append(c)
            elif in_single:
                if c is None:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    current.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in b" \t\r\n\v\f":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    in_single = False
                else:
                    current.append(c)
            elif c is None or c in b" \t\r\n\v\f":
                break
            elif c == 0x22:
                in_double = True
            elif c == 0x27:
                in_single = True
            else:
                current.append(c)
            i += 1
        args.append(bytes(current))


def _multibulk(args: list[bytes]) -> bytes:
    parts = [b"$%d\r\n%b\r\n" % (len(a), a) for a in args]
    return b"*%d\r\n%b" % (len(args), b"".join(parts))


class RequestParser:
    """Feed bytes, then call ``gets()`` until it returns False.

    ``gets`` is hiredis's own bound method, so draining costs no Python frame
    per command. Inline lines are re-encoded as multibulk before hiredis sees
    them, which keeps a single drain loop for both forms.
    """

    __slots__ = (
        "_inline",
        "_reader",
        "_tail",
        "_tail_len",
        "authenticated",
        "gets",
        "max_bulk_len",
        "max_query_buffer",
    )

    def __init__(
        self, max_bulk_len: int, max_query_buffer: int, authenticated: bool = True
    ) -> None:
        self._reader = hiredis.Reader()
        self.gets = self._reader.gets
        self.max_bulk_len = max_bulk_len
        self.max_query_buffer = max_query_buffer
        self.authenticated = authenticated
        self._inline = b""
        # Bytes fed since the reader last held nothing: they start at a frame
        # boundary, so the limit walk can find every header in them.
        self._tail: list[bytes] = []
        self._tail_len = 0

    def has_pending(self) -> bool:
        """True while a partial (or an undrained) request is buffered."""
        return bool(self._inline) or self._reader.has_data()

    def feed(self, data: bytes) -> None:
        """Buffer ``data``; raises ProtocolError or QueryBufferExceeded."""
        reader = self._reader
        if not reader.has_data():
            if self._inline or data[0] != 0x2A:  # not '*': an inline command
                self._feed_inline(data)
                return
            self._tail = [data]
            self._tail_len = size = len(data)
            # A first header of 8+ characters announces 10 million elements or more.
            if size > self.max_bulk_len or not self.authenticated or data.find(b"\r", 0, 9) < 0:
                self._check_limits()
        else:
            self._tail.append(data)
            self._tail_len += len(data)
            if self._tail_len > self.max_query_buffer:
                raise QueryBufferExceeded
            if self._tail_len > self.max_bulk_len or not self.authenticated:
                self._check_limits()
        reader.feed(data)

    def _feed_inline(self, data: bytes) -> None:
        buffer = self._inline + data if self._inline else data
        start = 0
        while start < len(buffer):
            if buffer[start] == 0x2A:  # '*': back to multibulk
                self._inline = b""
                self.feed(buffer[start:])
                return
            end = buffer.find(b"\n", start)
            if end < 0:
                if len(buffer) - start > INLINE_MAX_BYTES:
                    raise ProtocolError("Protocol error: too big inline request")
                self._inline = buffer[start:]
                return
            if end - start > INLINE_MAX_BYTES:
                raise ProtocolError("Protocol error: too big inline request")
            args = split_inline(buffer[start:end])
            if args:
                self._reader.feed(_multibulk(args))
            start = end + 1
        self._inline = b""

    def explain(self) -> str:
        """Redis's message for the framing error hiredis just raised."""
        try:
            self._check_limits()
        except ProtocolError as exc:
            return str(exc)
        return "Protocol error: invalid request"

    def _check_limits(self) -> None:
        """Walk the buffered frames and check every header against the limits."""
        buffer = b"".join(self._tail)
        max_multibulk = MULTIBULK_MAX_LEN
        max_bulk = self.max_bulk_len
        if not self.authenticated:
            max_multibulk = UNAUTHENTICATED_MULTIBULK_MAX
            max_bulk = min(max_bulk, UNAUTHENTICATED_BULK_MAX)
        pos, size = 0, len(buffer)
        frame_start = 0
        while pos < size:
            frame_start = pos
            if buffer[pos] != 0x2A:
                break  # an inline command after a multibulk one: hiredis rejects it
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                break
            header = buffer[pos + 1 : end]
            pos = end + 2
            if header[:1] == b"-" and header[1:].isdigit():
                continue  # Redis ignores an empty or null multibulk
            count = _parse_length(header)
            if count is None or count > MULTIBULK_MAX_LEN:
                raise ProtocolError("Protocol error: invalid multibulk length")
            if count > max_multibulk:
                raise ProtocolError("Protocol error: unauthenticated multibulk length")
            for _ in range(count):
                if pos >= size:
                    break
                if buffer[pos] != 0x24:
                    got = chr(buffer[pos])
                    raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    break
                length = _parse_length(buffer[pos + 1 : end])
                if length is None or length > self.max_bulk_len:
                    raise ProtocolError("Protocol error: invalid bulk length")
                if length > max_bulk:
                    raise ProtocolError("Protocol error: unauthenticated bulk length")
                pos = end + 2 + length + 2
            else:
                continue
            break
        if frame_start:
            rest = buffer[frame_start:]
            self._tail = [rest]
            self._tail_len = len(rest)


def _parse_length(text: bytes) -> int | None:
    if not text or len(text) > 19 or not text.isdigit():
        return None
    return int(text)
