"""Group commit under appendfsync always, driven turn by turn in process: the
fsync waits while writes keep arriving, but never past GATHER_TURNS_MAX
turns, and no reply leaves before the fsync that covers its write.

In process (the real Node and Client on a uvloop loop, a transport that
records what is written) because what is checked is the order of events
within loop turns, which a test over sockets can only sample."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from nomadkv.config import Config
from nomadkv.server.client import Client
from nomadkv.server.node import GATHER_TURNS_MAX, Node


class RecordingTransport:
    """Just enough of a transport for a Client: records each write with the
    number of fsyncs done by then."""

    def __init__(self, fsyncs: list[int]) -> None:
        self.fsyncs = fsyncs
        self.writes: list[tuple[bytes, int]] = []

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 0)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.writes.append((data, len(self.fsyncs)))

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.fixture
def node_and_fsyncs(tmp_path, monkeypatch) -> Iterator[tuple[Node, list[int]]]:
    """A node with appendfsync always, and the log index each fsync covered (the
    log's ``sync`` does one fdatasync; the log is compiled, so its methods cannot
    be replaced)."""
    loop = uvloop.new_event_loop()
    node = Node(Config(dir=str(tmp_path), http_port=0, appendfsync="always"), loop)
    node.recover()
    fsyncs: list[int] = []
    real_fdatasync = os.fdatasync

    def counted_fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        fsyncs.append(node.log.last_index)

    monkeypatch.setattr(os, "fdatasync", counted_fdatasync)
    yield node, fsyncs
    loop.run_until_complete(node.shutdown())
    loop.close()


def connect(node: Node, fsyncs: list[int]) -> tuple[Client, RecordingTransport]:
    client = Client(node)
    transport = RecordingTransport(fsyncs)
    client.connection_made(transport)  # type: ignore[arg-type]
    return client, transport


def set_request(key: int) -> bytes:
    name = b"k%d" % key
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$1\r\nv\r\n" % (len(name), name)


def run_turns(node: Node, turns: int, each_turn: Any = None) -> None:
    """Run ``turns`` loop turns, calling ``each_turn(turn)`` at the start of each."""
    loop = node.loop

    async def drive() -> None:
        for turn in range(turns):
            if each_turn is not None:
                each_turn(turn)
            await asyncio.sleep(0)

    loop.run_until_complete(drive())


def test_a_lone_write_is_fsynced_on_the_next_turn_and_answered_after_it(
    node_and_fsyncs,
) -> None:
    node, fsyncs = node_and_fsyncs
    client, transport = connect(node, fsyncs)
    client.data_received(set_request(1))
    run_turns(node, 3)
    assert fsyncs == [1]
    assert transport.writes == [(b"+OK\r\n", 1)]


def test_writes_arriving_turn_after_turn_share_an_fsync_but_never_wait_past_the_bound(
    node_and_fsyncs,
) -> None:
    node, fsyncs = node_and_fsyncs
    clients = [connect(node, fsyncs) for _ in range(3 * GATHER_TURNS_MAX)]

    fsyncs_at_turn: list[list[int]] = []

    def one_more_write(turn: int) -> None:
        fsyncs_at_turn.append(list(fsyncs))
        if turn < len(clients):
            clients[turn][0].data_received(set_request(turn))

    # One more write arrives on every turn, from a different client each time.
    # The fsync waits one turn after the first write, then at most
    # GATHER_TURNS_MAX more: it runs in turn GATHER_TURNS_MAX + 1 and covers
    # the writes of turns 0 .. GATHER_TURNS_MAX + 1, though more keep coming.
    bound = GATHER_TURNS_MAX + 2
    run_turns(node, len(clients) + bound, one_more_write)
    assert fsyncs_at_turn[bound - 1] == [], "the fsync waited for the writes still arriving"
    assert fsyncs_at_turn[bound] == [bound], "writes that keep arriving held the fsync back"
    assert fsyncs[-1] == len(clients)
    # Every client answered once, after an fsync that covered its write (log index k + 1).
    for k, (_client, transport) in enumerate(clients):
        ((reply, fsyncs_by_then),) = transport.writes
        assert reply == b"+OK\r\n"
        assert fsyncs[fsyncs_by_then - 1] >= k + 1
