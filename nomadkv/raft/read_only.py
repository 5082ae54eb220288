"""Linearizable reads on the leader: ReadIndex rounds and the opt-in lease.

Owns: `ReadState` (what the application waits on), the queue of read requests
waiting for a heartbeat round to confirm leadership (thesis §6.4), and the
send ticks of rounds from which the lease is derived.
Never: sends or counts acknowledgements; `nomadkv.raft.core` sends the
heartbeats and computes which round a quorum confirmed.
Invariants: rounds increase within a term; a request is released only after a
round started after it was registered has been acknowledged by a quorum, so
reads registered together share one round (batching).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReadState:
    """Serve the read `context` once the state machine has applied `index`."""

    index: int
    context: bytes


class ReadRequest:
    __slots__ = ("context", "index", "origin", "round")

    def __init__(self, context: bytes, origin: int, index: int, round_: int) -> None:
        self.context = context
        self.origin = origin
        self.index = index
        self.round = round_


class ReadOnly:
    __slots__ = ("confirmed_round", "pending", "round", "round_wanted", "sent_ticks")

    def __init__(self) -> None:
        self.round = 0
        self.confirmed_round = 0
        self.round_wanted = False
        self.pending: deque[ReadRequest] = deque()
        self.sent_ticks: deque[tuple[int, int]] = deque()

    def reset(self) -> None:
        self.round = 0
        self.confirmed_round = 0
        self.round_wanted = False
        self.pending.clear()
        self.sent_ticks.clear()

    def add(self, context: bytes, origin: int, index: int) -> None:
        """Queue a read at commit `index`; the next round to start will confirm it."""
        self.pending.append(ReadRequest(context, origin, index, self.round + 1))
        self.round_wanted = True

    def start_round(self, tick: int, track_ticks: bool) -> int:
        self.round += 1
        self.round_wanted = False
        if track_ticks:
            self.sent_ticks.append((self.round, tick))
        return self.round

    def in_flight(self) -> bool:
        return self.confirmed_round < self.round

    def confirm(self, round_: int) -> tuple[list[ReadRequest], int | None]:
        """A quorum acknowledged `round_`: the released requests and that round's send tick."""
        if round_ <= self.confirmed_round:
            return [], None
        self.confirmed_round = round_
        released = []
        pending = self.pending
        while pending and pending[0].round <= round_:
            released.append(pending.popleft())
        if pending:
            self.round_wanted = True
        sent_tick = None
        ticks = self.sent_ticks
        while ticks and ticks[0][0] <= round_:
            sent_tick = ticks.popleft()[1]
        return released, sent_tick
