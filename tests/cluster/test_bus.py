"""The cluster bus over real loopback sockets: delivery, batching, authentication;
and the highest term kept of each peer from its messages (in process)."""

from __future__ import annotations

import asyncio

from nomadkv.harness import free_port
from nomadkv.raft.message import Message, MessageType
from nomadkv.server.bus import PeerBus
from nomadkv.server.cluster_node import note_sender_term
from nomadkv.storage.identity import PeerIdentities


async def _wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)


def test_peers_exchange_batches_and_strangers_are_refused() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        port = free_port("127.0.0.2")
        received: list[tuple[bytes, bytes, bytes]] = []
        a = PeerBus(loop, b"a", b"secret", lambda p, m: received.append((b"a", p, m)), "127.0.0.2")
        b = PeerBus(loop, b"b", b"secret", lambda p, m: received.append((b"b", p, m)), "127.0.0.3")
        stranger = PeerBus(loop, b"x", b"guess", lambda p, m: None, "127.0.0.4")
        try:
            await a.listen("127.0.0.2", port)
            await b.listen("127.0.0.3", port)
            a.set_peer(b"b", "127.0.0.3", port)
            b.set_peer(b"a", "127.0.0.2", port)
            stranger.set_peer(b"a", "127.0.0.2", port)
            await _wait_for(lambda: a.connected(b"b") and b.connected(b"a"))
            big = bytes(range(256)) * 4096
            assert a.send(b"b", [b"one", b"two"])
            assert b.send(b"a", [big])
            await _wait_for(lambda: len(received) == 3)
            assert sorted(received) == [
                (b"a", b"b", big),
                (b"b", b"a", b"one"),
                (b"b", b"a", b"two"),
            ]
            # The stranger's frames are written right after its AUTH, so they have
            # arrived by the time the acceptor has judged that AUTH.
            await _wait_for(lambda: stranger.send(b"a", [b"evil"]) or a.auth_failures >= 2)
            await _wait_for(lambda: a.auth_failures >= 2)
            assert all(sender != b"x" for _, sender, _ in received)
        finally:
            for bus in (a, b, stranger):
                await bus.close()

    asyncio.run(scenario())


def test_a_stranger_cannot_make_the_bus_allocate_a_huge_array() -> None:
    """hiredis allocates an array when it reads the header: unchecked, 13 bytes
    ("*2147483647") cost seconds of freeing. A stranger's bytes must look like
    the AUTH frame before hiredis reads them."""

    async def scenario() -> None:
        port = free_port("127.0.0.2")
        bus = PeerBus(asyncio.get_running_loop(), b"a", b"secret", lambda p, m: None, "127.0.0.2")
        try:
            await bus.listen("127.0.0.2", port)
            for attack in (b"*2147483647\r\n", b"*6\r\n*2147483647\r\n", b"*6\r\n$3\r\nAUTH"):
                reader, writer = await asyncio.open_connection("127.0.0.2", port)
                await reader.readuntil(b"\r\n")  # NONCE's header
                started = asyncio.get_running_loop().time()
                writer.write(attack + b"\r\n" * (attack.endswith(b"AUTH")) + b"$9999999\r\n")
                await asyncio.wait_for(reader.read(), 2.0)  # closed by the bus
                assert asyncio.get_running_loop().time() - started < 1.0
                writer.close()
            assert bus.auth_failures == 0  # refused before any AUTH was read
        finally:
            await bus.close()

    asyncio.run(scenario())


def test_a_peers_term_is_kept_from_its_messages_but_not_its_pre_votes(tmp_path) -> None:
    identities = PeerIdentities(str(tmp_path))
    identities.record(2, "cafe")
    note_sender_term(identities, Message(MessageType.PRE_VOTE, 1, 2, 9))
    note_sender_term(identities, Message(MessageType.PRE_VOTE_RESP, 1, 2, 9))
    assert identities.highest_term(2) == 0
    note_sender_term(identities, Message(MessageType.APPEND_RESP, 1, 2, 5))
    note_sender_term(identities, Message(MessageType.HEARTBEAT_RESP, 1, 2, 4))
    assert identities.highest_term(2) == 5
    assert PeerIdentities(str(tmp_path)).highest_term(2) == 5  # kept on disk
    identities.record(2, "beef")  # a new incarnation starts from nothing
    assert PeerIdentities(str(tmp_path)).highest_term(2) == 0
