"""Which snapshot a node starts from and whether the log connects to it;
the operator's repair when it does not."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from nomadkv.storage.log import CorruptLog, Log
from nomadkv.storage.recovery import Chunks, recover, repair
from nomadkv.storage.snapshot import list_snapshots, snapshot_path, write_snapshot


def load_dict(meta: dict[str, Any], chunks: Chunks) -> dict[bytes, Any]:
    state: dict[bytes, Any] = {}
    for _kind, chunk in chunks:
        state.update(chunk)
    return state


class DataDir:
    """A node's data directory built by hand: a log of records 1..n whose payload
    is the index, and snapshots whose state is {b"upto": index}."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.log_dir = os.path.join(self.path, "log")
        self.snapshot_dir = os.path.join(self.path, "snapshots")

    def write_log(self, first: int, last: int, segment_bytes: int = 1024) -> None:
        log = Log(self.log_dir, segment_bytes)
        log.open(first)
        if log.last_index >= first:
            log.truncate_suffix(first)
        for index in range(max(first, log.last_index + 1), last + 1):
            log.append([(index, 1, 1, b"%d" % index)])
        log.close()

    def compact(self, upto: int) -> None:
        log = Log(self.log_dir, 1024)
        log.open()
        log.compact(upto)
        log.close()

    def snapshot(self, index: int) -> str:
        return write_snapshot(self.snapshot_dir, index, 1, iter([(0, {b"upto": index})]))

    def damage_snapshot(self, index: int) -> None:
        path = snapshot_path(self.snapshot_dir, index)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) - 6)
            f.write(b"\xde\xad")

    def recover(self) -> tuple[Any, Log]:
        log = Log(self.log_dir, 1024)
        return recover(log, self.snapshot_dir, load_dict), log


def test_without_a_snapshot_the_whole_log_is_used(tmp_path) -> None:
    d = DataDir(tmp_path)
    d.write_log(1, 50)
    recovered, log = d.recover()
    assert recovered.state is None and recovered.snapshot_index == 0
    assert [r.index for r in log.read(1)] == list(range(1, 51))


def test_the_newest_snapshot_and_the_log_after_it(tmp_path) -> None:
    d = DataDir(tmp_path)
    d.write_log(1, 200)
    d.snapshot(60)
    d.snapshot(120)
    recovered, log = d.recover()
    assert recovered.state == {b"upto": 120} and recovered.snapshot_index == 120
    assert log.first_index <= 121 and log.last_index == 200


def test_a_damaged_newest_snapshot_falls_back_to_the_older_one(tmp_path) -> None:
    d = DataDir(tmp_path)
    d.write_log(1, 200)
    d.snapshot(60)
    d.snapshot(120)
    d.compact(60)  # the node keeps the log since the older snapshot
    d.damage_snapshot(120)
    recovered, log = d.recover()
    assert recovered.snapshot_index == 60 and recovered.state == {b"upto": 60}
    assert log.first_index <= 61 and log.last_index == 200
    assert len(recovered.damaged_snapshots) == 1
    # Set aside, not deleted, and no longer listed (prune will not count it).
    assert os.path.exists(snapshot_path(d.snapshot_dir, 120) + ".damaged")
    assert [i for i, _ in list_snapshots(d.snapshot_dir)] == [60]


def test_a_crash_while_writing_a_snapshot_leaves_the_older_one_in_charge(tmp_path) -> None:
    d = DataDir(tmp_path)
    d.write_log(1, 100)
    d.snapshot(40)
    dead = subprocess.Popen(["true"])
    dead.wait()
    temporary = snapshot_path(d.snapshot_dir, 90) + f".tmp.{dead.pid}"
    with open(temporary, "wb") as f:
        f.write(b"NKVSNAP2 and then the power went out")
    recovered, _log = d.recover()
    assert recovered.snapshot_index == 40
    assert not os.path.exists(temporary)


def test_a_snapshot_ahead_of_the_log_restarts_the_log_after_it(tmp_path) -> None:
    # appendfsync everysec/no and a power loss: the snapshot was durable, the
    # log's tail was not.
    d = DataDir(tmp_path)
    d.write_log(1, 30)
    d.snapshot(80)
    recovered, log = d.recover()
    assert recovered.snapshot_index == 80 and recovered.log_reset
    assert (log.first_index, log.last_index) == (81, 80)
    log.append([(81, 1, 1, b"81")])
    log.close()
    recovered, log = d.recover()
    assert recovered.snapshot_index == 80 and [r.index for r in log.read(81)] == [81]


def test_a_log_without_its_start_and_no_snapshot_is_refused(tmp_path) -> None:
    d = DataDir(tmp_path)
    d.write_log(1, 200)
    d.compact(100)
    with pytest.raises(CorruptLog, match=r"there is no intact snapshot.*repair-log --dir"):
        d.recover()


def test_a_log_compacted_past_the_only_intact_snapshot_is_refused_then_repaired(
    tmp_path,
) -> None:
    d = DataDir(tmp_path)
    d.write_log(1, 300)
    d.snapshot(50)
    d.snapshot(150)
    d.compact(150)  # as if the log had been truncated at the newest snapshot
    d.damage_snapshot(150)
    with pytest.raises(CorruptLog) as refused:
        d.recover()
    message = str(refused.value)
    assert "records 51.." in message and "exist nowhere" in message
    assert "snapshot-00000000000000000150.nkv" in message and "repair-log --dir" in message
    # Nothing was changed by the refusal but setting the damaged snapshot aside.
    assert os.listdir(d.log_dir)

    report = repair(d.path, now=0)
    assert report.log_set_aside and report.records_kept == 0
    recovered, log = d.recover()
    assert recovered.snapshot_index == 50 and recovered.state == {b"upto": 50}
    assert (log.first_index, log.last_index) == (51, 50)
    aside = os.path.join(d.path, "damaged", "19700101T000000Z")
    assert sorted(os.listdir(os.path.join(aside, "log")))  # the log was moved, not deleted


def test_repair_sets_damaged_snapshots_aside(tmp_path) -> None:
    d = DataDir(tmp_path)
    d.write_log(1, 100)
    d.snapshot(40)
    d.snapshot(80)
    d.damage_snapshot(80)
    report = repair(d.path, now=0)
    assert len(report.snapshots_set_aside) == 1 and not report.log_set_aside
    assert [i for i, _ in list_snapshots(d.snapshot_dir)] == [40]
    recovered, log = d.recover()
    assert recovered.snapshot_index == 40 and log.last_index == 100


def test_repair_of_an_intact_directory_changes_nothing(tmp_path) -> None:
    d = DataDir(tmp_path)
    d.write_log(1, 100)
    d.snapshot(40)
    report = repair(d.path, now=0)
    assert not report.changed
    assert report.lines() == ["the log and snapshots are intact: 100 log records"]
    assert not os.path.exists(os.path.join(d.path, "damaged"))
