"""Client requests: bytes in, argument lists out.

Owns framing of what clients send: RESP multibulk (parsed by hiredis) and
inline commands (``PING`` typed into telnet), and the limits Redis enforces
on them. Pure: no I/O.

As in Redis (networking.c processInputBuffer), each request is inline or
multibulk by its first byte: ``*`` starts a multibulk request, anything
else an inline one, so the two forms may follow each other on a connection.

Limits stay off the hot path. hiredis reads headers only when ``gets`` is
called and never waits for more than the client sends, so an exact Python
walk over the buffered frames runs only when something could break a limit:
a buffered frame larger than ``proto-max-bulk-len`` (only then can one of its
bulks be), a partial request that keeps growing (walked each time its size
doubles past 64 KiB, which finds an endless length header or an oversized
length), an array header of five digits or more, a ten-digit bulk length at
the end of a partial request (``partial_error``), or an unauthenticated
client (whose limits are tiny). The multibulk length is capped at
MULTIBULK_MAX_LEN rather than Redis's INT_MAX because hiredis allocates the
whole argument list when it reads the header.

hiredis also accepts what a request may not hold (integers, nulls, nested
arrays, RESP3 types). When the connection finds such a value, ``recover``
walks the buffered bytes as Redis would: a multibulk frame with a bad
element is a protocol error with Redis's text; a frame that does not start
with ``*`` (or a ``*-N`` header, which Redis skips) is where Redis would
switch to an inline command, and parsing resumes from there.
"""

from __future__ import annotations

import re

import hiredis

INLINE_MAX_BYTES = 64 * 1024  # Redis's PROTO_INLINE_MAX_SIZE, also the longest length header
MULTIBULK_MAX_LEN = 4 * 1024 * 1024
FIRST_GROWTH_CHECK = 64 * 1024
# RESP3 types hiredis turns into a plain list or the False sentinel ("~" set,
# "|" attribute, ">" push, "#f"): a frame of these may have run or vanished.
SILENT_TYPES = b"~|>#"
UNAUTHENTICATED_MULTIBULK_MAX = 10
UNAUTHENTICATED_BULK_MAX = 16 * 1024


# An array header of five digits or more, the first one or nested. hiredis
# allocates an array as soon as it reads the header, and freeing 2^31 slots
# ("*2147483647", 13 bytes) takes seconds: such bytes get the exact walk first,
# which refuses a nested array as Redis does. About 100 ns per read (a literal
# prefix: a fast scan), the only check on a read that starts a request.
big_array_header = re.compile(rb"\*[0-9]{5}").search
# A bulk length of ten digits or more is over the default proto-max-bulk-len
# (512 MB): without the walk, hiredis would wait for that many bytes. Such a
# header is necessarily in the last bytes of a partial request (its bulk cannot
# have arrived), looked at once hiredis is left holding one (partial_error).
big_bulk_header = re.compile(rb"\$[0-9]{10}").search
LAST_BYTES = 32


