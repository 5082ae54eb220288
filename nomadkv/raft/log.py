"""The Raft log of one replica: persisted entries (via Storage) plus an unstable tail.

Owns: `RaftLog`, the view the core has of its log: entries the application
already persisted (read through `Storage`), entries and a snapshot not yet
persisted (`unstable`, handed out in `Ready`), and the commit and applied indexes.
Never: writes storage; the application persists `unstable` and reports back
through `stable_to` / `stable_snap_to`.
Invariants: last_applied <= commit_index <= last_index; an unstable entry at index i
lives at unstable[i - unstable_offset]; committed entries are never truncated
(§5.4: Leader Completeness makes truncating one a bug, so it is checked).
"""

from __future__ import annotations

from nomadkv.raft.entry import Entry, Snapshot, limit_size
from nomadkv.raft.errors import check
from nomadkv.raft.storage import Storage


class RaftLog:
    __slots__ = (
        "commit_index",
        "last_applied",
        "storage",
        "unstable",
        "unstable_offset",
        "unstable_snapshot",
    )

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.unstable: list[Entry] = []
        self.unstable_offset = storage.last_index() + 1
        self.unstable_snapshot: Snapshot | None = None
        self.commit_index = storage.first_index() - 1
        self.last_applied = storage.first_index() - 1

    # -- indexes and terms ----------------------------------------------------------------

    def first_index(self) -> int:
        snap = self.unstable_snapshot
        if snap is not None:
            return snap.meta.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable_offset + len(self.unstable) - 1
        snap = self.unstable_snapshot
        if snap is not None:
            return snap.meta.index
        return self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, index: int) -> int:
        """The term of entry `index`, or 0 when the log does not know it (compacted or absent).

        Term 0 never equals a real entry's term, so "unknown" never matches.
        """
        offset = self.unstable_offset
        if index >= offset:
            k = index - offset
            return self.unstable[k].term if k < len(self.unstable) else 0
        snap = self.unstable_snapshot
        if snap is not None:
            return snap.meta.term if index == snap.meta.index else 0
        storage = self.storage
        if index < storage.first_index() - 1 or index > storage.last_index():
            return 0
        return storage.term(index)

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Raft §5.4.1: a voter refuses a candidate whose log is less up-to-date than its own."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    # -- reading entries ------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi) with first_index() <= lo, cut to max_bytes (at least one)."""
        if lo >= hi:
            return []
        check(lo >= self.first_index(), f"slice({lo}) below the first index")
        check(hi <= self.last_index() + 1, f"slice to {hi} beyond the last index")
        offset = self.unstable_offset
        if lo >= offset:
            return limit_size(self.unstable[lo - offset : hi - offset], max_bytes)
        stored = self.storage.entries(lo, min(hi, offset), max_bytes)
        if hi <= offset or len(stored) < min(hi, offset) - lo:
            return stored
        return limit_size(stored + self.unstable[: hi - offset], max_bytes)

    def has_next_committed(self) -> bool:
        if self.unstable_snapshot is not None:
            return False
        return self.commit_index > max(self.last_applied, self.first_index() - 1)

    def next_committed(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet applied, in order (none while a snapshot is pending)."""
        if self.unstable_snapshot is not None:
            return []
        lo = max(self.last_applied + 1, self.first_index())
        return self.slice(lo, self.commit_index + 1, max_bytes)

    def snapshot(self) -> Snapshot:
        snap = self.unstable_snapshot
        return snap if snap is not None else self.storage.snapshot()

    # -- changing the log -----------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Append entries, replacing the tail from entries[0].index on."""
        after = entries[0].index
        check(after > self.commit_index, f"appending at {after} would overwrite committed entries")
        offset = self.unstable_offset
        unstable = self.unstable
        if after == offset + len(unstable):
            unstable.extend(entries)
        elif after <= offset:
            # The new entries replace everything unstable and part of what storage holds;
            # the application's next append overwrites storage from `after` on.
            self.unstable_offset = after
            self.unstable = list(entries)
        else:
            del unstable[after - offset :]
            unstable.extend(entries)

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """The index of the first entry the log lacks or holds with another term; 0 if none.

        Log Matching (§5.3): equal (index, term) implies equal prefixes, so "already
        present" holds for a prefix of `entries`: check the last one, then bisect.
        """
        last = entries[-1]
        if self.term(last.index) == last.term:
            return 0
        lo, hi = 0, len(entries) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            e = entries[mid]
            if self.term(e.index) == e.term:
                lo = mid + 1
            else:
                hi = mid
        return entries[lo].index

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest i <= index with term(i) <= term (terms never decrease along a log).

        Fast backtracking: the leader skips every entry of a term the follower
        cannot match instead of probing one index per round trip.
        """
        index = min(index, self.last_index())
        lo = self.first_index() - 1
        if index <= lo or self.term(index) <= term:
            return index
        # Invariant: term(hi) > term; answer in [lo, hi).
        hi = index
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.term(mid) <= term:
                lo = mid
            else:
                hi = mid
        return lo

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """Follower side of AppendEntries (§5.3); the new last index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        if entries:
            conflict = self.find_conflict(entries)
            if conflict:
                check(
                    conflict > self.commit_index,
                    f"entry {conflict} conflicts with committed entry (commit {self.commit_index})",
                )
                self.append(list(entries[conflict - index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.commit_index:
            check(index <= self.last_index(), f"commit {index} beyond last index")
            self.commit_index = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Raft §5.4.2 (Figure 8): a leader commits by counting replicas only an entry of
        its own term; earlier entries are committed indirectly with it."""
        if index > self.commit_index and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        check(self.last_applied <= index <= self.commit_index, f"applied {index} out of range")
        self.last_applied = index

    def stable_to(self, index: int, term: int) -> None:
        """The application persisted entries up to (index, term): drop them from unstable."""
        offset = self.unstable_offset
        if index < offset or index >= offset + len(self.unstable):
            return
        if self.unstable[index - offset].term != term:
            return  # replaced by a newer leader's entries since the Ready; keep them
        del self.unstable[: index + 1 - offset]
        self.unstable_offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        snap = self.unstable_snapshot
        if snap is not None and snap.meta.index == index:
            self.unstable_snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot (§7); the application persists it next."""
        index = snapshot.meta.index
        check(index > self.commit_index, "restoring a snapshot below the commit index")
        self.commit_index = index
        self.unstable = []
        self.unstable_offset = index + 1
        self.unstable_snapshot = snapshot
