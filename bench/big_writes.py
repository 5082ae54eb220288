"""Large writes on a 3-node cluster: does the leader keep its leadership?

Owns the figures behind docs/cluster.md's ``raft-max-entry-bytes``: starts a
``LocalCluster`` (127.0.0.2-4, default options unless ``--max-entry-bytes``),
then against the leader, one at a time, a SET of each ``--sizes`` (MiB) and a
pipeline of ``--pipeline`` SETs of 1 MiB. For each: the reply (or error), the
time it took, and the Raft term before and after (a new term: the leader was
stalled past its election timeout). Results in bench/results/big_writes-*.json.

Run: ``python -m bench.big_writes [--sizes 8 16 64] [--pipeline 100]
[--max-entry-bytes N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from typing import Any

from bench import report
from nomadkv.harness import LocalCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.big_writes", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 64], help="MiB per SET")
    parser.add_argument("--pipeline", type=int, default=100, help="1 MiB SETs in one pipeline")
    parser.add_argument("--max-entry-bytes", type=int, default=0, help="0: the default")
    args = parser.parse_args(argv)
    options = {"raft_max_entry_bytes": args.max_entry_bytes} if args.max_entry_bytes else {}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nomadkv-big-") as workdir:
        cluster = LocalCluster(workdir, **options).start()
        try:

            def term() -> int:
                return int(cluster.leader(timeout_s=30).client().info("raft")["term"])

            def measure(name: str, write: Any) -> None:
                before = term()
                client = cluster.leader().client(socket_timeout=120)
                started = time.perf_counter()
                outcome = write(client)
                seconds = time.perf_counter() - started
                after = term()
                runs.append(
                    {
                        "write": name,
                        "outcome": outcome,
                        "seconds": seconds,
                        "term_before": before,
                        "term_after": after,
                    }
                )
                print(f"{name}: {outcome} in {seconds:.2f} s, term {before} -> {after}")

            def one(size_mib: int) -> Any:
                def write(client: Any) -> str:
                    try:
                        return str(client.set(f"big:{size_mib}", b"x" * (size_mib << 20)))
                    except Exception as exc:  # the outcome is what is reported
                        return f"error: {exc}"

                return write

            def pipeline(client: Any) -> str:
                pipe = client.pipeline(transaction=False)
                for i in range(args.pipeline):
                    pipe.set(f"piece:{i}", b"y" * (1 << 20))
                replies = pipe.execute(raise_on_error=False)
                return f"{sum(1 for r in replies if r is True)} of {len(replies)} acknowledged"

            for size in args.sizes:
                measure(f"SET of {size} MiB", one(size))
            measure(f"pipeline of {args.pipeline} SETs of 1 MiB", pipeline)
        finally:
            cluster.stop()
    path = report.write_json("big_writes", {"options": options, "runs": runs})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
