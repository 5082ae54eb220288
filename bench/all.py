"""Every benchmark, then a summary block to paste into the README (``make bench``).

Runs bench.throughput, bench.memory and bench.cluster (throughput, failover
and catch-up of a local 3-node cluster) with their defaults (or the options
given here), prints a Markdown summary with the date, the machine and its
load, and writes it to bench/results/summary-latest.md next to the JSON.

Run: ``python -m bench.all [--rounds 3] [--seconds 3] [--keys 1000000] [--no-cluster]
[--check]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bench import cluster, memory, report, throughput


def summary(
    speed: dict[str, Any], space: dict[str, Any], clustered: dict[str, Any] | None = None
) -> str:
    """The README block: throughput ratios, memory, restart, the cluster's figures
    (when ``clustered`` is given), and how they were measured."""
    info = speed["machine"]
    load_before = ", ".join(f"{x:.2f}" for x in info["load_average"])
    last = clustered if clustered is not None else space
    load_after = ", ".join(f"{x:.2f}" for x in last["load_average_after"])
    lines = [
        f"Measured {info['date'][:10]} with `make bench` on {info['cores']} cores "
        f"({info['cpu']}), NomadKV {info['nomadkv']} at {info['commit']}, "
        f"{info['redis_server'].split(' sha=')[0]}, both servers on the same machine; "
        f"load average {load_before} before, {load_after} after.",
        "",
        "| redis-benchmark -c 50 -r 100000 | redis-server req/s | NomadKV req/s "
        "| NomadKV/redis | target | server CPU µs/req, redis / NomadKV |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in speed["results"]:
        verdict = "met" if r["passed"] else "**missed**"
        lines.append(
            f"| {r['scenario']} | {r['redis_rps_median']:,.0f} | {r['nomadkv_rps_median']:,.0f} "
            f"| {r['ratio']:.2f} | >= {r['target']} ({verdict}) "
            f"| {r['redis_cpu_us_per_request']:.2f} / {r['nomadkv_cpu_us_per_request']:.2f} |"
        )
    ours, theirs = space["nomadkv"], space["redis"]
    keys = space["keys"]
    rss_verdict = "met" if space["rss_ratio_passed"] else "**missed**"
    restart_verdict = "met" if space["restart_passed"] else "**missed**"
    lines += [
        "",
        "In-memory: redis-server without AOF or RDB saves, NomadKV with `appendfsync no`. "
        "fsync always: redis-server `--appendonly yes --appendfsync always`, NomadKV's "
        f"default `appendfsync always`. req/s: median of {speed['rounds']} alternating rounds; "
        "CPU: the server process's CPU time per request, all threads (less disturbed by "
        "other load on the machine than req/s).",
        "",
        f"Memory, {keys:,} keys with {space['value_size']}-byte values: NomadKV RSS "
        f"{memory.mib(ours['rss_loaded_bytes'])} ({ours['bytes_per_key']:.0f} bytes/key), "
        f"redis-server {memory.mib(theirs['rss_loaded_bytes'])} "
        f"({theirs['bytes_per_key']:.0f} bytes/key): {space['rss_ratio']:.2f}x "
        f"(target <= {memory.RSS_RATIO_TARGET}x, {rss_verdict}).",
        "",
        f"Restart with those keys, spawn to first reply: "
        f"{ours['restart_from_log_seconds']:.2f} s from the log alone, "
        f"{ours['restart_from_snapshot_seconds']:.2f} s from a snapshot "
        f"(target < {memory.RESTART_TARGET_S:.0f} s, {restart_verdict}); redis-server from "
        f"its RDB file: {theirs['restart_from_rdb_seconds']:.2f} s.",
    ]
    if clustered is not None:
        lines += cluster.summary_lines(clustered)
    lines += ["", "Method and raw figures: docs/benchmarks.md."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per redis run (3)")
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys for memory (1,000,000)")
    parser.add_argument("--no-cluster", action="store_true", help="skip bench.cluster")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    speed = throughput.run(args.rounds, args.seconds)
    print()
    space = memory.run(args.keys)
    clustered = None
    if not args.no_cluster:
        print()
        clustered = cluster.run(cluster.Options(rounds=args.rounds, seconds=args.seconds))
    block = summary(speed, space, clustered)
    os.makedirs(report.RESULTS_DIR, exist_ok=True)
    path = os.path.join(report.RESULTS_DIR, "summary-latest.md")
    with open(path, "w") as f:
        f.write(block + "\n")
    print(f"\n== summary for the README (also in {path}) ==\n\n{block}")
    missed = not (
        all(r["passed"] for r in speed["results"])
        and space["rss_ratio_passed"]
        and space["restart_passed"]
        and not (clustered and clustered["missed"])
    )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
