"""RANDOMKEY draws from Keyspace.sample_keys, a copy of the keys retaken once an
eighth of the keyspace changed (at every change while it is small), instead of
walking the dict to a random position: a live key or nil, never a removed one,
and no key present for long is left out."""

from __future__ import annotations

import random

from inprocess import InProcess

from nomadkv.keyspace import SAMPLE_EXACT_BELOW, Keyspace


def test_a_small_keyspace_is_sampled_exactly() -> None:
    ks = Keyspace()
    rng = random.Random(7)
    for step in range(2000):
        key = b"k%d" % rng.randrange(300)
        if rng.random() < 0.6:
            ks.set(key, b"v")
        else:
            ks.delete(key)
        if step % 7 == 0:
            assert sorted(ks.sample_keys()) == sorted(ks.data)


def test_a_large_keyspace_sample_misses_at_most_an_eighth() -> None:
    ks = Keyspace()
    size = 4 * SAMPLE_EXACT_BELOW
    for i in range(size):
        ks.set(b"k%d" % i, b"v")
    rng = random.Random(11)
    retaken = 0
    previous = ks.sample_keys()
    for _ in range(300):
        for _ in range(rng.randrange(1, 200)):
            key = b"k%d" % rng.randrange(2 * size)
            if rng.random() < 0.5:
                ks.set(key, b"v")
            else:
                ks.delete(key)
        sample = ks.sample_keys()
        retaken += sample is not previous
        previous = sample
        missing = ks.data.keys() - set(sample)
        assert len(missing) * 8 <= len(sample)
    assert retaken >= 2  # it is taken again as the keyspace changes


def test_randomkey_returns_live_keys_only() -> None:
    run = InProcess()
    for i in range(SAMPLE_EXACT_BELOW + 500):
        run("SET", f"k{i}", "v")
    run("RANDOMKEY")  # the sample is taken now
    for i in range(0, SAMPLE_EXACT_BELOW + 500, 2):
        run("DEL", f"k{i}")  # half of it is gone: the sample is taken again
    drawn = {run("RANDOMKEY").split(b"\r\n")[1] for _ in range(200)}
    assert len(drawn) > 100 and all(int(key[1:]) % 2 == 1 for key in drawn)
    run("FLUSHALL")
    assert run("RANDOMKEY") == b"$-1\r\n"
