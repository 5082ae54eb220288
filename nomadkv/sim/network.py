"""Simulated networks between replicas.

Owns: `SimNetwork`, a seeded lossy network (delay, loss, duplication,
reordering through random delays, symmetric and asymmetric partitions, and
transport feedback such as "unreachable"), and `ManualNetwork`, a FIFO that
scenario tests deliver by hand and cut link by link.
Never: delivers to a crashed replica, or shares message objects between
replicas: every message crosses as bytes through `encode_message` /
`decode_message`, so the codec is exercised on every hop.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from nomadkv.raft import Message, MessageType, decode_message, encode_message
from nomadkv.sim.clock import EventQueue
from nomadkv.sim.cluster import Cluster


@dataclass(slots=True)
class LinkFaults:
    """Per-message fault rates; `heal()` returns to a clean network."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay_min_ms: int = 1
    delay_max_ms: int = 10
    slow: float = 0.0
    slow_max_ms: int = 200


class SimNetwork:
    __slots__ = (
        "blocked",
        "cluster",
        "connections",
        "events",
        "faults",
        "rng",
        "sent",
        "unreachable_reports",
    )

    def __init__(self, events: EventQueue, rng: random.Random) -> None:
        self.events = events
        self.rng = rng
        self.faults = LinkFaults()
        self.blocked: set[tuple[int, int]] = set()
        self.cluster: Cluster
        self.sent = 0
        self.unreachable_reports = True
        # Per node, how many times its connections were torn down (`drop_connections`):
        # a message in flight on an older connection is never delivered.
        self.connections: dict[int, int] = {}

    def attach(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def send(self, message: Message) -> None:
        self.sent += 1
        src, dst = message.sender, message.to
        rng = self.rng
        if (src, dst) in self.blocked or not self.cluster.is_up(dst):
            if self.unreachable_reports and rng.random() < 0.5:
                self.events.after(1, self._report_unreachable, src, dst, message.type)
            return
        faults = self.faults
        if faults.loss and rng.random() < faults.loss:
            return
        data = encode_message(message)
        link = (self.connections.get(src, 0), self.connections.get(dst, 0))
        self.events.after(self._delay(), self._deliver, src, dst, data, link)
        if faults.duplicate and rng.random() < faults.duplicate:
            self.events.after(self._delay(), self._deliver, src, dst, data, link)

    def _delay(self) -> int:
        faults = self.faults
        rng = self.rng
        if faults.slow and rng.random() < faults.slow:
            return rng.randint(faults.delay_max_ms, faults.slow_max_ms)
        return rng.randint(faults.delay_min_ms, faults.delay_max_ms)

    def _deliver(self, src: int, dst: int, data: bytes, link: tuple[int, int]) -> None:
        if (src, dst) in self.blocked:
            return
        if link != (self.connections.get(src, 0), self.connections.get(dst, 0)):
            return  # sent on a connection that has since been torn down
        self.cluster.deliver(decode_message(data))

    def drop_connections(self, node_id: int) -> None:
        """Everything in flight to or from `node_id` is lost, as when its process and
        its TCP connections go away with its disk: nothing the old incarnation said
        (votes, acknowledgements) arrives after it restarted empty."""
        self.connections[node_id] = self.connections.get(node_id, 0) + 1

    def _report_unreachable(self, src: int, dst: int, kind: MessageType) -> None:
        replica = self.cluster.replicas.get(src)
        if replica is None or not replica.up:
            return
        if kind is MessageType.SNAPSHOT:
            replica.raw.report_snapshot(dst, False)
        else:
            replica.raw.report_unreachable(dst)
        self.cluster.process(src)

    # -- partitions --------------------------------------------------------------------------

    def isolate(self, node_id: int, others: list[int]) -> None:
        for other in others:
            if other != node_id:
                self.blocked.add((node_id, other))
                self.blocked.add((other, node_id))

    def split(self, side_a: list[int], side_b: list[int]) -> None:
        for a in side_a:
            for b in side_b:
                self.blocked.add((a, b))
                self.blocked.add((b, a))

    def block_one_way(self, src: int, dsts: list[int]) -> None:
        for dst in dsts:
            if dst != src:
                self.blocked.add((src, dst))

    def heal(self) -> None:
        self.blocked.clear()
        self.faults = LinkFaults()


class ManualNetwork:
    """Messages wait in a FIFO until a test delivers them; cut links drop them."""

    __slots__ = ("cluster", "cut_links", "queue")

    def __init__(self) -> None:
        self.queue: deque[bytes] = deque()
        self.cut_links: set[tuple[int, int]] = set()
        self.cluster: Cluster

    def attach(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def send(self, message: Message) -> None:
        if (message.sender, message.to) not in self.cut_links:
            self.queue.append(encode_message(message))

    def take(self) -> list[Message]:
        """Everything in flight, removed from the network (to drop or deliver selectively)."""
        out = [decode_message(data) for data in self.queue]
        self.queue.clear()
        return out

    def deliver_all(self, max_messages: int = 100_000) -> int:
        """Deliver until the network is quiet; the number of messages delivered."""
        delivered = 0
        while self.queue:
            delivered += 1
            if delivered > max_messages:
                raise RuntimeError("network did not quiesce")
            m = decode_message(self.queue.popleft())
            if (m.sender, m.to) not in self.cut_links:
                self.cluster.deliver(m)
                self.cluster.check()
        return delivered

    def cut(self, a: int, b: int) -> None:
        self.cut_links.add((a, b))
        self.cut_links.add((b, a))

    def isolate(self, node_id: int) -> None:
        for other in self.cluster.replicas:
            if other != node_id:
                self.cut(node_id, other)

    def heal(self) -> None:
        self.cut_links.clear()
