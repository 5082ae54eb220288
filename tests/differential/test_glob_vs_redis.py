"""KEYS and SCAN MATCH select the same keys as Redis for random glob patterns,
over keys made of the bytes patterns care about (metacharacters, bytes above
0x7f, NUL, the empty key), and Redis's limit of 1000 nested stars."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from diff_client import RawClient

from nomadkv.harness import ServerProcess, nomadkv_node

ALPHABET = [b"a", b"b", b"-", b"]", b"[", b"^", b"\\", b"*", b"?", b"\x80", b"\xff", b"\x00"]
PATTERN_COUNT = 600


@pytest.fixture(scope="module")
def nomad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = nomadkv_node(str(tmp_path_factory.mktemp("glob")), appendfsync="no").start()
    yield server
    server.stop()


def test_keys_and_scan_match_like_redis(reference: ServerProcess, nomad: ServerProcess) -> None:
    rng = random.Random(2024)
    keys = {b"", *(b"".join(rng.choices(ALPHABET, k=rng.randint(1, 5))) for _ in range(150))}
    keys.add(b"a" * 1200)  # long enough for "*a" * 1001, which Redis refuses to nest into
    patterns = [b"*", b"**", b"", b"\\", b"[", b"[^", b"[]", b"[^]", b"*a" * 1001, b"*a" * 999]
    patterns += [b"".join(rng.choices(ALPHABET, k=rng.randint(0, 7))) for _ in range(PATTERN_COUNT)]
    clients = [RawClient(s.host, s.port) for s in (reference, nomad)]
    try:
        for client in clients:
            assert client.call(b"FLUSHALL") == ("+", b"OK")
            mset = [b"MSET"]
            for key in keys:
                mset += [key, b"v"]
            assert client.call(*mset) == ("+", b"OK")
        for pattern in patterns:
            found = [sorted(k for _, k in c.call(b"KEYS", pattern)[1]) for c in clients]
            assert found[0] == found[1], f"KEYS {pattern!r}"
            scanned = [
                sorted(
                    k
                    for _, k in c.call(b"SCAN", b"0", b"MATCH", pattern, b"COUNT", b"1000")[1][1][1]
                )
                for c in clients
            ]
            assert scanned[0] == scanned[1] == found[0], f"SCAN MATCH {pattern!r}"
    finally:
        for client in clients:
            client.close()
