"""What a replica pays to apply a SET it did not propose: decode plus apply.

Owns the in-process figure behind the follower's CPU per write in
docs/benchmarks.md (Cluster): entries of ``--batch`` SETs on random keys
of a 100,000-key keyspace, as a leader proposes them under
``redis-benchmark -P 16 -r 100000 -t set``, applied with
``StateMachine.apply_payload`` (the path of a follower and of log replay at
start-up). Reports nanoseconds per command, the best of several runs, for
the whole path and for ``decode_entry`` alone.

Run: ``python -m bench.apply_cost [--batch 500] [--runs 7]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time

import nomadkv.server.main  # noqa: F401  (registers every command)
from nomadkv.commands.machine import StateMachine, decode_entry, encode_entry
from nomadkv.keyspace import Keyspace

KEYSPACE = 100_000
ENTRIES = 400


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apply_cost", description=__doc__)
    parser.add_argument("--batch", type=int, default=500, help="SETs per entry (500)")
    parser.add_argument("--runs", type=int, default=7, help="runs; best counts (7)")
    args = parser.parse_args(argv)
    rng = random.Random(1)
    entries = [
        encode_entry(
            1, [[b"SET", b"key:%012d" % rng.randrange(KEYSPACE), b"xxx"] for _ in range(args.batch)]
        )
        for _ in range(ENTRIES)
    ]
    machine = StateMachine(Keyspace())
    commands = ENTRIES * args.batch

    def apply_all() -> None:
        for entry in entries:
            machine.apply_payload(machine.applied_index + 1, entry)

    def decode_all() -> None:
        for entry in entries:
            decode_entry(entry)

    apply_all()  # the keyspace reaches its steady size first
    for name, run in (("decode_entry + apply", apply_all), ("decode_entry alone", decode_all)):
        best = float("inf")
        for _ in range(args.runs):
            gc.collect()
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
        print(f"{best * 1e9 / commands:6.0f} ns per SET  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
