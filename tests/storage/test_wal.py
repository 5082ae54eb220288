"""The segmented log on its own: appends, reads, terms, truncation, compaction,
and recovery from every kind of damage a crash or a disk can leave behind."""

from __future__ import annotations

import os
import random
import stat
import struct

import pytest

from nomadkv.storage import log as log_module
from nomadkv.storage.log import (
    HEADER_SIZE,
    CorruptLog,
    Log,
    encode_record,
    repair,
    segment_name,
)


def payload_of(index: int, size: int = 40) -> bytes:
    return (b"%08d" % index) * (size // 8) + b"p" * (size % 8)


def filled_log(path, count: int, segment_bytes: int = 1 << 20, term_every: int = 0) -> Log:
    log = Log(str(path), segment_bytes)
    log.open()
    for index in range(1, count + 1):
        term = 1 + (index // term_every if term_every else 0)
        log.append([(index, term, 1, payload_of(index))])
    log.close()
    return log


def reopened(path, segment_bytes: int = 1 << 20, start_index: int = 1) -> Log:
    log = Log(str(path), segment_bytes)
    log.open(start_index)
    return log


def segments(path) -> list[str]:
    return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".seg"))


def indexes(log: Log, lo: int | None = None) -> list[int]:
    return [r.index for r in log.read(log.first_index if lo is None else lo)]


def record_offsets(path: str) -> list[int]:
    with open(path, "rb") as f:
        data = f.read()
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += HEADER_SIZE + struct.unpack_from("<I", data, pos)[0]
    return offsets


