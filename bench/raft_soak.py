"""Long soak of the Raft simulator: many seeds, all fault kinds, parallel workers.

Usage: python -m bench.raft_soak --seeds 20000 [--start 0x10000] [--jobs 2] [--mutation NAME]

Prints one line per failing seed (with the command that replays it) and a
summary: seeds run, failures, wall time, simulated time, messages delivered.
With --mutation, a safety rule is disabled (see nomadkv.sim.mutation) and the
run stops at the first seed the checkers catch (or, with --keep-going, counts
how many seeds catch it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Iterator

from nomadkv.sim.mutation import MUTATIONS, mutated
from nomadkv.sim.runner import SimResult, run_seed

_MUTATION = ""


def _init(mutation: str) -> None:
    global _MUTATION
    _MUTATION = mutation


def _run(seed: int) -> SimResult:
    if _MUTATION:
        with mutated(_MUTATION):
            return run_seed(seed)
    return run_seed(seed)


def _sweep(start: int, count: int, jobs: int, mutation: str) -> Iterator[SimResult]:
    seeds = range(start, start + count)
    if jobs == 1:
        _init(mutation)
        yield from map(_run, seeds)
        return
    with multiprocessing.Pool(jobs, initializer=_init, initargs=(mutation,)) as pool:
        yield from pool.imap(_run, seeds, chunksize=8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20000)
    parser.add_argument("--start", type=lambda s: int(s, 0), default=0x10000)
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--mutation", choices=sorted(MUTATIONS), default="")
    parser.add_argument(
        "--keep-going", action="store_true", help="with --mutation: count every seed that fails"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per failing seed")
    args = parser.parse_args()
    began = time.perf_counter()
    failures = runs = sim_ms = messages = acked = reads = 0
    heal_ticks: list[int] = []
    first_failure = first_seed = -1
    for result in _sweep(args.start, args.seeds, args.jobs, args.mutation):
        runs += 1
        sim_ms += result.sim_ms
        messages += result.messages
        acked += result.stats.writes_acked
        reads += result.stats.reads_ok
        if result.ok:
            heal_ticks.append(result.heal_ticks)
        if not result.ok:
            failures += 1
            if first_failure < 0:
                first_failure, first_seed = runs, result.seed
            if not args.quiet:
                print(f"seed {result.seed:#x} FAILED: {result.error}", flush=True)
                print(f"  replay: {result.replay_line(args.mutation)}", flush=True)
            if args.mutation and not args.keep_going:
                break
        if runs % 1000 == 0:
            print(f"... {runs} seeds, {failures} failures", flush=True)
    wall = time.perf_counter() - began
    label = f" with mutation {args.mutation}" if args.mutation else ""
    if args.mutation and first_failure >= 0:
        label += f" (first caught by seed {first_seed:#x}, the {first_failure}th of the sweep)"
    print(
        f"soak{label}: {runs} seeds from {args.start:#x}, {failures} failures,"
        f" {wall:.1f}s wall ({runs / wall:.1f} seeds/s, {args.jobs} jobs),"
        f" {sim_ms / 1000:.0f}s simulated, {messages} messages, {acked} writes acknowledged,"
        f" {reads} linearizable reads checked"
    )
    if heal_ticks:
        heal_ticks.sort()
        print(
            f"ticks from healing to a fresh entry applied everywhere and a read served:"
            f" median {heal_ticks[len(heal_ticks) // 2]}, 99th percentile"
            f" {heal_ticks[len(heal_ticks) * 99 // 100]}, max {heal_ticks[-1]}"
        )
    return 1 if failures and not args.mutation else 0


if __name__ == "__main__":
    sys.exit(main())
