"""A node whose log is damaged in the middle refuses to start, says why and
how to repair; `nomadkv repair-log` makes it start with what came before."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from itertools import pairwise

import pytest

from nomadkv.harness import StartError, nomadkv_node
from nomadkv.storage.log import HEADER_SIZE
from nomadkv.storage.snapshot import list_snapshots


def repair_log(data_dir: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nomadkv.cli", "repair-log", "--dir", data_dir],
        capture_output=True,
        text=True,
        check=check,
    )


def record_starts(path: str) -> list[int]:
    with open(path, "rb") as f:
        data = f.read()
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += HEADER_SIZE + struct.unpack_from("<I", data, pos)[0]
    return starts


def test_damage_in_the_middle_stops_start_up_until_repaired(tmp_path) -> None:
    data_dir = str(tmp_path / "node")
    server = nomadkv_node(data_dir, snapshot_interval_seconds=0).start()
    client = server.client()
    for i in range(40):  # one log entry each: the client waits for every reply
        client.set(f"k{i}", f"v{i}")
    client.close()
    assert server.stop() == 0
    segments = sorted(n for n in os.listdir(os.path.join(data_dir, "log")) if n.endswith(".seg"))
    segment = os.path.join(data_dir, "log", segments[-1])
    starts = record_starts(segment)
    with open(segment, "r+b") as f:  # damage the 21st write's record
        f.seek(starts[20] + HEADER_SIZE + 5)
        f.write(b"\xff\xfe")

    with pytest.raises(StartError) as refused:
        server.start(timeout_s=30)
    message = str(refused.value)
    assert "cannot start: log segment" in message and "checksum mismatch" in message
    assert f"nomadkv repair-log --dir {os.path.abspath(data_dir)}" in message

    repair = repair_log(data_dir)
    assert "cut the log at" in repair.stdout and "kept 20 records" in repair.stdout
    assert os.listdir(os.path.join(data_dir, "damaged"))

    server.start()
    client = server.client()
    assert (
        client.mget([f"k{i}" for i in range(40)])
        == [f"v{i}".encode() for i in range(20)] + [None] * 20
    )
    client.close()
    assert server.stop() == 0
    again = repair_log(data_dir)
    assert again.stdout.startswith("the log and snapshots are intact")


def test_damage_the_newest_snapshot_covers_costs_no_write_after_it(tmp_path) -> None:
    """The log before the newest snapshot is kept only to fall back on an older one:
    repairing damage there sets those segments aside instead of cutting every write
    after them (a bug hunt lost 300 intact acknowledged writes that way)."""
    data_dir = str(tmp_path / "node")
    server = nomadkv_node(data_dir, log_segment_bytes=4096, snapshot_interval_seconds=0).start()
    client = server.client()
    for batch in ("a", "b", "c"):
        for i in range(300):
            client.set(f"{batch}:{i}", f"{batch}-{i}")
        if batch != "c":
            assert client.save()
    client.close()
    assert server.stop() == 0
    newest = list_snapshots(os.path.join(data_dir, "snapshots"))[0][0]
    log_dir = os.path.join(data_dir, "log")
    segments = sorted(
        (int(name.split(".")[0]), name) for name in os.listdir(log_dir) if name.endswith(".seg")
    )
    covered = [name for (_, name), (following, _) in pairwise(segments) if following <= newest]
    assert len(covered) >= 3, segments
    with open(os.path.join(log_dir, covered[-2]), "r+b") as f:  # a record the snapshot holds
        f.seek(HEADER_SIZE + 10)
        f.write(b"\xff\xfe")

    with pytest.raises(StartError, match=r"checksum mismatch|damaged"):
        server.start(timeout_s=30)
    repair = repair_log(data_dir)
    assert f"that snapshot {newest} holds" in repair.stdout, repair.stdout
    server.start()
    client = server.client()
    keys = [f"{batch}:{i}" for batch in ("a", "b", "c") for i in range(300)]
    assert client.mget(keys) == [k.replace(":", "-").encode() for k in keys]
    client.close()
    assert server.stop() == 0


def test_a_deleted_newest_segment_stops_start_up_until_repaired(tmp_path) -> None:
    """Without log/NEWEST the node would start on the shorter log and the
    acknowledged writes of the deleted segment would be gone without a word."""
    data_dir = str(tmp_path / "node")
    server = nomadkv_node(data_dir, log_segment_bytes=4096, snapshot_interval_seconds=0).start()
    client = server.client()
    for i in range(300):  # one entry each: every reply came after its fsync
        client.set(f"k{i}", f"v{i}")
    client.close()
    assert server.stop() == 0
    log_dir = os.path.join(data_dir, "log")
    newest = max(name for name in os.listdir(log_dir) if name.endswith(".seg"))
    first_lost = int(newest.split(".")[0])
    os.unlink(os.path.join(log_dir, newest))

    with pytest.raises(StartError, match=f"{newest} is missing, and it held records"):
        server.start(timeout_s=30)
    repair = repair_log(data_dir)
    assert f"{newest} is missing (it held durable records)" in repair.stdout, repair.stdout
    server.start()
    client = server.client()
    kept = first_lost - 1  # entry i + 1 is k{i}
    assert client.mget([f"k{i}" for i in range(300)]) == [
        f"v{i}".encode() if i < kept else None for i in range(300)
    ]
    client.close()
    assert server.stop() == 0


def test_one_process_at_a_time_on_a_data_directory(tmp_path) -> None:
    data_dir = str(tmp_path / "node")
    server = nomadkv_node(data_dir).start()
    try:
        repair = repair_log(data_dir, check=False)
        assert repair.returncode == 1
        assert "is in use by another NomadKV process" in repair.stderr
        second = nomadkv_node(data_dir)
        with pytest.raises(StartError, match=r"cannot start: .* is in use"):
            second.start(timeout_s=30)
        assert server.client().ping()
    finally:
        server.stop()
    repair_log(data_dir)
