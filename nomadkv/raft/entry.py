"""Log entries and the persistent records of a replica.

Owns: `Entry`, `HardState`, `ConfState`, `SnapshotMeta`, `Snapshot` and the
payload-size limit applied to runs of entries.
Never: does I/O; every record is a frozen, slotted value.
Invariants: an entry's index and term are >= 1; terms never decrease along a log.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from operator import attrgetter

NONE = 0
"""The node id meaning "nobody" (no vote, no known leader). Real ids are >= 1."""

NO_LIMIT = (1 << 63) - 1
"""A byte limit that never binds."""


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What a replica must persist before a message that depends on it leaves (§5.1)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class ConfState:
    """A membership configuration; sorted tuples so equal configs encode equally.

    `voters_outgoing` is non-empty only in a joint configuration (§6), and
    `learners_next` holds voters being demoted to learners when the joint
    configuration is left.
    """

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    voters_outgoing: tuple[int, ...] = ()
    learners_next: tuple[int, ...] = ()
    auto_leave: bool = False

    def members(self) -> frozenset[int]:
        return frozenset(self.voters + self.learners + self.voters_outgoing + self.learners_next)


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    conf_state: ConfState


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine as of `meta.index`, opaque bytes produced by the application (§7)."""

    meta: SnapshotMeta
    data: bytes = b""


EMPTY_SNAPSHOT = Snapshot(SnapshotMeta(0, 0, ConfState()))

_new_object = object.__new__
_set_index = Entry.__dict__["index"].__set__
_set_term = Entry.__dict__["term"].__set__
_set_type = Entry.__dict__["type"].__set__
_set_data = Entry.__dict__["data"].__set__


def make_entry(index: int, term: int, type: EntryType, data: bytes) -> Entry:
    """`Entry(index, term, type, data)` without the frozen dataclass's `__init__`.

    Equal in every way to the constructor's result, about 40% cheaper: the leader
    creates one per proposal and the codec one per decoded entry.
    """
    entry: Entry = _new_object(Entry)
    _set_index(entry, index)
    _set_term(entry, term)
    _set_type(entry, type)
    _set_data(entry, data)
    return entry


_data_of = attrgetter("data")


def payload_bytes(entries: list[Entry]) -> int:
    """The payload size of a run of entries (C-level loops only)."""
    return sum(map(len, map(_data_of, entries)))


def limit_size(entries: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix whose payload fits in `max_bytes`, but at least one entry."""
    if len(entries) <= 1 or max_bytes >= NO_LIMIT:
        return entries
    if payload_bytes(entries) <= max_bytes:
        return entries
    cumulative = list(accumulate(map(len, map(_data_of, entries))))
    return entries[: max(1, bisect_right(cumulative, max_bytes))]
