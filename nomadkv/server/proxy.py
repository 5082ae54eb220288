"""proxy-to-leader: a follower forwards commands to the leader and relays the replies.

For clients that do not speak Redis Cluster (``redis-benchmark`` without
``--cluster``, ``redis-cli`` without ``-c``). One connection to the leader's
client port carries every forwarded command of this node, in order; its
replies come back in the same order and go, byte for byte, to the clients
that sent them (``resp.framing`` finds where each reply ends).

The proxy connection speaks RESP2, so a RESP3 client gets RESP2 replies for
proxied commands. When the connection to the leader drops, or the leader
changes, the clients whose commands were in flight are disconnected: their
commands may or may not have run, and only a lost connection says so
honestly.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from nomadkv.resp.framing import FramingError, split_replies

if TYPE_CHECKING:
    from nomadkv.server.client import Client

log = logging.getLogger("nomadkv.proxy")

CLUSTERDOWN = b"-CLUSTERDOWN The cluster is down\r\n"


def encode_command(argv: list[bytes]) -> bytes:
    parts = [b"$%d\r\n%b\r\n" % (len(a), a) for a in argv]
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


class _LeaderConnection(asyncio.Protocol):
    def __init__(self, proxy: LeaderProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            replies, consumed = split_replies(self.buffer)
        except FramingError as exc:
            log.error("unparseable reply from the leader: %s", exc)
            if self.transport is not None:
                self.transport.close()
            return
        self.buffer = self.buffer[consumed:]
        if replies:
            self.proxy.replies_arrived(self, replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.connection_lost(self)


class LeaderProxy:
    """Forwards commands from this follower's clients to the current leader."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.target: tuple[str, int] | None = None
        self.connection: _LeaderConnection | None = None
        self.connecting = False
        self.unsent: list[bytes] = []
        # Who waits for each reply in flight, in order; None for our own AUTH.
        self.waiting: deque[Client | None] = deque()
        self.forwarded = 0

    def forward(self, client: Client, argv: list[bytes]) -> None:
        leader = self.node.members.get(self.node.leader_id)
        if leader is None or leader.raft_id == self.node.raft_id:
            client.deliver(CLUSTERDOWN)
            self.node.loop.call_soon(client.commit_done)
            return
        target = (leader.host, leader.port)
        if target != self.target:
            self._drop()
            self.target = target
        if self.connection is None and not self.connecting:
            self._connect()
        data = encode_command(argv)  # before queueing: a failure must not shift the replies
        self.waiting.append(client)
        self._write(data)
        self.forwarded += 1

    def _write(self, data: bytes) -> None:
        connection = self.connection
        if connection is not None and connection.transport is not None:
            connection.transport.write(data)
        else:
            self.unsent.append(data)

    def _connect(self) -> None:
        self.connecting = True
        target = self.target
        password = self.node.config.requirepass

        async def dial() -> None:
            try:
                if target is None:
                    return
                _, connection = await self.node.loop.create_connection(
                    lambda: _LeaderConnection(self), target[0], target[1]
                )
            except OSError as exc:
                log.warning("cannot reach the leader at %s: %s", target, exc)
                self.connecting = False
                self._fail_waiting()
                return
            self.connecting = False
            if target != self.target:
                connection.transport.close()
                return
            self.connection = connection
            if password:
                # Our AUTH's reply is the first one back; nobody waits for it.
                self.waiting.appendleft(None)
                connection.transport.write(encode_command([b"AUTH", password.encode()]))
            unsent, self.unsent = self.unsent, []
            connection.transport.write(b"".join(unsent))

        self.node.loop.create_task(dial())

    def replies_arrived(self, connection: _LeaderConnection, replies: list[bytes]) -> None:
        if connection is not self.connection:
            return
        touched: set[Client] = set()
        for reply in replies:
            client = self.waiting.popleft() if self.waiting else None
            if client is None:
                if reply.startswith(b"-"):
                    log.error("the leader refused the proxy's AUTH: %r", reply[:80])
                continue
            client.deliver(reply)
            touched.add(client)
        for client in touched:
            client.commit_done()

    def connection_lost(self, connection: _LeaderConnection) -> None:
        if connection is self.connection:
            self.connection = None
            self._fail_waiting()

    def _drop(self) -> None:
        """Forget the connection to a former leader."""
        connection, self.connection = self.connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.close()
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        """Commands in flight may or may not have run: disconnect their clients."""
        waiting, self.waiting = self.waiting, deque()
        self.unsent.clear()
        for client in {c for c in waiting if c is not None}:
            client.close()

    def close(self) -> None:
        self._drop()
