"""Raw-socket conversations with a server, for framing tests that redis-py
would refuse to produce. Every read has a deadline; nothing sleeps."""

from __future__ import annotations

import select
import socket
import time

import hiredis


def encode(*args: bytes | str) -> bytes:
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


def exchange(port: int, payload: bytes, timeout_s: float = 10.0) -> tuple[bytes, bool]:
    """Send ``payload`` while reading, half-close, and read until the server
    closes. Returns (everything read, whether all of the payload was sent
    before the server closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.setblocking(False)
        chunks: list[bytes] = []
        sent = 0
        half_closed = False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            want_write = [sock] if not half_closed else []
            readable, writable, _ = select.select([sock], want_write, [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    return b"".join(chunks), half_closed
                if not data:
                    return b"".join(chunks), half_closed
                chunks.append(data)
            if writable:
                try:
                    sent += sock.send(payload[sent : sent + 65536])
                    if sent >= len(payload):
                        sock.shutdown(socket.SHUT_WR)
                        half_closed = True
                except OSError:
                    half_closed = True  # the server closed first: read what it said
        raise TimeoutError(f"server did not close within {timeout_s} s")


def replies(port: int, payload: bytes, count: int, timeout_s: float = 10.0) -> list[object]:
    """Send ``payload`` and read exactly ``count`` replies (the connection stays open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        return read_replies(sock, count, timeout_s)


def read_replies(sock: socket.socket, count: int, timeout_s: float = 10.0) -> list[object]:
    reader = hiredis.Reader(replyError=lambda message: ("ERROR", message))
    found: list[object] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < count:
        reply = reader.gets()
        if reply is not False:
            found.append(reply)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"got {len(found)} of {count} replies")
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed after {len(found)} of {count} replies")
        reader.feed(data)
    return found


def closed_by_server(sock: socket.socket, timeout_s: float = 10.0) -> bool:
    """Read until the server closes the connection (True) or the deadline passes."""
    sock.settimeout(timeout_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True