def record_offsets_until_zeros(path: str) -> int:
    """Where a segment's records end: the file's size, or where zeros begin."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + HEADER_SIZE <= len(data) and any(data[pos : pos + HEADER_SIZE]):
        pos += HEADER_SIZE + struct.unpack_from("<I", data, pos)[0]
    return pos


def patch(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def append_bytes(path: str, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# -- the write path and reads ---------------------------------------------------


def test_records_come_back_across_segments_and_reopen(tmp_path) -> None:
    log = Log(str(tmp_path), 4096)
    log.open()
    for index in range(1, 301):
        log.append([(index, 7, index % 3, payload_of(index, index % 50))])
    assert len(segments(tmp_path)) > 3
    expected = [(i, 7, i % 3, payload_of(i, i % 50)) for i in range(1, 301)]
    assert [(r.index, r.term, r.kind, r.payload) for r in log.read(1)] == expected
    log.close()
    log = reopened(tmp_path, 4096)
    assert (log.first_index, log.last_index) == (1, 300)
    assert [(r.index, r.term, r.kind, r.payload) for r in log.read(1)] == expected
    assert log.torn_bytes_truncated == 0


def test_reads_of_any_range(tmp_path) -> None:
    log = Log(str(tmp_path), 2048)
    log.open()
    log.append([(i, 1, 1, payload_of(i)) for i in range(1, 201)])
    rng = random.Random(5)
    for _ in range(200):
        lo = rng.randint(1, 201)
        hi = rng.randint(lo, 260)
        assert [r.index for r in log.read(lo, hi)] == list(range(lo, min(hi, 201)))
    with pytest.raises(ValueError, match="compacted"):
        list(log.read(0))


def test_appends_must_continue_the_log(tmp_path) -> None:
    log = Log(str(tmp_path))
    log.open()
    log.append([(1, 1, 1, b"a")])
    with pytest.raises(ValueError):
        log.append([(3, 1, 1, b"c")])
    with pytest.raises(ValueError):
        log.append([(2, 1, 1, b"b"), (4, 1, 1, b"d")])
    assert log.last_index == 1
    assert [r.payload for r in log.read(1)] == [b"a"]


def test_term_at_follows_appends_truncation_compaction_and_reopen(tmp_path) -> None:
    log = Log(str(tmp_path), 1024)
    log.open()
    terms = {}
    for index in range(1, 120):
        terms[index] = 1 + index // 25
        log.append([(index, terms[index], 1, payload_of(index))])
    assert [log.term_at(i) for i in range(1, 120)] == [terms[i] for i in range(1, 120)]
    assert log.term_at(0) is None and log.term_at(120) is None
    log.truncate_suffix(60)
    for index in range(60, 80):
        terms[index] = 9
        log.append([(index, 9, 1, payload_of(index))])
    assert [log.term_at(i) for i in range(1, 80)] == [terms[i] for i in range(1, 80)]
    log.compact(40)
    assert log.first_index > 1
    assert log.term_at(log.first_index - 1) is None
    assert [log.term_at(i) for i in range(log.first_index, 80)] == [
        terms[i] for i in range(log.first_index, 80)
    ]
    log.close()
    log = reopened(tmp_path, 1024)
    assert [log.term_at(i) for i in range(log.first_index, 80)] == [
        terms[i] for i in range(log.first_index, 80)
    ]


def test_reads_and_terms_open_no_file_per_call(tmp_path, monkeypatch) -> None:
    log = filled_log(tmp_path, 2000, segment_bytes=16384)
    log = reopened(tmp_path, 16384)
    opens = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: opens.append(a[0]) or real_open(*a, **k))
    for index in range(1, 2001):
        assert log.term_at(index) == 1
        assert next(log.read(index, index + 1)).index == index
    assert len(opens) <= log.segment_count


# -- truncate_suffix, compact, reset --------------------------------------------


def test_truncate_suffix_inside_and_across_segments(tmp_path) -> None:
    log = filled_log(tmp_path, 300, segment_bytes=2048)
    log = reopened(tmp_path, 2048)
    before = len(segments(tmp_path))
    log.truncate_suffix(295)  # inside the tail segment
    assert log.last_index == 294
    log.truncate_suffix(100)  # across segments
    assert log.last_index == 99
    assert len(segments(tmp_path)) < before
    log.append([(i, 2, 1, b"new%d" % i) for i in range(100, 110)])
    log.close()
    log = reopened(tmp_path, 2048)
    got = [(r.index, r.term, r.payload) for r in log.read(1)]
    assert got[:99] == [(i, 1, payload_of(i)) for i in range(1, 100)]
    assert got[99:] == [(i, 2, b"new%d" % i) for i in range(100, 110)]


def test_truncate_suffix_at_a_segment_boundary_and_of_everything(tmp_path) -> None:
    log = filled_log(tmp_path, 100, segment_bytes=1024)
    log = reopened(tmp_path, 1024)
    second = log._segments[1].first_index
    log.truncate_suffix(second)
    assert log.last_index == second - 1
    assert log.segment_count == 1
    log.append([(second, 3, 1, b"x")])
    log.truncate_suffix(1)
    assert (log.first_index, log.last_index) == (1, 0)
    assert segments(tmp_path) == []
    log.append([(1, 4, 1, b"again")])
    log.close()
    assert [(r.index, r.term, r.payload) for r in reopened(tmp_path, 1024).read(1)] == [
        (1, 4, b"again")
    ]


def test_compact_deletes_only_covered_whole_segments(tmp_path) -> None:
    log = filled_log(tmp_path, 300, segment_bytes=2048)
    log = reopened(tmp_path, 2048)
    firsts = [s.first_index for s in log._segments]
    upto = firsts[3] + 1  # inside the fourth segment
    removed = log.compact(upto)
    assert removed == 3
    assert log.first_index == firsts[3]
    assert indexes(log) == list(range(firsts[3], 301))
    log.append([(301, 1, 1, b"after")])
    assert log.compact(301) == log.compact(0) + len(firsts) - 3
    assert (log.first_index, log.last_index) == (302, 301)
    log.append([(302, 1, 1, b"next")])
    log.close()
    log = reopened(tmp_path, 2048, start_index=302)
    assert indexes(log) == [302]


def test_reset_continues_at_the_given_index(tmp_path) -> None:
    log = filled_log(tmp_path, 50)
    log = reopened(tmp_path)
    log.reset(1000)
    assert segments(tmp_path) == []
    assert (log.first_index, log.last_index) == (1000, 999)
    log.append([(1000, 5, 1, b"x")])
    log.close()
    assert indexes(reopened(tmp_path, start_index=1000)) == [1000]


def test_roll_starts_a_new_segment_at_the_next_append(tmp_path) -> None:
    log = Log(str(tmp_path))
    log.open()
    log.append([(1, 1, 1, b"a")])
    log.roll()
    log.roll()
    assert len(segments(tmp_path)) == 1
    log.append([(2, 1, 1, b"b")])
    assert [os.path.basename(p) for p in segments(tmp_path)] == [
        segment_name(1),
        segment_name(2),
    ]


# -- directory fsyncs ------------------------------------------------------------


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """What each fsync/fdatasync call was for: 'dir' or the file's name."""
    calls: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def describe(fd: int) -> str:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            return "dir"
        return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))

    def fsync(fd: int) -> None:
        calls.append(describe(fd))
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        calls.append(describe(fd))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return calls


