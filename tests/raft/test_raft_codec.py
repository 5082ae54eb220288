"""Codec: every record round-trips, and garbage is rejected with DecodeError, never applied."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nomadkv.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    DecodeError,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    SnapshotChunk,
    SnapshotMeta,
    decode_conf_change,
    decode_conf_state,
    decode_entries,
    decode_hard_state,
    decode_message,
    decode_snapshot_meta,
    encode_conf_change,
    encode_conf_state,
    encode_entries,
    encode_hard_state,
    encode_message,
    encode_snapshot_meta,
)

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
node_ids = st.integers(min_value=1, max_value=(1 << 64) - 1)
small = st.integers(min_value=1, max_value=1 << 40)
id_sets = st.lists(node_ids, max_size=6, unique=True).map(lambda ids: tuple(sorted(ids)))
conf_states = st.builds(ConfState, id_sets, id_sets, id_sets, id_sets, st.booleans())


@st.composite
def entry_runs(draw: st.DrawFn, min_size: int = 0) -> list[Entry]:
    n = draw(st.integers(min_value=min_size, max_value=20))
    first = draw(small)
    term = draw(small)
    entries = []
    for i in range(n):
        term += draw(st.sampled_from((0, 0, 0, 1, 7)))
        kind = draw(st.sampled_from((EntryType.NORMAL, EntryType.NORMAL, EntryType.CONF_CHANGE)))
        entries.append(Entry(first + i, term, kind, draw(st.binary(max_size=40))))
    return entries


snapshot_metas = st.builds(SnapshotMeta, small, small, conf_states)
chunks = st.builds(SnapshotChunk, snapshot_metas, u64, st.binary(max_size=64), st.booleans())


@st.composite
def messages(draw: st.DrawFn) -> Message:
    mtype = draw(st.sampled_from(list(MessageType)))
    fields: dict[str, Any] = {
        "log_term": draw(u64),
        "index": draw(u64),
        "commit": draw(u64),
        "reject": draw(st.booleans()),
        "reject_hint": draw(u64),
        "context": draw(st.binary(max_size=32)),
    }
    if mtype is MessageType.APPEND:
        entries = draw(entry_runs(min_size=0))
        if entries:
            fields["index"] = entries[0].index - 1
            fields["log_term"] = draw(st.integers(min_value=0, max_value=entries[0].term))
        fields["entries"] = tuple(entries)
    if mtype is MessageType.SNAPSHOT:
        fields["snapshot"] = draw(chunks)
    return Message(mtype, draw(node_ids), draw(node_ids), draw(u64), **fields)


@given(messages())
@settings(max_examples=400)
def test_message_round_trip(m: Message) -> None:
    assert decode_message(encode_message(m)) == m


@given(entry_runs())
def test_entries_round_trip(entries: list[Entry]) -> None:
    assert decode_entries(encode_entries(entries)) == entries


def test_uniform_term_entries_are_compact() -> None:
    entries = [Entry(i, 5, EntryType.NORMAL, b"x" * 10) for i in range(1, 101)]
    # header 13 + one term 8 + 100 lengths * 4 + payload: no per-entry index, term or type
    assert len(encode_entries(entries)) == 13 + 8 + 400 + 1000


@given(st.builds(HardState, u64, u64, u64))
def test_hard_state_round_trip(hs: HardState) -> None:
    assert decode_hard_state(encode_hard_state(hs)) == hs


@given(conf_states)
def test_conf_state_round_trip(cs: ConfState) -> None:
    assert decode_conf_state(encode_conf_state(cs)) == cs


@given(snapshot_metas)
def test_snapshot_meta_round_trip(meta: SnapshotMeta) -> None:
    assert decode_snapshot_meta(encode_snapshot_meta(meta)) == meta


changes = st.builds(ConfChangeSingle, st.sampled_from(list(ConfChangeType)), node_ids)


@given(
    st.builds(
        ConfChange,
        st.lists(changes, max_size=5).map(tuple),
        st.sampled_from(list(ConfChangeTransition)),
        st.binary(max_size=30),
    )
)
def test_conf_change_round_trip(cc: ConfChange) -> None:
    assert decode_conf_change(encode_conf_change(cc)) == cc


@given(messages(), st.data())
@settings(max_examples=200)
def test_every_truncation_is_rejected(m: Message, data: st.DataObject) -> None:
    raw = encode_message(m)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(DecodeError):
        decode_message(raw[:cut])


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    try:
        m = decode_message(raw)
    except DecodeError:
        return
    assert decode_message(encode_message(m)) == m


@given(messages(), st.data())
@settings(max_examples=300)
def test_bit_flips_decode_cleanly_or_fail_cleanly(m: Message, data: st.DataObject) -> None:
    raw = bytearray(encode_message(m))
    pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[pos] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    with contextlib.suppress(DecodeError):
        decode_message(bytes(raw))


def _heartbeat() -> bytes:
    return encode_message(Message(MessageType.HEARTBEAT, 2, 1, 3, index=4, commit=9))


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "truncated"),
        (b"\x09" + _heartbeat()[1:], "unknown version"),
        (_heartbeat()[:1] + b"\x63" + _heartbeat()[2:], "unknown message type"),
        (_heartbeat() + b"\x00", "trailing bytes"),
        (
            encode_message(Message(MessageType.HEARTBEAT, 2, 1, 3)).replace(
                struct.pack("<Q", 2), struct.pack("<Q", 0), 1
            ),
            "node id 0",
        ),
    ],
)
def test_garbage_messages_name_the_problem(raw: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_message(raw)


def test_entries_must_follow_the_append_position() -> None:
    entries = (Entry(5, 2),)
    good = Message(MessageType.APPEND, 2, 1, 2, index=4, log_term=2, entries=entries)
    assert decode_message(encode_message(good)) == good
    bad = encode_message(Message(MessageType.APPEND, 2, 1, 2, index=7, log_term=2, entries=entries))
    with pytest.raises(DecodeError, match="directly follow"):
        decode_message(bad)


def test_entries_only_in_appends_and_snapshots_only_in_snapshot_messages() -> None:
    with pytest.raises(DecodeError, match="carries no entries"):
        decode_message(
            encode_message(Message(MessageType.HEARTBEAT, 2, 1, 2, index=4, entries=(Entry(5, 2),)))
        )
    with pytest.raises(DecodeError, match="SNAPSHOT without a chunk"):
        decode_message(encode_message(Message(MessageType.SNAPSHOT, 2, 1, 2)))


def test_huge_entry_count_is_rejected_before_allocating() -> None:
    raw = struct.pack("<QIB", 1, 0xFFFFFFFF, 1) + struct.pack("<Q", 1)
    with pytest.raises(DecodeError, match="exceeds"):
        decode_entries(raw)


def test_decreasing_terms_and_unknown_types_are_rejected() -> None:
    raw = encode_entries([Entry(1, 5), Entry(2, 4)])
    with pytest.raises(DecodeError, match="non-decreasing"):
        decode_entries(raw)
    flipped = bytearray(encode_entries([Entry(1, 5, EntryType.CONF_CHANGE)]))
    flipped[13 + 8] = 9  # the type column follows the header and the uniform term
    with pytest.raises(DecodeError, match="unknown entry type"):
        decode_entries(bytes(flipped))


def test_conf_state_ids_must_be_sorted_and_unique() -> None:
    raw = struct.pack("<BIIII", 0, 2, 0, 0, 0) + struct.pack("<2Q", 3, 2)
    with pytest.raises(DecodeError, match="sorted and unique"):
        decode_conf_state(raw)
