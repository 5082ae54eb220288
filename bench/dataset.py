"""Data sets loaded into both servers before measuring: the same SET commands,
sent the same way, so both sides hold the same keys.

Owns the loading client; never measures anything itself. The client sends
pipelined batches of SETs, each batch one write(2) of whole commands (under
64 KiB, one loopback segment), and reads every reply of a batch before it
sends the next, checking that none is an error.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import hiredis

from nomadkv.harness import ServerProcess

BENCHMARK_KEY = b"key:%012d"  # redis-benchmark's key for -r: "key:__rand_int__", 12 digits
BATCH_BYTES_MAX = 60_000


class LoadError(Exception):
    pass


def _set_command(key: bytes, value: bytes) -> bytes:
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(value), value)


def set_batches(
    count: int, value_for: Callable[[int], bytes], key_format: bytes = BENCHMARK_KEY
) -> Iterator[tuple[bytes, int]]:
    """``SET <key_format % i> <value_for(i)>`` for i in [0, count), as (RESP bytes,
    number of commands) batches of at most BATCH_BYTES_MAX bytes."""
    batch: list[bytes] = []
    size = 0
    for i in range(count):
        command = _set_command(key_format % i, value_for(i))
        if batch and size + len(command) > BATCH_BYTES_MAX:
            yield b"".join(batch), len(batch)
            batch, size = [], 0
        batch.append(command)
        size += len(command)
    if batch:
        yield b"".join(batch), len(batch)


def load(server: ServerProcess, batches: Iterator[tuple[bytes, int]]) -> float:
    """Send every batch to ``server`` and wait for its replies; the seconds it took.
    Raises LoadError on the first error reply or if the server hangs up."""
    started = time.perf_counter()
    with socket.create_connection((server.host, server.port), timeout=120) as sock:
        reader = hiredis.Reader()
        for payload, expected in batches:
            sock.sendall(payload)
            received = 0
            while received < expected:
                data = sock.recv(1 << 20)
                if not data:
                    raise LoadError(f"{server.host}:{server.port} closed the connection")
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise LoadError(f"{server.host}:{server.port} answered -{reply}")
                    received += 1
    return time.perf_counter() - started