def test_a_new_segment_is_durable_before_records_go_into_it(tmp_path, fsynced) -> None:
    log = Log(str(tmp_path / "log"), 1024)
    log.open()
    assert "dir" in fsynced  # the log directory itself was created
    fsynced.clear()
    log.append([(1, 1, 1, b"a" * 1100)])
    assert fsynced == ["dir"]  # first segment: its directory entry
    fsynced.clear()
    log.append([(2, 1, 1, b"b")])  # rolls: the full segment, NEWEST naming it, the new entry
    assert fsynced == [segment_name(1), "NEWEST.tmp", "dir", "dir"]
    fsynced.clear()
    log.sync()  # the new segment's first durable record: NEWEST names it
    assert fsynced == [segment_name(2), "NEWEST.tmp", "dir"]
    fsynced.clear()
    log.append([(3, 1, 1, b"c")])
    log.sync()
    assert fsynced == [segment_name(2)]


def test_unlinks_are_followed_by_a_directory_fsync(tmp_path, fsynced) -> None:
    log = filled_log(tmp_path, 200, segment_bytes=1024)
    log = reopened(tmp_path, 1024)
    for operation in (
        lambda: log.compact(50),
        lambda: log.truncate_suffix(120),
        lambda: log.reset(500),
    ):
        fsynced.clear()
        operation()
        assert fsynced[-1] == "dir"


# -- recovery: torn tails are cut ------------------------------------------------


def torn_case(tmp_path, damage) -> tuple[Log, int]:
    """A 30-record log whose last segment gets ``damage(path)``; reopened."""
    filled_log(tmp_path, 30)
    path = segments(tmp_path)[-1]
    size = os.path.getsize(path)
    damage(path)
    log = reopened(tmp_path)
    return log, size


def test_a_torn_header_is_cut(tmp_path) -> None:
    partial = encode_record(31, 1, 1, b"x" * 50)[: HEADER_SIZE - 6]
    log, size = torn_case(tmp_path, lambda p: append_bytes(p, partial))
    assert log.last_index == 30
    assert log.torn_bytes_truncated == len(partial)
    assert os.path.getsize(segments(tmp_path)[-1]) == size


def test_a_record_cut_short_is_cut(tmp_path) -> None:
    partial = encode_record(31, 1, 1, b"x" * 500)[:300]
    log, size = torn_case(tmp_path, lambda p: append_bytes(p, partial))
    assert log.last_index == 30 and os.path.getsize(segments(tmp_path)[-1]) == size
    log.append([(31, 1, 1, b"after")])
    log.close()
    assert [r.payload for r in reopened(tmp_path).read(31)] == [b"after"]


def test_a_zero_filled_tail_is_cut(tmp_path) -> None:
    log, size = torn_case(tmp_path, lambda p: append_bytes(p, b"\0" * 8192))
    assert log.last_index == 30 and os.path.getsize(segments(tmp_path)[-1]) == size


def synced_log(path, count: int, segment_bytes: int = 1 << 20) -> Log:
    """A log whose records were synced one by one and that was never closed (a crash)."""
    log = Log(str(path), segment_bytes)
    log.open()
    for index in range(1, count + 1):
        log.append([(index, 1, 1, payload_of(index))])
        log.sync()
    return log


