"""The cluster bus: authenticated, batched peer-to-peer message streams.

Owns the sockets between nodes. Payloads are opaque bytes (encoded Raft
messages); the bus only frames, authenticates and moves them.

- Framing is RESP, so the same hiredis parser serves clients and peers: a
  frame is ``*2 $3 MSG $n <payload>``.
- Each node dials every peer it sends to and keeps that connection for its
  own outgoing messages; what it receives arrives on connections the peers
  dialled. One direction per connection keeps ordering per sender simple.
- Authentication is a challenge-response on the cluster secret: the
  acceptor sends a random nonce, the dialler answers with its node id, its
  advertised address, the identity of its data directory, its current
  Raft term and HMAC-SHA256(secret, nonce | node id | address | identity
  | term). The secret never crosses the wire; a peer without it is
  disconnected before any message is read. A peer whose data directory is
  not the one it showed before, or is older than what it ran with
  (``on_identity`` says why), is refused: ``REFUSED <why>``, then the
  connection closes; the refused side logs it and redials with backoff.
- Outgoing connections bind their source address to the node's own bind
  address (as Redis's ``bind-source-addr``), so per-address firewall rules
  can cut nodes of one machine apart.
- A lost connection is redialled with exponential backoff and jitter;
  messages for an unreachable peer are dropped (Raft retries) and reported.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
from collections.abc import Callable

import hiredis

log = logging.getLogger("nomadkv.bus")

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
HANDSHAKE_TIMEOUT_S = 5.0
# A peer that does not drain its socket is disconnected past this much queued output.
MAX_PENDING_BYTES = 256 * 1024 * 1024
MAX_HANDSHAKE_BYTES = 4096
AUTH_FIELDS = 6  # AUTH, node id, proof, advertised address, identity, term


def handshake_shape(buffer: bytes) -> bool | None:
    """Whether ``buffer`` starts with a frame shaped like the AUTH handshake (an
    array of AUTH_FIELDS bulks), None while it is too short to tell. Checked before
    hiredis reads a stranger's bytes: hiredis allocates an array as soon as it reads
    its header, and freeing 2^31 slots ("*2147483647", 13 bytes) takes seconds."""
    header = b"*%d\r\n" % AUTH_FIELDS
    if not header.startswith(buffer[: len(header)]):
        return False
    pos = len(header)
    for _ in range(AUTH_FIELDS):
        if pos >= len(buffer):
            return None
        if buffer[pos] != 0x24:  # '$'
            return False
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            return None if len(buffer) - pos <= 8 else False
        length = buffer[pos + 1 : end]
        if not length.isdigit() or len(length) > 4:
            return False
        pos = end + 2 + int(length) + 2
    return True


def proof(
    secret: bytes, nonce: bytes, node_id: bytes, advertise: bytes, identity: bytes, term: bytes
) -> bytes:
    message = b"|".join((nonce, node_id, advertise, identity, term))
    return hmac.new(secret, message, hashlib.sha256).hexdigest().encode()


def frame(name: bytes, *fields: bytes) -> bytes:
    parts = [b"$%d\r\n%b\r\n" % (len(f), f) for f in (name, *fields)]
    return b"*%d\r\n%b" % (len(parts), b"".join(parts))


class _Inbound(asyncio.Protocol):
    """A connection a peer dialled: handshake, then a stream of MSG frames."""

    def __init__(self, bus: PeerBus) -> None:
        self.bus = bus
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.nonce = os.urandom(16).hex().encode()
        self.peer_id: bytes | None = None
        self.unauthenticated_bytes = 0
        self.unchecked: bytes | None = b""  # a stranger's first bytes, until checked
        self.handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(frame(b"NONCE", self.nonce))  # type: ignore[attr-defined]
        self.handshake_timer = self.bus.loop.call_later(HANDSHAKE_TIMEOUT_S, transport.close)
        self.bus.inbound.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.bus.inbound.discard(self)
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if self.peer_id is None:
            self.unauthenticated_bytes += len(data)
            if self.unauthenticated_bytes > MAX_HANDSHAKE_BYTES:
                self._drop("handshake too long")
                return
            if self.unchecked is not None:
                self.unchecked += data
                shaped = handshake_shape(self.unchecked)
                if shaped is None:
                    return
                if not shaped:
                    self._drop("unexpected frame")
                    return
                data, self.unchecked = self.unchecked, None
        try:
            reader.feed(data)
            while (item := reader.gets()) is not False:
                if self.peer_id is None:
                    if not self._authenticate(item):
                        return
                    continue
                if not isinstance(item, list) or len(item) != 2 or item[0] != b"MSG":
                    self._drop("unexpected frame")
                    return
                self.bus.deliver(self.peer_id, item[1])
        except hiredis.ProtocolError:
            self._drop("protocol error")

    def _authenticate(self, item: object) -> bool:
        bus = self.bus
        if (
            not isinstance(item, list)
            or len(item) != 6
            or item[0] != b"AUTH"
            or not all(isinstance(field, bytes) for field in item)
            or not hmac.compare_digest(
                item[2], proof(bus.secret, self.nonce, item[1], item[3], item[4], item[5])
            )
            or not item[5].isdigit()
        ):
            bus.auth_failures += 1
            self._drop("failed authentication")
            return False
        refusal = bus.on_identity(item[1], item[4], int(item[5]))
        if refusal is not None:
            bus.identity_refusals += 1
            if self.transport is not None:
                self.transport.write(frame(b"REFUSED", refusal.encode()))
            self._drop(f"refused node {item[1].decode(errors='replace')}: {refusal}")
            return False
        self.peer_id = item[1]
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        if item[3]:
            bus.on_address(item[1], item[3])
        return True

    def _drop(self, why: str) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning("closing bus connection from %s: %s", peer, why)
        if self.transport is not None:
            self.transport.close()


class _Outbound(asyncio.Protocol):
    """A connection this node dialled to one peer, used to send only."""

    def __init__(self, link: _PeerLink) -> None:
        self.link = link
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.ready = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            item = self.reader.gets()
        except hiredis.ProtocolError:
            item = None
        if item is False:
            return
        if isinstance(item, list) and item[:1] == [b"REFUSED"] and len(item) == 2:
            log.error(
                "bus: node %s refused this node: %s",
                self.link.peer_id.decode(),
                item[1].decode(errors="replace"),
            )
        if self.ready or not isinstance(item, list) or item[:1] != [b"NONCE"] or len(item) != 2:
            if self.transport is not None:
                self.transport.close()
            return
        bus = self.link.bus
        if self.transport is None:
            return
        term = b"%d" % bus.current_term()
        token = proof(bus.secret, item[1], bus.node_id, bus.advertise, bus.identity, term)
        self.transport.write(frame(b"AUTH", bus.node_id, token, bus.advertise, bus.identity, term))
        self.ready = True
        self.link.connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.disconnected(self)


class _PeerLink:
    """Dials one peer, keeps the connection up, sends batches on it."""

    def __init__(self, bus: PeerBus, peer_id: bytes, host: str, port: int) -> None:
        self.bus = bus
        self.peer_id = peer_id
        self.host = host
        self.port = port
        self.protocol: _Outbound | None = None
        self.backoff_s = BACKOFF_MIN_S
        self.closed = False
        self.dialling = False
        self.redial: asyncio.TimerHandle | None = None
        self.bytes_sent = 0
        self.connected_at = 0.0

    def dial(self) -> None:
        if self.closed or self.dialling or self.protocol is not None:
            return
        self.dialling = True
        self.bus.loop.create_task(self._dial())

    async def _dial(self) -> None:
        bus = self.bus
        try:
            await asyncio.wait_for(
                bus.loop.create_connection(
                    lambda: _Outbound(self),
                    self.host,
                    self.port,
                    local_addr=(bus.source_host, 0) if bus.source_host else None,
                ),
                HANDSHAKE_TIMEOUT_S,
            )
        except (TimeoutError, OSError) as exc:
            log.debug("dial %s at %s:%d failed: %s", self.peer_id, self.host, self.port, exc)
            self.dialling = False
            self._schedule_redial()
            return
        self.dialling = False

    def connected(self, protocol: _Outbound) -> None:
        self.protocol = protocol
        self.connected_at = self.bus.loop.time()
        log.info("bus connected to %s at %s:%d", self.peer_id.decode(), self.host, self.port)

    def disconnected(self, protocol: _Outbound) -> None:
        if self.protocol is protocol:
            self.protocol = None
            log.info("bus lost %s", self.peer_id.decode())
            # A connection the peer closes at once (it refused this node) keeps the
            # backoff growing; one that lived for a while starts over.
            if self.bus.loop.time() - self.connected_at > BACKOFF_MAX_S:
                self.backoff_s = BACKOFF_MIN_S
        self._schedule_redial()

    def _schedule_redial(self) -> None:
        if self.closed or (self.redial is not None and not self.redial.cancelled()):
            return
        delay = self.backoff_s * (0.5 + random.random())
        self.backoff_s = min(self.backoff_s * 2, BACKOFF_MAX_S)

        def again() -> None:
            self.redial = None
            self.dial()

        self.redial = self.bus.loop.call_later(delay, again)

    def send(self, payloads: list[bytes]) -> bool:
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            self.dial()
            return False
        transport = protocol.transport
        if transport.get_write_buffer_size() > MAX_PENDING_BYTES:
            log.warning("bus to %s is not draining; reconnecting", self.peer_id.decode())
            transport.close()
            return False
        data = b"".join([frame(b"MSG", p) for p in payloads])
        self.bytes_sent += len(data)
        transport.write(data)
        return True

    def close(self) -> None:
        self.closed = True
        if self.redial is not None:
            self.redial.cancel()
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()


class PeerBus:
    """Message streams to and from the other members of the cluster."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        node_id: bytes,
        secret: bytes,
        on_message: Callable[[bytes, bytes], None],
        source_host: str = "",
        advertise: bytes = b"",
        on_address: Callable[[bytes, bytes], None] = lambda peer, address: None,
        on_identity: Callable[[bytes, bytes, int], str | None] = lambda peer, identity, term: None,
        current_term: Callable[[], int] = lambda: 0,
    ) -> None:
        self.loop = loop
        self.node_id = node_id
        self.secret = secret
        self.on_message = on_message
        self.source_host = source_host
        # Sent (authenticated) in the handshake, so that a peer that never heard
        # of this node, one that joined later, can dial back.
        self.advertise = advertise
        self.on_address = on_address
        # This node's data directory (nomadkv.storage.identity) and its current
        # term, sent in every handshake; the identity is set before the first
        # dial. on_identity judges a peer's.
        self.identity = b""
        self.current_term = current_term
        self.on_identity = on_identity
        self.links: dict[bytes, _PeerLink] = {}
        self.inbound: set[_Inbound] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.auth_failures = 0
        self.identity_refusals = 0
        self.messages_received = 0

    async def listen(self, host: str, port: int) -> None:
        server = await self.loop.create_server(
            lambda: _Inbound(self), host, port, reuse_address=True
        )
        self.servers.append(server)

    def set_peer(self, peer_id: bytes, host: str, port: int) -> None:
        """Add a peer, or move it to a new address."""
        link = self.links.get(peer_id)
        if link is not None and (link.host, link.port) == (host, port):
            return
        if link is not None:
            link.close()
        self.links[peer_id] = link = _PeerLink(self, peer_id, host, port)
        link.dial()

    def remove_peer(self, peer_id: bytes) -> None:
        link = self.links.pop(peer_id, None)
        if link is not None:
            link.close()

    def send(self, peer_id: bytes, payloads: list[bytes]) -> bool:
        """Send a batch in one write; False when the peer is not reachable now."""
        link = self.links.get(peer_id)
        return link is not None and link.send(payloads)

    def connected(self, peer_id: bytes) -> bool:
        link = self.links.get(peer_id)
        return link is not None and link.protocol is not None

    def deliver(self, peer_id: bytes, payload: bytes) -> None:
        self.messages_received += 1
        self.on_message(peer_id, payload)

    async def close(self) -> None:
        for link in self.links.values():
            link.close()
        for inbound in list(self.inbound):
            if inbound.transport is not None:
                inbound.transport.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()
