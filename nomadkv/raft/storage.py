"""The storage protocol the Raft core reads persisted state through, and an in-memory one.

Owns: `Storage` (what the core needs from the durable log: etcd-io/raft's
Storage) and `MemoryStorage` (used by the simulator and tests; the server
implements `Storage` over its segmented on-disk log).
Never: decides what to persist; the application writes what `Ready` tells it
(`append`, `set_hard_state`, `apply_snapshot`) and compacts when it likes
(`create_snapshot`, `compact`).
Invariants of MemoryStorage: `_entries[0]` is a dummy holding the index and
term of the latest snapshot; indexes are consecutive; everything at or below
the snapshot index is gone.
"""

from __future__ import annotations

from typing import Protocol

from nomadkv.raft.entry import (
    EMPTY_HARD_STATE,
    EMPTY_SNAPSHOT,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMeta,
    limit_size,
)
from nomadkv.raft.errors import CompactedError, UnavailableError, check


class Storage(Protocol):
    """Read access to the persisted log. Indexes are the Raft log's (first entry is 1)."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the configuration as of the applied index."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), cut to a payload of max_bytes but at least one entry.

        Raises CompactedError if lo < first_index(), UnavailableError if hi > last_index() + 1.
        """
        ...

    def term(self, index: int) -> int:
        """The term of entry `index`, valid for first_index() - 1 <= index <= last_index().

        Raises CompactedError below that range, UnavailableError above it.
        """
        ...

    def first_index(self) -> int:
        """The index of the first entry still available (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """The index of the last persisted entry (the snapshot index if there is none)."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot, sent to followers that need entries already compacted."""
        ...


class MemoryStorage:
    """`Storage` held in memory, plus the write methods an application calls."""

    __slots__ = ("_entries", "_hard_state", "_snapshot")

    def __init__(self) -> None:
        self._hard_state = EMPTY_HARD_STATE
        self._snapshot = EMPTY_SNAPSHOT
        self._entries: list[Entry] = [Entry(0, 0)]

    # -- Storage --------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.meta.conf_state

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise CompactedError(f"entry {lo} is compacted (first index {offset + 1})")
        if hi > offset + len(self._entries):
            raise UnavailableError(f"entry {hi - 1} is beyond the last index")
        return limit_size(self._entries[lo - offset : hi - offset], max_bytes)

    def term(self, index: int) -> int:
        offset = self._entries[0].index
        if index < offset:
            raise CompactedError(f"entry {index} is compacted (first index {offset + 1})")
        k = index - offset
        if k >= len(self._entries):
            raise UnavailableError(f"entry {index} is beyond the last index")
        return self._entries[k].term

    def first_index(self) -> int:
        return self._entries[0].index + 1

    def last_index(self) -> int:
        return self._entries[0].index + len(self._entries) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes ---------------------------------------------------------------------------

    def copy(self) -> MemoryStorage:
        """An independent copy (entries are immutable, so the list is copied shallowly)."""
        other = MemoryStorage()
        other._hard_state = self._hard_state
        other._snapshot = self._snapshot
        other._entries = list(self._entries)
        return other

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Persist `entries`, replacing any existing suffix they conflict with."""
        if not entries:
            return
        offset = self._entries[0].index
        first = entries[0].index
        check(first <= self.last_index() + 1, f"append at {first} leaves a gap")
        if first + len(entries) - 1 <= offset:
            return
        if first <= offset:
            entries = entries[offset + 1 - first :]
            first = offset + 1
        del self._entries[first - offset :]
        self._entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        meta = snapshot.meta
        check(meta.index >= self._snapshot.meta.index, "snapshot is older than the current one")
        self._snapshot = snapshot
        self._entries = [Entry(meta.index, meta.term)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's state as of applied `index` as the latest snapshot."""
        check(index > self._snapshot.meta.index, "snapshot index must move forward")
        check(index <= self.last_index(), "snapshot beyond the last index")
        meta = SnapshotMeta(index, self.term(index), conf_state)
        self._snapshot = Snapshot(meta, data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to `index` (keep it as the dummy); `index` <= the snapshot index."""
        offset = self._entries[0].index
        if index <= offset:
            return
        check(index <= self._snapshot.meta.index, "compacting beyond the snapshot")
        self._entries = self._entries[index - offset :]
