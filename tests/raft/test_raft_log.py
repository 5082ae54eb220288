"""RaftLog and MemoryStorage: the log matching rules, truncation, compaction, size limits."""

from __future__ import annotations

import pytest

from nomadkv.raft import (
    CompactedError,
    ConfState,
    Entry,
    InvariantViolation,
    MemoryStorage,
    Snapshot,
    SnapshotMeta,
    UnavailableError,
)
from nomadkv.raft.entry import NO_LIMIT, limit_size
from nomadkv.raft.log import RaftLog


def entries(first: int, *terms: int, size: int = 0) -> list[Entry]:
    return [Entry(first + i, t, data=b"x" * size) for i, t in enumerate(terms)]


def stored_log(*terms: int) -> RaftLog:
    storage = MemoryStorage()
    storage.append(entries(1, *terms))
    return RaftLog(storage)


def test_term_of_unknown_indexes_is_zero() -> None:
    log = stored_log(1, 1, 2)
    assert [log.term(i) for i in range(5)] == [0, 1, 1, 2, 0]
    log.append(entries(4, 3))
    assert log.term(4) == 3
    assert log.last_index() == 4


def test_find_conflict_bisects_to_the_first_mismatch() -> None:
    log = stored_log(1, 1, 2, 2, 2, 3)
    assert log.find_conflict(tuple(entries(1, 1, 1, 2))) == 0
    assert log.find_conflict(tuple(entries(4, 2, 2, 3, 3, 3))) == 7
    assert log.find_conflict(tuple(entries(3, 2, 4, 4, 4))) == 4
    assert log.find_conflict(tuple(entries(2, 5, 5))) == 2


def test_find_conflict_by_term_skips_whole_terms() -> None:
    log = stored_log(1, 1, 2, 2, 2, 5, 5)
    assert log.find_conflict_by_term(7, 4) == 5
    assert log.find_conflict_by_term(7, 2) == 5
    assert log.find_conflict_by_term(7, 1) == 2
    assert log.find_conflict_by_term(100, 9) == 7
    assert log.find_conflict_by_term(3, 9) == 3


def test_maybe_append_follows_the_leader() -> None:
    log = stored_log(1, 1, 2)
    assert log.maybe_append(3, 1, 0, tuple(entries(4, 2))) is None  # prev term mismatch
    assert log.maybe_append(3, 2, 2, tuple(entries(4, 3, 3))) == 5
    assert log.commit_index == 2
    # A new leader overwrites the uncommitted suffix from index 4.
    assert log.maybe_append(3, 2, 4, tuple(entries(4, 4))) == 4
    assert [e.term for e in log.slice(1, log.last_index() + 1, NO_LIMIT)] == [1, 1, 2, 4]
    assert log.commit_index == 4


def test_committed_entries_are_never_overwritten() -> None:
    log = stored_log(1, 1, 2)
    log.commit_to(3)
    with pytest.raises(InvariantViolation, match="conflicts with committed"):
        log.maybe_append(2, 1, 3, tuple(entries(3, 3)))


def test_figure8_rule_commits_only_current_term_entries() -> None:
    log = stored_log(2, 2, 4)
    assert not log.maybe_commit(2, 4)  # an older term's entry is not committed by counting
    assert log.maybe_commit(3, 4)
    assert log.commit_index == 3


def test_vote_goes_to_logs_at_least_as_up_to_date() -> None:
    log = stored_log(1, 2, 2)
    assert log.is_up_to_date(3, 2)
    assert log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_slice_spans_storage_and_unstable_and_honours_size() -> None:
    storage = MemoryStorage()
    storage.append(entries(1, 1, 1, 1, size=10))
    log = RaftLog(storage)
    log.append(entries(4, 2, 2, size=10))
    assert [e.index for e in log.slice(2, 6, NO_LIMIT)] == [2, 3, 4, 5]
    assert [e.index for e in log.slice(2, 6, 25)] == [2, 3]
    assert [e.index for e in log.slice(3, 6, 25)] == [3, 4]
    assert [e.index for e in log.slice(2, 6, 1)] == [2]


def test_stable_to_ignores_entries_replaced_meanwhile() -> None:
    log = stored_log(1)
    log.append(entries(2, 2, 2))
    log.stable_to(3, 1)
    assert log.unstable_offset == 2
    log.stable_to(2, 2)
    assert log.unstable_offset == 3
    assert [e.index for e in log.unstable] == [3]


def test_restore_and_compaction() -> None:
    storage = MemoryStorage()
    storage.append(entries(1, 1, 1, 2, 2, 3))
    snap = storage.create_snapshot(4, ConfState(voters=(1,)), b"state")
    storage.compact(3)
    assert storage.first_index() == 4
    assert storage.term(3) == 2
    with pytest.raises(CompactedError):
        storage.term(2)
    with pytest.raises(CompactedError):
        storage.entries(3, 5, NO_LIMIT)
    with pytest.raises(UnavailableError):
        storage.term(6)
    log = RaftLog(storage)
    assert log.snapshot() == snap
    restored = Snapshot(SnapshotMeta(9, 4, ConfState(voters=(1,))), b"newer")
    log.restore(restored)
    assert (log.first_index(), log.last_index(), log.commit_index) == (10, 9, 9)
    assert log.term(9) == 4
    assert not log.has_next_committed()
    storage.apply_snapshot(restored)
    log.stable_snap_to(9)
    assert (storage.first_index(), storage.last_index()) == (10, 9)


def test_storage_append_truncates_conflicts_and_skips_compacted() -> None:
    storage = MemoryStorage()
    storage.append(entries(1, 1, 1, 1, 1))
    storage.append(entries(3, 2))
    assert storage.last_index() == 3
    storage.create_snapshot(2, ConfState(voters=(1,)), b"")
    storage.compact(2)
    storage.append(entries(1, 1, 1, 2, 3))
    assert [storage.term(i) for i in range(2, 5)] == [1, 2, 3]
    with pytest.raises(InvariantViolation, match="gap"):
        storage.append(entries(9, 3))


def test_limit_size_keeps_at_least_one_entry() -> None:
    run = entries(1, 1, 1, 1, size=10)
    assert limit_size(run, 1) == run[:1]
    assert limit_size(run, 20) == run[:2]
    assert limit_size(run, 30) == run
    assert limit_size([], 0) == []