class ProtocolError(Exception):
    """The stream cannot be parsed; reply ``-ERR <message>`` and close.

    ``after_requests``: raised by ``recover`` once it had handed the requests
    before the bad bytes to a fresh reader; they run before the error is sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # An instance attribute: mypyc leaves a class-level default of a native
        # exception class unset on its instances (AttributeError).
        self.after_requests = False


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
        "_frame_start",
        "_inline_line",
        "_next_check",
        "_raw_in_reader",
        "_reader",
        "_tail",
        "_tail_len",
        "authenticated",
        "gets",
        "has_data",
        "max_bulk_len",
        "max_query_buffer",
    )

    def __init__(
        self, max_bulk_len: int, max_query_buffer: int, authenticated: bool = True
    ) -> None:
        self._reader = hiredis.Reader()
        self.gets = self._reader.gets
        self.has_data = self._reader.has_data
        self.max_bulk_len = max_bulk_len
        self.max_query_buffer = max_query_buffer
        self.authenticated = authenticated
        self._inline_line = b""
        # True when raw client bytes went to hiredis since it was last empty:
        # then it may hold a partial request, and new bytes continue it.
        # Re-encoded inline commands are always whole.
        self._raw_in_reader = False
        # Bytes fed since the reader last held nothing (or since the last
        # whole frame the limit walk passed): they start at a frame boundary,
        # so the walk can find every header in them.
        self._tail: list[bytes] = []
        self._tail_len = 0
        self._next_check = FIRST_GROWTH_CHECK
        self._frame_start = 0  # where _scan's current frame begins in the tail

    def buffered_bytes(self) -> int:
        """Bytes received and not yet parsed into requests (CLIENT LIST qbuf)."""
        if not self._reader.has_data():
            return len(self._inline_line)
        return len(self._inline_line) + (self._tail_len if self._raw_in_reader else 0)

    def feed(self, data: bytes) -> None:
        """Buffer ``data``; raises ProtocolError or QueryBufferExceeded."""
        if self._inline_line:
            self._feed_inline(data)
            return
        reader = self._reader
        first = data[0]
        if not (self._raw_in_reader and reader.has_data()):
            # Maybe at a request boundary, where the first byte decides the form.
            # hiredis's has_data() is False also right after it consumed a type
            # byte or an array header of a request still incomplete; what comes
            # next then is a '$' or the digits of a length, which no inline
            # command starts with: those continue the request.
            if first == 0x2A:  # '*': a new multibulk request
                self._raw_in_reader = True
                self._tail = [data]
                self._tail_len = size = len(data)
                self._next_check = FIRST_GROWTH_CHECK
                if size > self.max_bulk_len or not self.authenticated or big_array_header(data):
                    self._check_limits(data)
                reader.feed(data)
                return
            if not self._raw_in_reader or not (first == 0x24 or 0x30 <= first <= 0x39):
                self._feed_inline(data)
                return
        self._tail.append(data)
        self._tail_len += len(data)
        if self._tail_len > self.max_query_buffer:
            raise QueryBufferExceeded
        if self._tail_len > self._next_check or not self.authenticated:
            self._next_check = 2 * self._tail_len
            self._check_limits(data)
        elif (
            big_array_header(data)
            or big_bulk_header(data[-LAST_BYTES:])
            or (len(self._tail) > 1 and big_array_header(self._tail[-2][-12:] + data[:12]))
            or (len(self._tail) > 1 and big_bulk_header(self._tail[-2][-12:] + data[:12]))
        ):
            self._check_limits(data)  # the second test: a header split between two reads
        reader.feed(data)

    def _feed_inline(self, data: bytes) -> None:
        self._raw_in_reader = False
        buffer = self._inline_line + data if self._inline_line else data
        start = 0
        while start < len(buffer):
            if buffer[start] == 0x2A:  # '*': back to multibulk
                self._inline_line = b""
                self.feed(buffer[start:])
                return
            end = buffer.find(b"\n", start)
            if end < 0:
                if len(buffer) - start > INLINE_MAX_BYTES:
                    raise ProtocolError("Protocol error: too big inline request")
                self._inline_line = buffer[start:]
                return
            args = split_inline(buffer[start:end])
            if args:
                self._reader.feed(_multibulk(args))
            start = end + 1
        self._inline_line = b""

    def recover(self) -> None:
        """After hiredis failed, or produced something that is not a request:
        raise Redis's ProtocolError for it, or resume parsing where Redis would
        have read an inline command. Every request before that point has run."""
        position = self._scan(limits=False)
        if position is None:
            raise ProtocolError("Protocol error: invalid request")
        rest = b"".join(self._tail)[position:]
        if rest[0] in SILENT_TYPES:
            # hiredis may have run this frame as a request or skipped it, so
            # what follows it may have run too: resuming here could run it twice.
            raise ProtocolError(f"Protocol error: unexpected '{chr(rest[0])}' request type")
        self._reader = hiredis.Reader()
        self.gets = self._reader.gets
        self.has_data = self._reader.has_data
        self._raw_in_reader = False
        self._tail = []
        self._tail_len = 0
        while rest[:2] == b"*-":
            end = rest.find(b"\r\n")
            if end < 0:
                break  # an incomplete header: the next bytes will complete it
            rest = rest[end + 2 :]  # Redis skips an empty or negative multibulk
        if rest:
            try:
                self.feed(rest)
            except ProtocolError as exc:
                exc.after_requests = True
                raise

    def partial_error(self) -> str | None:
        """hiredis holds a partial request (``has_data``): Redis's error for a bulk
        length of ten digits or more at its end, refused now, not waited for."""
        last = self._tail[-1] if self._tail else b""
        if len(last) < LAST_BYTES and len(self._tail) > 1:
            last = self._tail[-2][-LAST_BYTES:] + last
        if big_bulk_header(last, len(last) - LAST_BYTES):
            try:
                self._check_limits()
            except ProtocolError as exc:
                return str(exc)
        return None

    def explain(self) -> str:
        """Redis's message for the framing error hiredis just raised."""
        try:
            self._check_limits()
        except ProtocolError as exc:
            return str(exc)
        return "Protocol error: invalid request"

    def _check_limits(self, data: bytes = b"") -> None:
        """Walk the buffered frames and check every header against the limits.

        ``data`` is the end of the tail, not yet fed to hiredis. On a framing
        error, its whole requests before the bad frame are fed first, so that
        they run and are answered before the error, as in Redis."""
        fed = self._tail_len - len(data)
        try:
            self._scan(limits=True)
        except ProtocolError:
            if self._frame_start > fed:
                self._reader.feed(data[: self._frame_start - fed])
            raise

    def _scan(self, limits: bool) -> int | None:
        """Walk the buffered frames as Redis parses them; raise ProtocolError at
        the first framing error. Returns the offset in the tail of the first
        frame that is not a multibulk request (an inline one, for Redis), or
        None. With ``limits`` (checking before hiredis reads the bytes), the
        tail is cut to the last frame boundary reached."""
        buffer = b"".join(self._tail)
        max_multibulk = MULTIBULK_MAX_LEN
        max_bulk = self.max_bulk_len
        if not self.authenticated:
            max_multibulk = UNAUTHENTICATED_MULTIBULK_MAX
            max_bulk = min(max_bulk, UNAUTHENTICATED_BULK_MAX)
        pos, size = 0, len(buffer)
        frame_start = 0
        found = None
        while pos < size:
            frame_start = self._frame_start = pos
            if buffer[pos] != 0x2A:
                found = pos
                break
            end = buffer.find(b"\r", pos)
            if end < 0:
                if size - pos > INLINE_MAX_BYTES:
                    raise ProtocolError("Protocol error: too big mbulk count string")
                break
            header = buffer[pos + 1 : end]
            if header[:1] == b"-" and _parse_length(header[1:]):
                # Redis skips a negative multibulk; hiredis returns None for "*-1"
                # and fails on the others: either way, parsing resumes here.
                found = pos
                break
            count = _parse_length(header)
            if count is None or count > MULTIBULK_MAX_LEN:
                raise ProtocolError("Protocol error: invalid multibulk length")
            if count > max_multibulk:
                raise ProtocolError("Protocol error: unauthenticated multibulk length")
            pos = end + 2
            for _ in range(count):
                if pos >= size:
                    break
                if buffer[pos] != 0x24:
                    got = chr(buffer[pos])
                    raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
                end = buffer.find(b"\r", pos)
                if end < 0:
                    if size - pos > INLINE_MAX_BYTES:
                        raise ProtocolError("Protocol error: too big bulk count string")
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
        if limits and frame_start:
            rest = buffer[frame_start:]
            self._tail = [rest]
            self._tail_len = len(rest)
        return found


def _parse_length(text: bytes) -> int | None:
    """A length header as Redis's string2ll reads it: digits, no sign, no
    leading zero, no spaces."""
    if not text or len(text) > 19 or not text.isdigit() or (text[0] == 0x30 and len(text) > 1):
        return None
    return int(text)