def test_sync_keeps_zeros_ahead_that_a_crash_leaves_and_recovery_cuts_silently(
    tmp_path,
) -> None:
    synced_log(tmp_path, 30)
    (path,) = segments(tmp_path)
    records_end = record_offsets_until_zeros(path)
    assert os.path.getsize(path) >= records_end + log_module.PREALLOCATE_BYTES // 2
    log = reopened(tmp_path)
    assert (log.last_index, log.torn_bytes_truncated) == (30, 0)
    assert os.path.getsize(path) == records_end
    log.append([(31, 1, 1, b"after")])
    log.sync()
    assert [r.payload for r in reopened(tmp_path).read(30)] == [payload_of(30), b"after"]


def test_a_record_torn_inside_the_preallocated_zeros_is_reported(tmp_path) -> None:
    synced_log(tmp_path, 30)
    (path,) = segments(tmp_path)
    records_end = record_offsets_until_zeros(path)
    patch(path, records_end, encode_record(31, 1, 1, b"x" * 500)[:300])
    log = reopened(tmp_path)
    assert log.last_index == 30 and log.torn_bytes_truncated > 300
    assert log.torn_problem.endswith(f"at byte {records_end}: checksum mismatch")
    assert os.path.getsize(path) == records_end


def test_only_the_tail_segment_holds_zeros_and_close_cuts_them(tmp_path) -> None:
    log = synced_log(tmp_path, 300, segment_bytes=4096)
    older = segments(tmp_path)[:-1]
    assert len(older) > 3
    assert all(os.path.getsize(p) == record_offsets_until_zeros(p) for p in older)
    assert os.path.getsize(segments(tmp_path)[-1]) > 4096
    log.close()
    assert all(os.path.getsize(p) == record_offsets_until_zeros(p) for p in segments(tmp_path))
    assert indexes(reopened(tmp_path, 4096)) == list(range(1, 301))


def test_a_log_that_is_never_synced_is_never_preallocated(tmp_path) -> None:
    log = Log(str(tmp_path))
    log.open()
    log.append([(i, 1, 1, payload_of(i)) for i in range(1, 31)])
    (path,) = segments(tmp_path)
    assert os.path.getsize(path) == record_offsets_until_zeros(path)


def test_a_last_record_whose_end_never_landed_is_cut(tmp_path) -> None:
    def zero_end_of_last_record(path: str) -> None:
        last = record_offsets(path)[-1]
        patch(
            path, last + HEADER_SIZE + 10, b"\0" * (os.path.getsize(path) - last - HEADER_SIZE - 10)
        )

    log, _ = torn_case(tmp_path, zero_end_of_last_record)
    assert log.last_index == 29
    assert indexes(log) == list(range(1, 30))


def test_a_damaged_last_record_is_cut(tmp_path) -> None:
    def flip_in_last(path: str) -> None:
        last = record_offsets(path)[-1]
        patch(path, last + HEADER_SIZE + 3, b"\xff")

    log, _ = torn_case(tmp_path, flip_in_last)
    assert log.last_index == 29


def test_a_crash_during_a_roll_leaves_an_empty_segment_that_is_dropped(tmp_path) -> None:
    filled_log(tmp_path, 30)
    empty = os.path.join(tmp_path, segment_name(31))
    open(empty, "wb").close()
    log = reopened(tmp_path)
    assert log.last_index == 30 and not os.path.exists(empty)
    log.append([(31, 1, 1, b"x")])
    log.close()
    assert indexes(reopened(tmp_path)) == list(range(1, 32))


@pytest.mark.parametrize(
    "content",
    [b"\0" * 4096, encode_record(31, 1, 1, b"y" * 100)[:60], encode_record(31, 1, 1, b"z")[:-1]],
    ids=["zeros", "torn-first-record", "first-record-one-byte-short"],
)
def test_a_crash_after_a_roll_with_a_partial_first_record(tmp_path, content) -> None:
    filled_log(tmp_path, 30)
    new = os.path.join(tmp_path, segment_name(31))
    with open(new, "wb") as f:
        f.write(content)
    log = reopened(tmp_path)
    assert log.last_index == 30 and not os.path.exists(new)


