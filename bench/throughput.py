"""Throughput: NomadKV against redis-server with redis-benchmark, as a ratio.

Owns the throughput comparison of the foundation issue: GET and SET at
``-c 50 -P 1`` and ``-c 50 -P 16`` against an in-memory redis-server (NomadKV
with ``appendfsync no``), and SET with ``appendfsync always`` on both sides
(redis-server ``--appendonly yes --appendfsync always``).

Method: both servers run on this machine at the same time, started here on
free loopback ports and stopped by PID; both get the same keys first (every
GET hits). Per scenario: one warm-up run on each side (the redis run also
sizes ``-n`` so that a redis run takes about ``--seconds``), then ``--rounds``
rounds of redis then NomadKV with the same command line, so slow drift in the
machine's load (other people's tests) hits both sides alike. The ratio is
NomadKV's median req/s over redis's median req/s; the range of the per-round
ratios is shown next to it as a measure of the noise. The CPU time each
server spent per request (from /proc, all threads) is shown too: it is far
less disturbed by other load than req/s is.

Run alone: ``python -m bench.throughput [--rounds 3] [--seconds 3] [--only set]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from bench import dataset, loadgen, machine, report
from nomadkv.harness import ServerProcess, nomadkv_node, redis_server

CLIENTS = 50
KEYSPACE = 100_000
DATA_SIZE = 3  # redis-benchmark's default value size


@dataclass(frozen=True)
class Durability:
    """One pairing of server configurations."""

    name: str
    description: str
    nomadkv_options: dict[str, Any]
    redis_extra: tuple[str, ...]


IN_MEMORY = Durability(
    "in-memory",
    "redis-server without AOF or RDB saves; NomadKV with appendfsync no",
    {"appendfsync": "no"},
    (),
)
FSYNC_ALWAYS = Durability(
    "fsync always",
    "redis-server --appendonly yes --appendfsync always; NomadKV with appendfsync always",
    {"appendfsync": "always"},
    ("--appendonly", "yes", "--appendfsync", "always"),
)


@dataclass(frozen=True)
class Scenario:
    test: str  # redis-benchmark -t
    pipeline: int
    durability: Durability
    target: float  # the least acceptable ratio NomadKV/redis

    @property
    def name(self) -> str:
        return f"{self.test.upper()} -P {self.pipeline} ({self.durability.name})"

    @property
    def probe_requests(self) -> int:
        """Requests of the warm-up run that also sizes the measured runs."""
        return 50_000 if self.pipeline == 1 else 400_000


SCENARIOS = (
    Scenario("get", 1, IN_MEMORY, 0.9),
    Scenario("get", 16, IN_MEMORY, 0.5),
    Scenario("set", 1, IN_MEMORY, 0.9),
    Scenario("set", 16, IN_MEMORY, 0.4),
    Scenario("set", 1, FSYNC_ALWAYS, 0.9),
    Scenario("set", 16, FSYNC_ALWAYS, 0.8),
)


def requests_for(rps: float, seconds: float, least: int) -> int:
    """A request count that lasts about ``seconds`` at ``rps``, in round tens of thousands."""
    return max(least, round(rps * seconds / 10_000) * 10_000)


def measure(
    scenario: Scenario,
    redis: ServerProcess,
    node: ServerProcess,
    rounds: int,
    seconds: float,
    requests: int | None,
) -> dict[str, Any]:
    def argv(server: ServerProcess, count: int) -> list[str]:
        return loadgen.benchmark_argv(
            server, scenario.test, count, CLIENTS, scenario.pipeline, KEYSPACE, DATA_SIZE
        )

    print(f"\n{scenario.name}: warm-up", flush=True)
    warm_up = min(requests or scenario.probe_requests, scenario.probe_requests)
    warm_redis = loadgen.run(redis, argv(redis, warm_up))
    loadgen.run(node, argv(node, warm_up))
    count = requests or requests_for(warm_redis.rps, seconds, scenario.probe_requests)
    print(f"  redis:   {' '.join(argv(redis, count))}")
    print(f"  nomadkv: {' '.join(argv(node, count))}")
    redis_runs: list[loadgen.Run] = []
    node_runs: list[loadgen.Run] = []
    for round_number in range(1, rounds + 1):
        redis_runs.append(loadgen.run(redis, argv(redis, count)))
        node_runs.append(loadgen.run(node, argv(node, count)))
        print(
            f"  round {round_number}: redis {redis_runs[-1].rps:,.0f}/s, "
            f"nomadkv {node_runs[-1].rps:,.0f}/s, "
            f"ratio {node_runs[-1].rps / redis_runs[-1].rps:.2f}",
            flush=True,
        )
    ratios = [n.rps / r.rps for r, n in zip(redis_runs, node_runs, strict=True)]
    redis_rps = report.median([r.rps for r in redis_runs])
    node_rps = report.median([n.rps for n in node_runs])
    ratio = node_rps / redis_rps
    redis_cpu = report.median([r.server_cpu_us_per_request for r in redis_runs])
    node_cpu = report.median([n.server_cpu_us_per_request for n in node_runs])
    return {
        "scenario": scenario.name,
        "test": scenario.test,
        "clients": CLIENTS,
        "pipeline": scenario.pipeline,
        "durability": scenario.durability.description,
        "requests": count,
        "target": scenario.target,
        "ratio": ratio,
        "ratios": ratios,
        "passed": ratio >= scenario.target,
        "redis_rps_median": redis_rps,
        "nomadkv_rps_median": node_rps,
        "redis_cpu_us_per_request": redis_cpu,
        "nomadkv_cpu_us_per_request": node_cpu,
        "redis_runs": [r.as_dict() for r in redis_runs],
        "nomadkv_runs": [n.as_dict() for n in node_runs],
    }


def redis_persistence(redis: ServerProcess) -> dict[str, str]:
    """What the reference really runs with (CONFIG GET), so a comparison is never
    against a redis-server configured other than the table says."""
    client = redis.client(decode_responses=True)
    try:
        config = client.config_get("appendonly") | client.config_get("appendfsync")
        config |= client.config_get("save")
    finally:
        client.close()
    return {name: str(value) for name, value in config.items()}


def run_pair(
    durability: Durability,
    scenarios: list[Scenario],
    workdir: str,
    rounds: int,
    seconds: float,
    requests: int | None,
) -> list[dict[str, Any]]:
    """Start both servers of ``durability``, load the keys, measure ``scenarios``."""
    tag = durability.name.replace(" ", "-")
    redis = redis_server(os.path.join(workdir, f"redis-{tag}"), extra=durability.redis_extra)
    node = nomadkv_node(os.path.join(workdir, f"nomadkv-{tag}"), **durability.nomadkv_options)
    results = []
    try:
        redis.start()
        node.start()
        print(f"\n[{durability.description}]")
        print(f"  redis-server: {shlex.join(redis.argv)}")
        print(f"  nomadkv:      {shlex.join(node.argv)}")
        persistence = redis_persistence(redis)
        print(f"  redis-server reports: {persistence}")
        for server in (redis, node):
            dataset.load(server, dataset.set_batches(KEYSPACE, lambda i: b"x" * DATA_SIZE))
        for scenario in scenarios:
            result = measure(scenario, redis, node, rounds, seconds, requests)
            result["redis_server_command"] = shlex.join(redis.argv)
            result["nomadkv_command"] = shlex.join(node.argv)
            result["redis_persistence"] = persistence
            results.append(result)
    finally:
        node.stop()
        redis.stop()
    return results


def results_table(results: list[dict[str, Any]]) -> str:
    headers = [
        "scenario (-c 50)",
        "redis req/s",
        "nomadkv req/s",
        "ratio",
        "rounds",
        "target",
        "",
        "CPU us/req redis",
        "nomadkv",
    ]
    rows = [
        [
            r["scenario"],
            f"{r['redis_rps_median']:,.0f}",
            f"{r['nomadkv_rps_median']:,.0f}",
            f"{r['ratio']:.2f}",
            "-".join(f"{x:.2f}" for x in (min(r["ratios"]), max(r["ratios"]))),
            f">= {r['target']:.2f}",
            "pass" if r["passed"] else "FAIL",
            f"{r['redis_cpu_us_per_request']:.2f}",
            f"{r['nomadkv_cpu_us_per_request']:.2f}",
        ]
        for r in results
    ]
    return report.table(headers, rows)


def run(
    rounds: int = 3, seconds: float = 3.0, requests: int | None = None, only: str = ""
) -> dict[str, Any]:
    """Measure every scenario whose name contains ``only``; print and save the results."""
    scenarios = [s for s in SCENARIOS if only.lower() in s.name.lower()]
    if not scenarios:
        raise SystemExit(f"no scenario matches {only!r}")
    before = machine.describe()
    print("== throughput: NomadKV / redis-server (redis-benchmark) ==")
    print("\n".join(report.machine_lines(before)))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nomadkv-bench-") as workdir:
        for durability in (IN_MEMORY, FSYNC_ALWAYS):
            selected = [s for s in scenarios if s.durability is durability]
            if selected:
                results += run_pair(durability, selected, workdir, rounds, seconds, requests)
    load_after = machine.load_average()
    text = results_table(results)
    print(f"\n{text}")
    print(
        "req/s: median of the rounds; ratio: NomadKV/redis of those medians (rounds: range of "
        "the per-round ratios); CPU: server CPU time per request, all threads."
    )
    print(f"before: {before['uptime']}\nafter:  {machine.uptime_line()}")
    data = {
        "kind": "throughput",
        "machine": before,
        "load_average_after": load_after,
        "rounds": rounds,
        "results": results,
        "table": text,
    }
    data["path"] = report.write_json("throughput", data)
    print(f"results: {data['path']}")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="redis/NomadKV rounds (default 3)")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of a redis run, sizes -n (default 3)"
    )
    parser.add_argument(
        "--requests", type=int, help="fixed -n for every run (skips the sizing; caps the warm-up)"
    )
    parser.add_argument(
        "--only", default="", help="run scenarios whose name contains this (get, set, always, P 16)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    data = run(args.rounds, args.seconds, args.requests, args.only)
    missed = not all(r["passed"] for r in data["results"])
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
