"""The cluster bus over real loopback sockets: delivery, batching, authentication."""

from __future__ import annotations

import asyncio

from nomadkv.harness import free_port
from nomadkv.server.bus import PeerBus


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
