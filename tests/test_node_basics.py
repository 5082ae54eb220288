"""A node serves redis-py over a real socket and keeps acknowledged writes across restarts."""

from __future__ import annotations

import redis

from nomadkv.harness import nomadkv_node


def test_set_get_del(r: redis.Redis) -> None:
    assert r.ping() is True
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    assert r.exists("k", "missing") == 1
    assert r.delete("k", "missing") == 1
    assert r.get("k") is None


def test_pipelined_writes_then_read_see_each_other(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"key{i}", i)
        pipe.get(f"key{i}")
    replies = pipe.execute()
    assert replies[1::2] == [str(i).encode() for i in range(200)]


def test_writes_survive_a_clean_restart(tmp_path) -> None:
    server = nomadkv_node(str(tmp_path / "n")).start()
    client = server.client()
    for i in range(100):
        client.set(f"k{i}", f"v{i}", px=None if i % 2 else 3_600_000)
    assert server.stop() == 0
    server.start()
    client = server.client()
    assert [client.get(f"k{i}") for i in range(100)] == [f"v{i}".encode() for i in range(100)]
    server.stop()
