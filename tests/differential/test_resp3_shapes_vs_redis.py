"""RESP3 reply types, against Redis: type-aware clients (redis-py with
``protocol=3``, Lettuce, go-redis) see a set, a map or verbatim text where
Redis sends one, and an array where Redis sends an array. Contents differ by
design in places (docs/compatibility.md), so the shapes are compared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from diff_client import RawClient, Reply

from nomadkv.harness import ServerProcess, nomadkv_node


def shape(reply: Reply) -> object:
    """The reply's types: the kind of each element, nested, without the values."""
    kind, value = reply
    if kind in "*~%>" and value is not None:
        return (kind, [shape(item) for item in value])
    return kind


def top_kinds(reply: Reply) -> list[str]:
    """The kinds of an aggregate's own elements."""
    return [kind for kind, _ in reply[1]]


@pytest.fixture(scope="module")
def nomad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = nomadkv_node(str(tmp_path_factory.mktemp("resp3")), appendfsync="no").start()
    yield server
    server.stop()


@pytest.fixture
def clients(reference: ServerProcess, nomad: ServerProcess) -> Iterator[list[RawClient]]:
    pair = [RawClient(s.host, s.port) for s in (reference, nomad)]
    for client in pair:
        assert client.call(b"HELLO", b"3")[0] == "%"
    yield pair
    for client in pair:
        client.close()


# Every element of each COMMAND INFO entry: flags, ACL categories, tips and key
# specs are sets; subcommands are a set when there are none, else an array.
@pytest.mark.parametrize("name", ["get", "set", "mget", "ping", "client", "config", "command"])
def test_command_info_entry_types_match_redis(name: str, clients: list[RawClient]) -> None:
    redis_reply, ours = (c.call(b"COMMAND", b"INFO", name.encode()) for c in clients)
    assert top_kinds(ours[1][0]) == top_kinds(redis_reply[1][0])


SAME_SHAPE = [
    [b"PING"],
    [b"TIME"],
    [b"CONFIG", b"GET", b"maxclients"],
    [b"CLIENT", b"INFO"],
    [b"CLIENT", b"LIST"],
    [b"CLIENT", b"GETNAME"],
    [b"INFO", b"server"],
    [b"HELLO"],
    [b"EXISTS", b"resp3-nosuch"],
    [b"TTL", b"nosuch"],
    [b"GET", b"nosuch"],
    [b"MGET", b"nosuch", b"other"],
    [b"SCAN", b"0", b"MATCH", b"resp3-nosuch:*"],
    [b"KEYS", b"nosuch*"],
    [b"INCRBYFLOAT", b"resp3-shape:float", b"1.5"],
    [b"COMMAND", b"COUNT"],
    [b"COMMAND", b"GETKEYS", b"set", b"a", b"b"],
]


@pytest.mark.parametrize("argv", SAME_SHAPE, ids=[b" ".join(a).decode() for a in SAME_SHAPE])
def test_reply_types_match_redis(argv: list[bytes], clients: list[RawClient]) -> None:
    redis_reply, ours = (c.call(*argv) for c in clients)
    if argv[0] == b"HELLO":  # a map whose values differ in length (modules, version)
        assert ours[0] == redis_reply[0] == "%"
        return
    assert shape(ours) == shape(redis_reply)
