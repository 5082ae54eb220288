"""``python -m nomadkv.jepsen check HISTORY.jsonl``: re-check a saved history.

Exit status: 0 linearizable, 1 not linearizable, 2 unknown (budget or time
limit reached), 3 the file is not a valid history.
"""

from __future__ import annotations

import argparse
import sys
import time

from nomadkv.jepsen.history import HistoryError
from nomadkv.jepsen.linearizability import DEFAULT_BUDGET, check
from nomadkv.jepsen.runner import counts, load

EXIT_CODES = {"ok": 0, "fail": 1, "unknown": 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nomadkv.jepsen")
    commands = parser.add_subparsers(dest="command", required=True)
    recheck = commands.add_parser("check", help="check a history saved as JSON lines")
    recheck.add_argument("path")
    recheck.add_argument(
        "--budget", type=int, default=DEFAULT_BUDGET, help="configurations per key"
    )
    recheck.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole check")
    args = parser.parse_args(argv)
    try:
        history = load(args.path)
    except (OSError, HistoryError) as e:
        print(f"cannot load {args.path}: {e}", file=sys.stderr)
        return 3
    print(f"{args.path}: {len(history.operations)} operations, meta {history.meta}")
    print(", ".join(f"{k} {v}" for k, v in sorted(counts(history).items())))
    started = time.monotonic()
    deadline = started + args.timeout
    result = check(history, budget=args.budget, should_stop=lambda: time.monotonic() > deadline)
    print(result.explain())
    print(f"checked in {time.monotonic() - started:.2f} s")
    return EXIT_CODES[result.status]


if __name__ == "__main__":
    sys.exit(main())
