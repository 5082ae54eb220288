"""Replay or sweep simulation seeds: `python -m nomadkv.sim --seed 0x5eed [--trace]`.

Owns: the command line of the simulator. Exit status 1 when any run fails.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from nomadkv.sim.mutation import MUTATIONS, mutated
from nomadkv.sim.runner import Simulation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nomadkv.sim", description=__doc__)
    parser.add_argument("--seed", type=lambda s: int(s, 0), required=True, help="first seed")
    parser.add_argument("--count", type=int, default=1, help="number of consecutive seeds")
    parser.add_argument("--trace", action="store_true", help="print the run's transcript")
    parser.add_argument(
        "--mutation", choices=sorted(MUTATIONS), default="", help="disable one safety rule"
    )
    args = parser.parse_args(argv)
    failures = 0
    for seed in range(args.seed, args.seed + args.count):
        trace = print if args.trace else None
        sim = Simulation(seed, trace=trace)
        with mutated(args.mutation) if args.mutation else contextlib.nullcontext():
            result = sim.run()
        p = sim.params
        print(
            f"seed {seed:#x}: {'ok' if result.ok else 'FAILED'} nodes={p.nodes}"
            f" sim={result.sim_ms}ms msgs={result.messages} commit={result.commit_index}"
            f" healed_in={result.heal_ticks} ticks acked={result.stats.writes_acked}"
            f" reads={result.stats.reads_ok}"
        )
        if not result.ok:
            failures += 1
            print(f"  {result.error}\n  replay: {result.replay_line(args.mutation)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
