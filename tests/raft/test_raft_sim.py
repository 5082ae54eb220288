"""Random simulation: hundreds of seeds, every fault kind, checkers after every step."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from nomadkv.sim.__main__ import main
from nomadkv.sim.runner import SimParams, SimResult, Simulation, run_seed

SEEDS = range(800)


def run_all(seeds: range) -> list[SimResult]:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_seed, seeds, chunksize=20))


def test_random_seeds_keep_every_safety_and_liveness_property() -> None:
    results = run_all(SEEDS)
    failures = [f"{r.error}\n  replay: {r.replay_line()}" for r in results if not r.ok]
    assert not failures, "\n".join(failures)
    assert sum(r.stats.writes_acked for r in results) > 10 * len(SEEDS)
    assert sum(r.stats.reads_ok for r in results) > 10 * len(SEEDS)


def test_the_seeds_cover_both_cluster_sizes_and_every_fault_kind() -> None:
    params = [SimParams.from_seed(seed) for seed in SEEDS]
    assert {p.nodes for p in params} == {3, 5}
    for flag in (
        "crashes",
        "partitions",
        "lossy",
        "membership",
        "transfers",
        "lease_reads",
        "disk_loss",
    ):
        assert sum(getattr(p, flag) for p in params) > len(params) // 5, flag
    assert sum(p.buggify > 0 for p in params) > len(params) // 2
    assert sum(not p.pre_vote for p in params) > len(params) // 10
    assert sum(not p.check_quorum for p in params) > len(params) // 10
    assert {p.max_size_per_msg for p in params} >= {1, 1 << 20}


def test_one_seed_replays_exactly() -> None:
    transcripts: list[list[str]] = [[], []]
    for transcript in transcripts:
        Simulation(0x5EED, trace=transcript.append).run()
    assert len(transcripts[0]) > 1000
    assert transcripts[0] == transcripts[1]


def test_the_command_line_replays_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "0x5eed"]) == 0
    assert "seed 0x5eed: ok" in capsys.readouterr().out


def test_a_failing_run_prints_the_line_that_replays_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "0", "--count", "10", "--mutation", "vote_log_check"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "replay: python -m nomadkv.sim --seed 0x" in out
    assert "--mutation vote_log_check" in out
