"""CLUSTER replies parse the way redis-py's cluster client parses Redis's."""

from __future__ import annotations

import hiredis
from redis._parsers.helpers import parse_cluster_nodes
from redis.cluster import parse_cluster_slots

from nomadkv.cluster.topology import (
    Member,
    Topology,
    cluster_nodes,
    cluster_shards,
    cluster_slots,
    node_name,
)

MEMBERS = tuple(Member(i, f"127.0.0.{i + 1}", 7000 + i, 17000 + i) for i in (1, 2, 3))


def _topology(leader: int, me: int = 1) -> Topology:
    return Topology(me, MEMBERS, frozenset({1, 2, 3}), frozenset(), leader, 7, {1: 10, 2: 9})


def _decode(reply: object) -> object:
    reader = hiredis.Reader()
    reader.feed(reply.encode(False))  # type: ignore[attr-defined]
    return reader.gets()


def test_cluster_slots_covers_every_slot_with_the_leader_first() -> None:
    raw = _decode(cluster_slots(_topology(leader=2)))
    assert raw[0][2] == [b"127.0.0.3", 7002, node_name(2).encode(), []]
    slots = parse_cluster_slots(raw)
    assert list(slots) == [(0, 16383)]
    entry = slots[(0, 16383)]
    assert entry["primary"] == ("127.0.0.3", 7002)
    assert sorted(r[1] for r in entry["replicas"]) == [7001, 7003]


def test_cluster_nodes_text_format() -> None:
    text = cluster_nodes(_topology(leader=3, me=1)).decode()
    lines = text.splitlines()
    assert len(lines) == 3 and text.endswith("\n")
    first = lines[0].split(" ")
    assert first[0] == node_name(1) and len(first[0]) == 40
    assert first[1] == "127.0.0.2:7001@17001"
    assert first[2] == "myself,slave" and first[3] == node_name(3)
    third = lines[2].split(" ")
    assert third[2] == "master" and third[3] == "-" and third[8] == "0-16383"
    parsed = parse_cluster_nodes(text)
    assert parsed["127.0.0.4:7003"]["flags"] == "master"
    assert parsed["127.0.0.4:7003"]["slots"] == [["0", "16383"]]


def test_cluster_shards_shape_and_no_leader() -> None:
    shards = _decode(cluster_shards(_topology(leader=1)))
    assert shards[0][0] == b"slots" and shards[0][1] == [0, 16383]
    roles = [dict(zip(n[::2], n[1::2], strict=True))[b"role"] for n in shards[0][3]]
    assert roles == [b"master", b"replica", b"replica"]
    # Without a leader the lowest voter stands in, so clients still see full coverage.
    slots = parse_cluster_slots(_decode(cluster_slots(_topology(leader=0))))
    assert slots[(0, 16383)]["primary"][1] == 7001
