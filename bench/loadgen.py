"""redis-benchmark runs: the command line, its CSV output, the server's CPU.

Owns how a server is driven and what one run yields. Each run also records
the CPU time the server process spent (from /proc), which is much less
disturbed by other load on a shared machine than requests per second.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.machine import cpu_seconds, cpu_stalled_us
from nomadkv.harness import ServerProcess


class BenchmarkError(Exception):
    pass


@dataclass(frozen=True)
class Run:
    command: str  # the exact redis-benchmark command line
    requests: int
    rps: float
    avg_latency_ms: float
    p50_latency_ms: float
    p99_latency_ms: float
    wall_s: float
    server_cpu_s: float
    # CPU time of other processes watched during the run (a cluster's followers), by label.
    watched_cpu_s: dict[str, float] = field(default_factory=dict)
    # Share of the run during which some task waited for a CPU (PSI); None without PSI.
    cpu_contention: float | None = None

    @property
    def server_cpu_us_per_request(self) -> float:
        return self.server_cpu_s * 1e6 / self.requests

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "server_cpu_us_per_request": self.server_cpu_us_per_request}


def benchmark_argv(
    server: ServerProcess,
    test: str,
    requests: int,
    clients: int = 50,
    pipeline: int = 1,
    keyspace: int = 100_000,
    data_size: int = 3,
) -> list[str]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise BenchmarkError("redis-benchmark is not installed: run scripts/system-deps.sh")
    argv = [binary, "-h", server.host, "-p", str(server.port), "-c", str(clients)]
    argv += ["-n", str(requests), "-P", str(pipeline), "-r", str(keyspace), "-d", str(data_size)]
    return [*argv, "-t", test, "--csv"]


def parse_csv(output: str, test: str) -> dict[str, float]:
    """The row of ``test`` in redis-benchmark's --csv output, as numbers."""
    rows = list(csv.reader(io.StringIO(output)))
    if not rows or rows[0][:2] != ["test", "rps"]:
        raise BenchmarkError(f"unexpected redis-benchmark output: {output!r}")
    header = rows[0]
    for row in rows[1:]:
        if row and row[0] == test.upper():
            return {name: float(value) for name, value in zip(header[1:], row[1:], strict=True)}
    raise BenchmarkError(f"no {test.upper()} row in redis-benchmark output: {output!r}")


def run(
    server: ServerProcess, argv: list[str], watch: Mapping[str, ServerProcess] | None = None
) -> Run:
    """Run redis-benchmark ``argv`` against ``server``; also record the CPU time
    each process of ``watch`` used meanwhile."""
    test = argv[argv.index("-t") + 1]
    requests = int(argv[argv.index("-n") + 1])
    watch = watch or {}
    watched_before = {label: cpu_seconds(p.pid) for label, p in watch.items()}
    cpu_before = cpu_seconds(server.pid)
    stalled_before = cpu_stalled_us()
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    server_cpu_s = cpu_seconds(server.pid) - cpu_before
    stalled_after = cpu_stalled_us()
    contention = None
    if stalled_before is not None and stalled_after is not None:
        contention = (stalled_after - stalled_before) / 1e6 / wall_s
    watched_cpu_s = {
        label: cpu_seconds(p.pid) - watched_before[label] for label, p in watch.items()
    }
    if result.returncode != 0:
        raise BenchmarkError(f"{' '.join(argv)} failed: {result.stdout}{result.stderr}")
    if not server.alive():
        raise BenchmarkError(f"the server died during {' '.join(argv)}:\n{server.log_tail()}")
    row = parse_csv(result.stdout, test)
    return Run(
        command=" ".join(argv),
        requests=requests,
        rps=row["rps"],
        avg_latency_ms=row["avg_latency_ms"],
        p50_latency_ms=row["p50_latency_ms"],
        p99_latency_ms=row["p99_latency_ms"],
        wall_s=wall_s,
        server_cpu_s=server_cpu_s,
        watched_cpu_s=watched_cpu_s,
        cpu_contention=contention,
    )
