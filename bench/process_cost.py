"""The Python cost of one GET on the hot path, without sockets or the kernel.

Owns the in-process figure behind docs/benchmarks.md's "where GET's time
goes": 50 real ``Client``s of a real ``Node`` (on an event loop that never
runs) with transports that discard what they are given, each fed 16
pipelined GETs (``--pipeline``) per ``data_received`` on random keys of a
100,000-key keyspace, as ``redis-benchmark -c 50 -P 16 -r 100000 -t get``
sends them; a loop turn reads every client once, then sends the turn's
replies (``Node.write_replies``). Reports nanoseconds
per GET (the best of several runs) for today's code and for variants that
show what each part costs:

- ``bare handler``: a GET handler without the attribute chain and hit counter;
- ``floor``: a loop doing only hiredis parsing, the dict lookup and the reply
  (no gate, no counters, no handler call): what the machinery costs on top;

and, alone, what a bulk reply costs built with ``%`` formatting (as
``cmd_get`` does) or from a table of headers.

The variants swap the GET handler of the command table inside this process
only. Run: ``python -m bench.process_cost [--pipeline 16] [--runs 9]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from typing import Any

import hiredis
import uvloop

import nomadkv.server.main  # noqa: F401  (registers every command)
from nomadkv.commands.table import COMMANDS
from nomadkv.config import Config
from nomadkv.server.client import Client
from nomadkv.server.node import Node

KEYSPACE = 100_000
BATCHES = 4000
CLIENTS = 50  # redis-benchmark -c 50: connections read in one loop turn
CRLF = b"\r\n"
HEADERS = [b"$%d\r\n" % n for n in range(512)]


class DiscardingTransport:
    """Just enough of a transport for a Client: writes go nowhere."""

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 0)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


def best_ns_per_get(run: Callable[[], None], runs: int, pipeline: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1e9 / (BATCHES * pipeline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.process_cost", description=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="runs per variant; best counts (9)")
    parser.add_argument("--pipeline", type=int, default=16, help="GETs per data_received (16)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nomadkv-bench-") as workdir:
        loop = uvloop.new_event_loop()
        node = Node(Config(dir=workdir, http_port=0), loop)
        data = node.keyspace.data
        for i in range(KEYSPACE):
            data[b"key:%012d" % i] = b"xxx"
        clients = [Client(node) for _ in range(CLIENTS)]
        for client in clients:
            client.connection_made(DiscardingTransport())  # type: ignore[arg-type]
        rng = random.Random(1)
        batches = [
            b"".join(
                b"*2\r\n$3\r\nGET\r\n$16\r\nkey:%012d\r\n" % rng.randrange(KEYSPACE)
                for _ in range(args.pipeline)
            )
            for _ in range(BATCHES)
        ]
        get_spec = COMMANDS[b"GET"]
        current_handler = get_spec.handler
        data_get: Callable[[bytes], Any] = data.get  # every value here is bytes
        expires = node.keyspace.expires

        def through_client() -> None:
            # One loop turn: every client's batch read, then the turn's reply burst.
            received = [client.data_received for client in clients]
            write_replies = node.write_replies
            for turn in range(0, BATCHES, CLIENTS):
                for client_received, batch in zip(
                    received, batches[turn : turn + CLIENTS], strict=True
                ):
                    client_received(batch)
                write_replies()

        def bare(ctx: Any, argv: list[bytes]) -> Any:
            value = data_get(argv[1])
            return HEADERS[len(value)] + value + CRLF

        def floor() -> None:
            reader = hiredis.Reader()
            gets = reader.gets
            commands_get = COMMANDS.get
            for batch in batches:
                reader.feed(batch)
                out: list[bytes] = []
                for request in iter(gets, False):
                    if commands_get(request[0]) is get_spec and not expires:
                        value = data_get(request[1])
                        out += (HEADERS[len(value)], value, CRLF)
                b"".join(out)

        results = {}
        try:
            results["today's Client.data_received"] = best_ns_per_get(
                through_client, args.runs, args.pipeline
            )
            get_spec.handler = bare
            results["bare handler (no attribute chain, no hit counter)"] = best_ns_per_get(
                through_client, args.runs, args.pipeline
            )
        finally:
            get_spec.handler = current_handler
        results["floor: parse, lookup, reply (no gate, no handler call)"] = best_ns_per_get(
            floor, args.runs, args.pipeline
        )
        loop.close()
    value = b"xxx"
    for name, build in (
        (
            'b"$%d\\r\\n%b\\r\\n" % (len(value), value)',
            lambda: b"$%d\r\n%b\r\n" % (len(value), value),
        ),
        ("HEADERS[len(value)] + value + CRLF", lambda: HEADERS[len(value)] + value + CRLF),
    ):
        seconds = min(timeit.repeat(build, number=200_000, repeat=args.runs))
        results[f"reply alone: {name}"] = seconds * 1e9 / 200_000
    for name, ns in results.items():
        print(f"{ns:6.0f} ns per GET  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