# -- recovery: damage before the tail is refused --------------------------------


def test_a_bad_record_followed_by_good_ones_is_refused(tmp_path) -> None:
    filled_log(tmp_path, 30)
    path = segments(tmp_path)[-1]
    patch(path, record_offsets(path)[10] + HEADER_SIZE + 2, b"\x00\x01")
    with pytest.raises(CorruptLog, match=r"record 11.*checksum.*repair-log --dir"):
        reopened(tmp_path)
    assert os.path.getsize(path) > 0  # nothing was cut


def test_a_long_damaged_stretch_followed_by_good_records_is_refused(tmp_path) -> None:
    # 400 records' worth of zeros in the middle (far more than any small search window).
    filled_log(tmp_path, 1000)
    path = segments(tmp_path)[-1]
    offsets = record_offsets(path)
    patch(path, offsets[100], b"\0" * (offsets[500] - offsets[100]))
    with pytest.raises(CorruptLog):
        reopened(tmp_path)


def test_a_long_stretch_of_garbage_followed_by_good_records_is_refused(tmp_path) -> None:
    filled_log(tmp_path, 1000)
    path = segments(tmp_path)[-1]
    offsets = record_offsets(path)
    patch(path, offsets[100], random.Random(1).randbytes(offsets[600] - offsets[100]))
    with pytest.raises(CorruptLog):
        reopened(tmp_path)


def test_a_damaged_length_in_the_middle_is_refused(tmp_path) -> None:
    # The length now runs past the end of the file, as a torn write would.
    filled_log(tmp_path, 300)
    path = segments(tmp_path)[-1]
    patch(path, record_offsets(path)[5], struct.pack("<I", 0x7FFFFFF0))
    with pytest.raises(CorruptLog, match="runs past the end"):
        reopened(tmp_path)


def test_a_valid_record_in_the_wrong_place_is_refused(tmp_path) -> None:
    # A record that passes its CRC but repeats an index is not a torn write.
    filled_log(tmp_path, 30)
    append_bytes(segments(tmp_path)[-1], encode_record(25, 1, 1, payload_of(25)))
    with pytest.raises(CorruptLog, match="record 25 where 31 was expected"):
        reopened(tmp_path)


def test_damage_in_an_earlier_segment_is_refused_even_at_its_end(tmp_path) -> None:
    filled_log(tmp_path, 200, segment_bytes=2048)
    first = segments(tmp_path)[0]
    with open(first, "r+b") as f:
        f.truncate(os.path.getsize(first) - 3)
    with pytest.raises(CorruptLog, match=os.path.basename(first)):
        reopened(tmp_path, 2048)


def test_a_missing_segment_is_refused(tmp_path) -> None:
    filled_log(tmp_path, 200, segment_bytes=2048)
    os.unlink(segments(tmp_path)[2])
    with pytest.raises(CorruptLog, match="missing"):
        reopened(tmp_path, 2048)


def test_an_empty_segment_before_others_is_refused(tmp_path) -> None:
    filled_log(tmp_path, 200, segment_bytes=2048)
    with open(segments(tmp_path)[1], "r+b") as f:
        f.truncate(0)
    with pytest.raises(CorruptLog):
        reopened(tmp_path, 2048)


def test_read_notices_a_record_that_changed_after_open(tmp_path) -> None:
    filled_log(tmp_path, 30)
    log = reopened(tmp_path)
    path = segments(tmp_path)[-1]
    patch(path, record_offsets(path)[3] + HEADER_SIZE, b"\xee")
    with pytest.raises(CorruptLog, match="record 4"):
        list(log.read(1))


