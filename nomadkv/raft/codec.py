"""Binary encoding of messages, entries and persistent records.

Owns: the wire format peers exchange (`encode_message` / `decode_message`) and
the record formats storage needs (entries, hard state, conf state, snapshot
metadata, conf changes).
Never: trusts its input. Every decoder validates lengths, counts, enum values
and index/term sanity and raises `DecodeError` on garbage; it never returns a
partially decoded value.
Invariants: `decode_x(encode_x(v)) == v`; all integers are little-endian
unsigned; a run of entries is encoded column-wise (terms, types, lengths,
payloads) so that both directions run as C-level loops, not per-entry Python.

Message layout: header `<BBHQQQ` (version, type, flags, to, sender, term), then
the u64 fields present in `flags` (log_term, index, commit, reject_hint), then
context (u32 length + bytes), an entries block, a snapshot chunk.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from itertools import accumulate, repeat
from operator import attrgetter

from nomadkv.raft.confchange import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
)
from nomadkv.raft.entry import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    SnapshotMeta,
    make_entry,
)
from nomadkv.raft.errors import DecodeError
from nomadkv.raft.message import Message, MessageType, SnapshotChunk

VERSION = 1

_HEADER = struct.Struct("<BBHQQQ")
_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ENTRIES_HEADER = struct.Struct("<QIB")
_HARD_STATE = struct.Struct("<BQQQ")
_SNAPSHOT_META = struct.Struct("<QQ")
_CONF_STATE_HEADER = struct.Struct("<BIIII")
_CHUNK_HEADER = struct.Struct("<QBI")
_CONF_CHANGE_HEADER = struct.Struct("<BBI")
_CONF_CHANGE_SINGLE = struct.Struct("<BQ")

_F_LOG_TERM = 1
_F_INDEX = 2
_F_COMMIT = 4
_F_REJECT = 8
_F_REJECT_HINT = 16
_F_CONTEXT = 32
_F_ENTRIES = 64
_F_SNAPSHOT = 128
_F_ALL = 255

_E_UNIFORM_TERM = 1
_E_TYPES = 2
_E_ALL = 3

_MAX_U64 = (1 << 64) - 1
_MESSAGE_TYPES = {t.value: t for t in MessageType}
_ENTRY_TYPES = (EntryType.NORMAL, EntryType.CONF_CHANGE)
_term_of = attrgetter("term")
_type_of = attrgetter("type")
_data_of = attrgetter("data")


class _Reader:
    """A cursor over bytes that turns every short read into a DecodeError."""

    __slots__ = ("buf", "pos", "what")

    def __init__(self, buf: bytes, what: str) -> None:
        self.buf = buf
        self.pos = 0
        self.what = what

    def fail(self, why: str) -> DecodeError:
        return DecodeError(f"invalid {self.what}: {why} (at byte {self.pos} of {len(self.buf)})")

    def unpack(self, st: struct.Struct) -> tuple[int, ...]:
        if self.pos + st.size > len(self.buf):
            raise self.fail("truncated")
        values: tuple[int, ...] = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return values

    def u64s(self, count: int) -> tuple[int, ...]:
        size = 8 * count
        if self.pos + size > len(self.buf):
            raise self.fail("truncated")
        values: tuple[int, ...] = struct.unpack_from(f"<{count}Q", self.buf, self.pos)
        self.pos += size
        return values

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.buf):
            raise self.fail("truncated")
        out = self.buf[self.pos : self.pos + size]
        self.pos += size
        return out

    def blob(self) -> bytes:
        (size,) = self.unpack(_U32)
        return self.take(size)

    def finish(self) -> None:
        if self.pos != len(self.buf):
            raise self.fail("trailing bytes")


def _as_bytes(buf: bytes | bytearray | memoryview) -> bytes:
    return buf if type(buf) is bytes else bytes(buf)


# -- entries ---------------------------------------------------------------------------------


def encode_entries(entries: tuple[Entry, ...] | list[Entry]) -> bytes:
    """A run of consecutive entries, column-wise."""
    n = len(entries)
    if n == 0:
        return _ENTRIES_HEADER.pack(0, 0, 0)
    terms = list(map(_term_of, entries))
    flags = 0
    parts: list[bytes] = []
    if terms[0] == terms[-1]:
        flags |= _E_UNIFORM_TERM
        parts.append(_U64.pack(terms[0]))
    else:
        parts.append(struct.pack(f"<{n}Q", *terms))
    types = bytes(map(_type_of, entries))
    if types.count(0) != n:
        flags |= _E_TYPES
        parts.append(types)
    datas = list(map(_data_of, entries))
    parts.append(struct.pack(f"<{n}I", *map(len, datas)))
    parts.extend(datas)
    return _ENTRIES_HEADER.pack(entries[0].index, n, flags) + b"".join(parts)


def _read_entries(r: _Reader) -> list[Entry]:
    first_index, n, flags = r.unpack(_ENTRIES_HEADER)
    if flags & ~_E_ALL:
        raise r.fail(f"unknown entry flags {flags:#x}")
    if n == 0:
        if first_index or flags:
            raise r.fail("empty entry run with a header")
        return []
    if first_index == 0 or first_index + n - 1 > _MAX_U64:
        raise r.fail(f"entry index {first_index} out of range")
    # Every entry costs at least 4 bytes (its length): reject absurd counts before allocating.
    if 4 * n > len(r.buf) - r.pos:
        raise r.fail(f"entry count {n} exceeds the message")
    if flags & _E_UNIFORM_TERM:
        (term,) = r.unpack(_U64)
        if term == 0:
            raise r.fail("entry term 0")
        terms: Iterable[int] = repeat(term, n)
    else:
        term_list = r.u64s(n)
        if term_list[0] == 0 or list(term_list) != sorted(term_list):
            raise r.fail("entry terms must be >= 1 and non-decreasing")
        terms = term_list
    if flags & _E_TYPES:
        raw_types = r.take(n)
        if max(raw_types) >= len(_ENTRY_TYPES):
            raise r.fail(f"unknown entry type {max(raw_types)}")
        types: Iterable[EntryType] = map(_ENTRY_TYPES.__getitem__, raw_types)
    else:
        types = repeat(EntryType.NORMAL, n)
    size = 4 * n
    lengths = struct.unpack_from(f"<{n}I", r.take(size))
    offsets = list(accumulate(lengths, initial=r.pos))
    if offsets[-1] > len(r.buf):
        raise r.fail("entry payloads truncated")
    buf = r.buf
    datas = map(buf.__getitem__, map(slice, offsets[:-1], offsets[1:]))
    r.pos = offsets[-1]
    return list(map(make_entry, range(first_index, first_index + n), terms, types, datas))


def decode_entries(buf: bytes | bytearray | memoryview) -> list[Entry]:
    r = _Reader(_as_bytes(buf), "entries")
    entries = _read_entries(r)
    r.finish()
    return entries


# -- records ---------------------------------------------------------------------------------


def encode_hard_state(hs: HardState) -> bytes:
    return _HARD_STATE.pack(VERSION, hs.term, hs.vote, hs.commit)


def decode_hard_state(buf: bytes | bytearray | memoryview) -> HardState:
    r = _Reader(_as_bytes(buf), "hard state")
    version, term, vote, commit = r.unpack(_HARD_STATE)
    r.finish()
    if version != VERSION:
        raise r.fail(f"unknown version {version}")
    return HardState(term, vote, commit)


def _write_conf_state(cs: ConfState, parts: list[bytes]) -> None:
    groups = (cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next)
    parts.append(_CONF_STATE_HEADER.pack(int(cs.auto_leave), *map(len, groups)))
    for ids in groups:
        if ids:
            parts.append(struct.pack(f"<{len(ids)}Q", *ids))


def _read_conf_state(r: _Reader) -> ConfState:
    auto_leave, *counts = r.unpack(_CONF_STATE_HEADER)
    if auto_leave > 1:
        raise r.fail("auto_leave is not a boolean")
    if 8 * sum(counts) > len(r.buf) - r.pos:
        raise r.fail("member count exceeds the record")
    groups: list[tuple[int, ...]] = []
    for count in counts:
        ids = r.u64s(count) if count else ()
        if ids and (ids[0] == 0 or list(ids) != sorted(set(ids))):
            raise r.fail("member ids must be >= 1, sorted and unique")
        groups.append(ids)
    return ConfState(groups[0], groups[1], groups[2], groups[3], bool(auto_leave))


def encode_conf_state(cs: ConfState) -> bytes:
    parts: list[bytes] = []
    _write_conf_state(cs, parts)
    return b"".join(parts)


def decode_conf_state(buf: bytes | bytearray | memoryview) -> ConfState:
    r = _Reader(_as_bytes(buf), "conf state")
    cs = _read_conf_state(r)
    r.finish()
    return cs


def _write_snapshot_meta(meta: SnapshotMeta, parts: list[bytes]) -> None:
    parts.append(_SNAPSHOT_META.pack(meta.index, meta.term))
    _write_conf_state(meta.conf_state, parts)


def _read_snapshot_meta(r: _Reader) -> SnapshotMeta:
    index, term = r.unpack(_SNAPSHOT_META)
    if (index == 0) != (term == 0):
        raise r.fail("snapshot index and term must both be zero or both be set")
    return SnapshotMeta(index, term, _read_conf_state(r))


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    parts: list[bytes] = []
    _write_snapshot_meta(meta, parts)
    return b"".join(parts)


def decode_snapshot_meta(buf: bytes | bytearray | memoryview) -> SnapshotMeta:
    r = _Reader(_as_bytes(buf), "snapshot meta")
    meta = _read_snapshot_meta(r)
    r.finish()
    return meta


def encode_conf_change(cc: ConfChange) -> bytes:
    parts = [_CONF_CHANGE_HEADER.pack(VERSION, cc.transition, len(cc.changes))]
    parts.extend(_CONF_CHANGE_SINGLE.pack(c.type, c.node_id) for c in cc.changes)
    parts.append(_U32.pack(len(cc.context)))
    parts.append(cc.context)
    return b"".join(parts)


def decode_conf_change(buf: bytes | bytearray | memoryview) -> ConfChange:
    r = _Reader(_as_bytes(buf), "conf change")
    version, transition, n = r.unpack(_CONF_CHANGE_HEADER)
    if version != VERSION:
        raise r.fail(f"unknown version {version}")
    if transition > max(ConfChangeTransition):
        raise r.fail(f"unknown transition {transition}")
    if n * _CONF_CHANGE_SINGLE.size > len(r.buf) - r.pos:
        raise r.fail("change count exceeds the record")
    changes = []
    for _ in range(n):
        kind, node_id = r.unpack(_CONF_CHANGE_SINGLE)
        if kind > max(ConfChangeType) or node_id == 0:
            raise r.fail(f"bad change ({kind}, {node_id})")
        changes.append(ConfChangeSingle(ConfChangeType(kind), node_id))
    context = r.blob()
    r.finish()
    return ConfChange(tuple(changes), ConfChangeTransition(transition), context)


# -- messages --------------------------------------------------------------------------------


def encode_message(m: Message) -> bytes:
    flags = 0
    ints: list[int] = []
    if m.log_term:
        flags |= _F_LOG_TERM
        ints.append(m.log_term)
    if m.index:
        flags |= _F_INDEX
        ints.append(m.index)
    if m.commit:
        flags |= _F_COMMIT
        ints.append(m.commit)
    if m.reject:
        flags |= _F_REJECT
    if m.reject_hint:
        flags |= _F_REJECT_HINT
        ints.append(m.reject_hint)
    tail: list[bytes] = []
    if ints:
        tail.append(struct.pack(f"<{len(ints)}Q", *ints))
    if m.context:
        flags |= _F_CONTEXT
        tail.append(_U32.pack(len(m.context)))
        tail.append(m.context)
    if m.entries:
        flags |= _F_ENTRIES
        tail.append(encode_entries(m.entries))
    chunk = m.snapshot
    if chunk is not None:
        flags |= _F_SNAPSHOT
        _write_snapshot_meta(chunk.meta, tail)
        tail.append(_CHUNK_HEADER.pack(chunk.offset, int(chunk.done), len(chunk.data)))
        tail.append(chunk.data)
    return _HEADER.pack(VERSION, m.type, flags, m.to, m.sender, m.term) + b"".join(tail)


def decode_message(buf: bytes | bytearray | memoryview) -> Message:
    """Parse one message; raises DecodeError on anything a correct peer cannot send."""
    r = _Reader(_as_bytes(buf), "message")
    version, type_code, flags, to, sender, term = r.unpack(_HEADER)
    if version != VERSION:
        raise r.fail(f"unknown version {version}")
    mtype = _MESSAGE_TYPES.get(type_code)
    if mtype is None:
        raise r.fail(f"unknown message type {type_code}")
    if flags & ~_F_ALL:
        raise r.fail(f"unknown flags {flags:#x}")
    if to == 0 or sender == 0:
        raise r.fail("node id 0")
    n_ints = (
        (flags & _F_LOG_TERM)
        + ((flags & _F_INDEX) >> 1)
        + ((flags & _F_COMMIT) >> 2)
        + ((flags & _F_REJECT_HINT) >> 4)
    )
    ints = iter(r.u64s(n_ints))
    log_term = next(ints) if flags & _F_LOG_TERM else 0
    index = next(ints) if flags & _F_INDEX else 0
    commit = next(ints) if flags & _F_COMMIT else 0
    reject_hint = next(ints) if flags & _F_REJECT_HINT else 0
    context = r.blob() if flags & _F_CONTEXT else b""
    entries: tuple[Entry, ...] = ()
    if flags & _F_ENTRIES:
        if mtype is not MessageType.APPEND:
            raise r.fail(f"{mtype.name} carries no entries")
        entries = tuple(_read_entries(r))
        if not entries or entries[0].index != index + 1 or entries[0].term < log_term:
            raise r.fail("entries must directly follow (index, log_term)")
    chunk = None
    if flags & _F_SNAPSHOT:
        if mtype is not MessageType.SNAPSHOT:
            raise r.fail(f"{mtype.name} carries no snapshot")
        meta = _read_snapshot_meta(r)
        offset, done, size = r.unpack(_CHUNK_HEADER)
        if done > 1 or meta.index == 0:
            raise r.fail("bad snapshot chunk")
        chunk = SnapshotChunk(meta, offset, r.take(size), bool(done))
    elif mtype is MessageType.SNAPSHOT:
        raise r.fail("SNAPSHOT without a chunk")
    r.finish()
    return Message(
        mtype,
        to,
        sender,
        term,
        log_term,
        index,
        commit,
        entries,
        bool(flags & _F_REJECT),
        reject_hint,
        context,
        chunk,
    )
