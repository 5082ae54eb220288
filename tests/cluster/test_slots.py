"""Key slots agree with Redis Cluster's own values."""

from __future__ import annotations

from redis.crc import key_slot as redis_py_key_slot

from nomadkv.cluster.slots import hash_tag, key_slot, slot_of_keys


def test_known_slots_from_the_redis_cluster_spec() -> None:
    # Values from the Redis Cluster specification and `CLUSTER KEYSLOT` of redis-server.
    assert key_slot(b"123456789") == 0x31C3 & 0x3FFF
    assert key_slot(b"foo") == 12182
    assert key_slot(b"bar") == 5061
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"{}x") == key_slot(b"{}x")
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"
    assert hash_tag(b"foo{bar}{zap}") == b"bar"
    assert slot_of_keys([b"{a}1", b"{a}2"]) == key_slot(b"a")
    assert slot_of_keys([b"a", b"b"]) is None


def test_slots_match_redis_py_for_random_keys() -> None:

    for i in range(2000):
        key = f"key:{i * 7919}{{t{i % 13}}}" if i % 3 == 0 else f"k{i}"
        assert key_slot(key.encode()) == redis_py_key_slot(key.encode())