def test_a_write_that_fails_leaves_no_partial_record(tmp_path, monkeypatch) -> None:
    log = Log(str(tmp_path))
    log.open()
    log.append([(1, 1, 1, b"a")])
    real_pwrite = os.pwrite

    def write_half_then_fail(fd: int, data, offset: int) -> int:
        real_pwrite(fd, bytes(data[: len(data) // 2]), offset)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", write_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        log.append([(2, 1, 1, b"b" * 1000)])
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert log.last_index == 1
    log.append([(2, 1, 1, b"c")])
    log.close()
    assert [r.payload for r in reopened(tmp_path).read(1)] == [b"a", b"c"]


def test_a_disk_too_full_for_the_zeros_ahead_still_syncs_the_records(tmp_path, monkeypatch) -> None:
    """The zeros written ahead of the last record only make fdatasync cheaper: on a
    full disk they are given back and the records synced as they are, rather than
    the node stopping on an "fsync failed" with space left for records."""
    log = Log(str(tmp_path))
    log.open()
    log.append([(1, 1, 1, b"a")])
    real_pwrite = os.pwrite
    zeros = log_module.PREALLOCATE_BYTES // 2

    def no_room_for_zeros(fd: int, data, offset: int) -> int:
        if len(data) >= zeros and not any(bytes(data[:64])):
            real_pwrite(fd, bytes(data[:4096]), offset)  # some landed, then the disk filled
            raise OSError(28, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", no_room_for_zeros)
    log.sync()
    path = segments(tmp_path)[-1]
    assert os.path.getsize(path) == record_offsets(path)[-1] + HEADER_SIZE + 1  # no zeros left
    log.append([(2, 1, 1, b"b")])
    log.sync()
    log.close()
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert [r.payload for r in reopened(tmp_path).read(1)] == [b"a", b"b"]


# -- a lost newest segment (NEWEST) ------------------------------------------------


def test_a_deleted_newest_segment_stops_recovery(tmp_path) -> None:
    """Its records were durable: a log that merely ends earlier must not pass for intact."""
    filled_log(tmp_path, 200, segment_bytes=1024)
    os.unlink(segments(tmp_path)[-1])
    with pytest.raises(CorruptLog, match="is missing, and it held records that had been made"):
        reopened(tmp_path, 1024)


def test_an_emptied_newest_segment_stops_recovery(tmp_path) -> None:
    filled_log(tmp_path, 200, segment_bytes=1024)
    with open(segments(tmp_path)[-1], "r+b") as f:
        f.truncate(0)
    with pytest.raises(CorruptLog, match="holds no record, but it held records"):
        reopened(tmp_path, 1024)


def test_a_newest_segment_never_synced_may_be_lost(tmp_path) -> None:
    """Appended but never synced (a crash before the fsync): not acknowledged,
    so losing the whole segment is a torn write, as before NEWEST."""
    log = Log(str(tmp_path), 1024)
    log.open()
    for index in range(1, 41):
        log.append([(index, 1, 1, payload_of(index))])
    log.sync()
    count = log.segment_count
    while log.segment_count == count:  # into a new segment, which is never synced
        log.append([(log.last_index + 1, 1, 1, payload_of(log.last_index + 1))])
    first_unsynced = log.last_index
    os.close(log._fd)  # a crash: no sync, no close
    newest = segments(tmp_path)[-1]
    assert os.path.basename(newest) == segment_name(first_unsynced)
    os.unlink(newest)
    log = reopened(tmp_path, 1024)
    assert indexes(log) == list(range(1, first_unsynced))
    log.close()


@pytest.mark.parametrize("how", ["compact", "truncate_suffix", "reset"])
def test_segments_deleted_on_purpose_leave_a_log_that_opens(tmp_path, how: str) -> None:
    log = reopened(tmp_path, 1024)
    for index in range(1, 201):
        log.append([(index, 1, 1, payload_of(index))])
    log.sync()
    first_of_newest = int(os.path.basename(segments(tmp_path)[-1]).split(".")[0])
    if how == "compact":
        log.compact(200)  # a snapshot holds everything: every segment goes
    elif how == "truncate_suffix":
        log.truncate_suffix(first_of_newest - 10)  # the newest segment and part of the one before
    else:
        log.reset(500)
    expected = indexes(log)
    log.close()
    log = reopened(tmp_path, 1024, start_index=201 if how == "compact" else 1)
    assert indexes(log) == expected
    log.close()


def test_repair_reports_a_lost_newest_segment_and_the_log_opens_again(tmp_path) -> None:
    filled_log(tmp_path, 200, segment_bytes=1024)
    lost = segments(tmp_path)[-1]
    os.unlink(lost)
    result = repair(str(tmp_path), str(tmp_path / "aside"))
    assert f"{os.path.basename(lost)} is missing (it held durable records)" in result.problem
    log = reopened(tmp_path, 1024)
    first_lost = int(os.path.basename(lost).split(".")[0])
    assert indexes(log) == list(range(1, first_lost))
    log.close()
    assert repair(str(tmp_path), str(tmp_path / "aside")).problem == ""


# -- repair ----------------------------------------------------------------------


def test_repair_cuts_at_the_damage_and_keeps_the_rest_aside(tmp_path) -> None:
    directory = tmp_path / "log"
    filled_log(directory, 300, segment_bytes=2048)
    files = segments(directory)
    damaged = files[2]
    patch(damaged, record_offsets(damaged)[4] + HEADER_SIZE, b"\x00\xff")
    with pytest.raises(CorruptLog):
        reopened(directory, 2048)
    aside = str(tmp_path / "aside")
    result = repair(str(directory), aside)
    assert result.problem.startswith(os.path.basename(damaged))
    assert "checksum" in result.problem
    log = reopened(directory, 2048)
    kept = log.last_index
    assert indexes(log) == list(range(1, kept + 1))
    assert [r.payload for r in log.read(1)] == [payload_of(i) for i in range(1, kept + 1)]
    assert sorted(os.listdir(aside)) == sorted(
        [f"{os.path.basename(damaged)}.from-byte-{os.path.getsize(damaged)}"]
        + [os.path.basename(f) for f in files[3:]]
    )
    assert result.records_kept == kept
    again = repair(str(directory), aside)
    assert again.problem == "" and again.records_kept == kept


def test_repair_of_an_intact_log_changes_nothing(tmp_path) -> None:
    filled_log(tmp_path / "log", 100, segment_bytes=2048)
    before = {p: os.path.getsize(p) for p in segments(tmp_path / "log")}
    result = repair(str(tmp_path / "log"), str(tmp_path / "aside"))
    assert result.problem == "" and result.records_kept == 100
    assert {p: os.path.getsize(p) for p in segments(tmp_path / "log")} == before
    assert not os.path.exists(tmp_path / "aside")


def test_intact_record_search_is_fast_on_a_big_damaged_stretch() -> None:
    # The torn-or-corrupt decision scans what follows the damage at C speed.
    import time

    data = b"\0" * (16 << 20) + random.Random(2).randbytes(16 << 20)
    started = time.perf_counter()
    assert log_module.why_not_torn(data, 0, 5) == ""
    assert time.perf_counter() - started < 10


def test_bytes_after_an_index(tmp_path) -> None:
    log = Log(str(tmp_path), 1024)
    log.open()
    sizes = {}
    for index in range(1, 101):
        sizes[index] = log.append([(index, 1, 1, payload_of(index, index % 30))])
    for index in (0, 1, 37, 99, 100, 150):
        assert log.bytes_after(index) == sum(sizes[i] for i in range(index + 1, 101))
    log.compact(50)
    assert log.bytes_after(0) == log.size_bytes
    assert log.bytes_after(70) == sum(sizes[i] for i in range(71, 101))


def test_a_torn_segment_followed_only_by_an_empty_one_is_the_tail(tmp_path) -> None:
    # Power lost during a roll: the new file's entry landed, nothing else did.
    filled_log(tmp_path, 30)
    append_bytes(segments(tmp_path)[-1], encode_record(31, 1, 1, b"x" * 80)[:40])
    open(os.path.join(tmp_path, segment_name(31)), "wb").close()
    log = reopened(tmp_path)
    assert log.last_index == 30 and len(segments(tmp_path)) == 1
