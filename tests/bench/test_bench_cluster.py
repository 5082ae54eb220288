"""bench.cluster runs end to end on tiny loads and reports what it measured:
the README's cluster figures come from it, so it must keep working.

One run, as a user runs it (``python -m bench.cluster`` from the repository
root), of every default phase against real servers: one throughput scenario
(SET -P 16 against redis-server with appendfsync always), redis-benchmark
--cluster with its control, one failover, one catch-up of a wiped node.
Results go to a temporary directory, never over bench/results/cluster-latest.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_cluster_benchmark_measures_every_phase(tmp_path: Path) -> None:
    argv = ["--rounds", "1", "--requests", "3000", "--only", "SET -P 16", "--failovers", "1"]
    argv += ["--catchup-keys", "3000", "--catchup-tail-keys", "500"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.cluster", *argv],
        cwd=REPO,
        env={**os.environ, "NOMADKV_BENCH_RESULTS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    with open(tmp_path / "cluster-latest.json") as f:
        data = json.load(f)

    speed = data["throughput"]
    (result,) = speed["results"]
    assert result["scenario"] == "SET -P 16"
    persistence = result["redis_persistence"]
    assert (persistence["appendonly"], persistence["appendfsync"]) == ("yes", "always")
    assert result["ratio"] == pytest.approx(
        result["nomadkv_rps_median"] / result["redis_rps_median"]
    )
    assert result["passed"] == (result["ratio"] >= 0.6)
    assert len(result["followers_cpu_us_per_request"]) == 2
    assert len(result["fdatasync_ms"]) == 1 and result["fdatasync_ms"][0] > 0
    (run,) = result["nomadkv_runs"]
    assert (
        len(run["watched_cpu_s"]) == 2
        and result["leaders"][0]["leader"] not in run["watched_cpu_s"]
    )
    assert " -n 3000 -P 16 -r 100000 -d 3 -t set --csv" in run["command"]
    assert run["command"] in out
    # redis-benchmark --cluster judges NomadKV's CLUSTER NODES as it judges a real
    # Redis Cluster with one master: same exit status, same last line.
    ours, control = (speed["cluster_mode_benchmark"][k] for k in ("nomadkv", "redis_one_master"))
    assert "--cluster" in ours["command"]
    assert ours["exit_status"] == control["exit_status"]
    assert ours["output"].splitlines()[-1] == control["output"].splitlines()[-1]

    failover = data["failover"]
    (repetition,) = failover["repetitions"]
    assert repetition["killed"] != repetition["new_leader"]
    assert repetition["term_after"] > repetition["term_before"]
    assert repetition["leader_seen_s"] > 0 and 0 < repetition["failover_s"] < 30
    assert failover["passed"] == (repetition["failover_s"] < 2)

    catchup = data["catchup"]
    assert catchup["leader_first_index"] > 1  # the leader's log was compacted behind SAVE
    (final,) = catchup["attempts"]
    assert final["method"].startswith("CLUSTER FORGET")
    assert catchup["passed"] == final["caught_up"]
    assert final["caught_up"], catchup["table"]
    assert final["snapshot_installed"]
    assert final["bytes_sent"] >= final["stored_bytes"]["snapshots"] > 3000 * 100 // 2
    assert final["spawn_to_caught_up_s"] >= final["spawn_to_first_byte_s"] > 0

    assert data["machine"]["cores"] == os.cpu_count()
    assert data["missed"] == [
        name
        for name, ok in (
            ("SET -P 16", result["passed"]),
            ("failover", failover["passed"]),
            ("catch-up of a wiped follower", catchup["passed"]),
        )
        if not ok
    ]
