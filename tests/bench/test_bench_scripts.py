"""The benchmark scripts run end to end on tiny loads and report what they
measured: the README's figures come from them, so they must keep working.

Each runs as a user runs it (``python -m bench.<name>`` from the repository
root) against real servers; results go to a temporary directory, never over
the last real run's bench/results/*-latest.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_script(results: Path, *argv: str) -> tuple[str, dict[str, Any]]:
    """Run ``python -m bench.<...>``; its stdout and the JSON it wrote."""
    env = {**os.environ, "NOMADKV_BENCH_RESULTS": str(results)}
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    kind = argv[0].split(".")[-1]
    with open(results / f"{kind}-latest.json") as f:
        return done.stdout, json.load(f)


def test_throughput_compares_both_servers_in_both_configurations(tmp_path: Path) -> None:
    out, data = run_script(
        tmp_path, "bench.throughput", "--rounds", "1", "--requests", "4000", "--only", "SET -P 1 ("
    )
    results = {r["scenario"]: r for r in data["results"]}
    assert set(results) == {"SET -P 1 (in-memory)", "SET -P 1 (fsync always)"}
    assert results["SET -P 1 (in-memory)"]["redis_persistence"]["appendonly"] == "no"
    durable = results["SET -P 1 (fsync always)"]["redis_persistence"]
    assert (durable["appendonly"], durable["appendfsync"]) == ("yes", "always")
    for result in results.values():
        assert result["requests"] == 4000
        assert result["ratio"] > 0
        assert result["ratio"] == pytest.approx(
            result["nomadkv_rps_median"] / result["redis_rps_median"]
        )
        assert result["nomadkv_cpu_us_per_request"] > 0
        for run in result["redis_runs"] + result["nomadkv_runs"]:
            assert " -n 4000 -P 1 -r 100000 -d 3 -t set --csv" in run["command"]
            assert run["command"] in out
    assert data["machine"]["cores"] == os.cpu_count()
    assert "target" in data["table"]


def test_memory_loads_measures_and_restarts_from_log_and_snapshot(tmp_path: Path) -> None:
    out, data = run_script(tmp_path, "bench.memory", "--keys", "3000", "--value-size", "16")
    assert data["keys"] == 3000
    ours, theirs = data["nomadkv"], data["redis"]
    assert ours["rss_loaded_bytes"] > ours["rss_empty_bytes"] > 0
    assert theirs["rss_loaded_bytes"] > 0
    assert data["rss_ratio"] == pytest.approx(ours["rss_loaded_bytes"] / theirs["rss_loaded_bytes"])
    assert ours["restart_from_log_seconds"] > 0
    assert ours["restart_from_snapshot_seconds"] > 0
    assert ours["snapshot_method"] == "SAVE"
    assert ours["snapshot_bytes"] > 3000 * 16 // 2  # random values barely compress
    assert "RSS loaded" in out
