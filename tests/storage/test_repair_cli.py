"""A node whose log is damaged in the middle refuses to start, says why and
how to repair; `nomadkv repair-log` makes it start with what came before."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

from nomadkv.harness import StartError, nomadkv_node
from nomadkv.storage.log import HEADER_SIZE


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
    segments = sorted(os.listdir(os.path.join(data_dir, "log")))
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

    repair = subprocess.run(
        [sys.executable, "-m", "nomadkv.cli", "repair-log", "--dir", data_dir],
        capture_output=True,
        text=True,
        check=True,
    )
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
    again = subprocess.run(
        [sys.executable, "-m", "nomadkv.cli", "repair-log", "--dir", data_dir],
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stdout.startswith("the log and snapshots are intact")


def test_one_process_at_a_time_on_a_data_directory(tmp_path) -> None:
    data_dir = str(tmp_path / "node")
    server = nomadkv_node(data_dir).start()
    try:
        repair = subprocess.run(
            [sys.executable, "-m", "nomadkv.cli", "repair-log", "--dir", data_dir],
            capture_output=True,
            text=True,
            check=False,
        )
        assert repair.returncode == 1
        assert "is in use by another NomadKV process" in repair.stderr
        second = nomadkv_node(data_dir)
        with pytest.raises(StartError, match=r"cannot start: .* is in use"):
            second.start(timeout_s=30)
        assert server.client().ping()
    finally:
        server.stop()
    subprocess.run(
        [sys.executable, "-m", "nomadkv.cli", "repair-log", "--dir", data_dir], check=True
    )
