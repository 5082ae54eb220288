"""A raw RESP client for differential tests: replies keep their exact RESP type.

hiredis and redis-py fold simple strings into bulk strings and strip error
codes; comparing two servers needs neither. A reply is parsed into a tagged
tuple: ``("+", b"OK")``, ``("-", b"ERR ...")``, ``(":", 5)``, ``("$", b"..."
or None)``, ``("*", [...] or None)``, and the RESP3 types (``_ , # % ~``).
"""

from __future__ import annotations

import socket
from typing import Any

Reply = tuple[str, Any]


class Incomplete(Exception):
    pass


def encode_command(argv: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in argv)


def parse(buf: bytes, pos: int = 0) -> tuple[Reply, int]:
    """One reply from ``buf`` at ``pos``, and the position after it."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind, line = chr(buf[pos]), buf[pos + 1 : end]
    pos = end + 2
    if kind in "+-":
        return (kind, line), pos
    if kind == ":":
        return (kind, int(line)), pos
    if kind == "_":
        return (kind, None), pos
    if kind == ",":
        return (kind, line), pos
    if kind == "#":
        return (kind, line == b"t"), pos
    if kind in "$=!":
        length = int(line)
        if length < 0:
            return (kind, None), pos
        if len(buf) < pos + length + 2:
            raise Incomplete
        return (kind, buf[pos : pos + length]), pos + length + 2
    if kind in "*~%>":
        count = int(line)
        if count < 0:
            return (kind, None), pos
        items = []
        for _ in range(count * 2 if kind == "%" else count):
            item, pos = parse(buf, pos)
            items.append(item)
        return (kind, items), pos
    raise ValueError(f"not a RESP reply: {buf[pos - len(line) - 3 :][:40]!r}")


class RawClient:
    """One connection; ``call`` sends a command and returns its reply."""

    def __init__(self, host: str, port: int, timeout_s: float = 20.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.buffer = b""

    def call(self, *args: bytes | str | int) -> Reply:
        return self.pipeline([list(args)])[0]

    def pipeline(self, commands: list[list[bytes | str | int]]) -> list[Reply]:
        argvs = [[a if isinstance(a, bytes) else str(a).encode() for a in c] for c in commands]
        self.sock.sendall(b"".join(encode_command(argv) for argv in argvs))
        replies = []
        while len(replies) < len(argvs):
            try:
                reply, pos = parse(self.buffer)
            except Incomplete:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed the connection") from None
                self.buffer += data
                continue
            self.buffer = self.buffer[pos:]
            replies.append(reply)
        return replies

    def close(self) -> None:
        self.sock.close()
