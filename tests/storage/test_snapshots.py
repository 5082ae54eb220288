"""Snapshot files: round trips, and every kind of damage is noticed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from nomadkv.harness import nomadkv_node, wait_until
from nomadkv.keyspace import HashValue, Keyspace, ListValue, SetValue, ZSetValue
from nomadkv.storage.snapshot import (
    CorruptSnapshot,
    list_snapshots,
    prune,
    read_meta,
    read_snapshot,
    remove_abandoned_temporaries,
    snapshot_path,
    verify_snapshot,
    write_snapshot,
)


def sample_keyspace(keys: int = 300) -> Keyspace:
    ks = Keyspace()
    for i in range(keys):
        ks.set(b"s%d" % i, b"value-%d" % i)
    ks.set(b"list", ListValue([b"a", b"b"]))
    ks.set(b"hash", HashValue({b"f": b"v"}))
    ks.set(b"set", SetValue({b"m1", b"m2"}))
    ks.set(b"zset", ZSetValue({b"m": 1.5}))
    for i in range(0, keys, 3):
        ks.set_deadline(b"s%d" % i, 1_900_000_000_000 + i)
    return ks


def restored(path: str) -> Keyspace:
    ks = Keyspace()
    _, chunks = read_snapshot(path)
    for kind, chunk in chunks:
        ks.restore_chunk(kind, chunk)
    return ks


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_keyspace_comes_back_whole(tmp_path) -> None:
    ks = sample_keyspace()
    path = write_snapshot(
        str(tmp_path), 42, 3, ks.snapshot_chunks(chunk_keys=50), {"keys": len(ks)}
    )
    assert path == snapshot_path(str(tmp_path), 42)
    back = restored(path)
    assert back.data == ks.data and back.expires == ks.expires
    assert {k: type(v) for k, v in back.data.items()} == {k: type(v) for k, v in ks.data.items()}
    assert read_meta(path) == {"keys": len(ks), "index": 42, "term": 3}
    assert list_snapshots(str(tmp_path)) == [(42, path)]
    assert not [n for n in os.listdir(tmp_path) if ".tmp." in n]


def test_an_empty_snapshot(tmp_path) -> None:
    path = write_snapshot(str(tmp_path), 0, 0, iter(()))
    assert verify_snapshot(path)["index"] == 0
    assert restored(path).data == {}


@pytest.fixture(scope="module")
def small_snapshot(tmp_path_factory) -> bytes:
    directory = tmp_path_factory.mktemp("snap")
    path = write_snapshot(str(directory), 7, 1, sample_keyspace(40).snapshot_chunks(chunk_keys=10))
    with open(path, "rb") as f:
        return f.read()


def check_refused(tmp_path, content: bytes) -> None:
    path = snapshot_path(str(tmp_path), 7)
    with open(path, "wb") as f:
        f.write(content)
    with pytest.raises(CorruptSnapshot):
        verify_snapshot(path)


def test_no_single_bit_flip_is_misread(tmp_path, small_snapshot: bytes) -> None:
    # A flip either is refused or changes nothing that is read: a few bits of a
    # zstd frame (window size, entropy tables' slack) do not change its output,
    # which the frame's content checksum covers.
    path = snapshot_path(str(tmp_path), 7)
    original = sample_keyspace(40)
    harmless = 0
    for position in range(len(small_snapshot)):
        for bit in range(8):
            damaged = bytearray(small_snapshot)
            damaged[position] ^= 1 << bit
            with open(path, "wb") as f:
                f.write(damaged)
            try:
                back = restored(path)
            except CorruptSnapshot:
                continue
            assert back.data == original.data and back.expires == original.expires
            harmless += 1
    assert harmless < len(small_snapshot)  # almost every flip is refused


def test_every_truncation_is_noticed(tmp_path, small_snapshot: bytes) -> None:
    for length in range(len(small_snapshot)):
        check_refused(tmp_path, small_snapshot[:length])


def test_anything_after_the_end_is_noticed(tmp_path, small_snapshot: bytes) -> None:
    check_refused(tmp_path, small_snapshot + b"\0")
    check_refused(tmp_path, small_snapshot + small_snapshot)


def test_a_snapshot_under_another_index_is_refused(tmp_path, small_snapshot: bytes) -> None:
    path = snapshot_path(str(tmp_path), 8)
    with open(path, "wb") as f:
        f.write(small_snapshot)
    with pytest.raises(CorruptSnapshot, match="index 7"):
        read_meta(path)


def test_a_failed_write_leaves_nothing(tmp_path) -> None:
    def chunks_then_failure():
        yield 0, {b"k": b"v"}
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_snapshot(str(tmp_path), 5, 1, chunks_then_failure())
    assert os.listdir(tmp_path) == []


def test_temporaries_are_ignored_and_removed_once_their_writer_is_gone(tmp_path) -> None:
    good = write_snapshot(str(tmp_path), 3, 1, iter([(0, {b"a": b"1"})]))
    orphan = snapshot_path(str(tmp_path), 9) + f".tmp.{dead_pid()}"
    mine = snapshot_path(str(tmp_path), 10) + f".tmp.{os.getpid()}"
    for path in (orphan, mine):
        with open(path, "wb") as f:
            f.write(b"NKVSNAP2 half written")
    assert list_snapshots(str(tmp_path)) == [(3, good)]
    assert remove_abandoned_temporaries(str(tmp_path)) == [os.path.basename(orphan)]
    assert os.path.exists(mine)
    assert remove_abandoned_temporaries(str(tmp_path), os.getpid()) == [os.path.basename(mine)]


def test_prune_keeps_the_newest(tmp_path) -> None:
    for index in (1, 5, 3, 9):
        write_snapshot(str(tmp_path), index, 1, iter(()))
    prune(str(tmp_path), keep=2)
    assert [i for i, _ in list_snapshots(str(tmp_path))] == [9, 5]


def test_a_failed_automatic_snapshot_waits_before_the_next_try(tmp_path) -> None:
    """As Redis waits 5 s after a failed BGSAVE: retried every second, each failing
    child filled a nearly full disk for a moment (the node's own log write then
    failed) and rolled a new log segment (a bug hunt: 9-21 tries in 20 s)."""
    data_dir = tmp_path / "node"
    server = nomadkv_node(
        str(data_dir), appendfsync="no", snapshot_after_log_bytes=64 * 1024
    ).start()
    try:
        snapshots = data_dir / "snapshots"
        if snapshots.exists():
            shutil.rmtree(snapshots)
        snapshots.write_bytes(b"")  # a file where the directory was: every snapshot fails
        client = server.client()
        client.mset({f"k{i}": "v" * 100 for i in range(2000)})  # 200 kB past the limit
        failed = "snapshot child exited with status"
        wait_until(lambda: failed in server.log_tail(200), 10, "a failed snapshot")
        time.sleep(3.0)  # a window shorter than the delay: no second try may start in it
        assert server.log_tail(400).count(failed) == 1
        client.close()
    finally:
        server.stop()
