"""What a leader knows about replicating to one follower.

Owns: `Progress` (match_index, next_index and the flow-control state machine
PROBE -> REPLICATE -> SNAPSHOT of etcd-io/raft) and `Inflights`, the bounded
window of AppendEntries in flight.
Never: sends anything; `nomadkv.raft.core` asks it whether to send and tells it
what was sent.
Invariants: match_index < next_index; match_index goes down only when the
follower shows it holds less than it acknowledged (`lost_entries`); in PROBE
at most one append is in flight until the follower answers (flow_paused); in
REPLICATE at most `Inflights.size` appends are in flight, plus one per
heartbeat response (to recover from lost appends); in SNAPSHOT no appends are
sent until the snapshot is installed.
"""

from __future__ import annotations

import enum
from collections import deque

from nomadkv.raft.entry import Snapshot


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


PROBE = ProgressState.PROBE
REPLICATE = ProgressState.REPLICATE
SNAPSHOT = ProgressState.SNAPSHOT


class Inflights:
    """Last indexes of the appends in flight, oldest first, at most `size` of them."""

    __slots__ = ("_last_indexes", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._last_indexes: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._last_indexes)

    def full(self) -> bool:
        return len(self._last_indexes) >= self.size

    def add(self, last_index: int) -> None:
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """Acknowledged up to `index`: forget every append ending at or below it."""
        q = self._last_indexes
        while q and q[0] <= index:
            q.popleft()

    def reset(self) -> None:
        self._last_indexes.clear()


class Progress:
    __slots__ = (
        "flow_paused",
        "inflights",
        "is_learner",
        "match_index",
        "next_index",
        "pending_snapshot",
        "read_round",
        "recent_active",
        "sent_commit",
        "snapshot",
        "snapshot_acked_bytes",
        "snapshot_done_sent",
        "snapshot_next_bytes",
        "snapshot_stall_mark",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, is_learner: bool) -> None:
        self.match_index = 0
        self.next_index = next_index
        self.state = PROBE
        self.flow_paused = False
        self.recent_active = True
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight)
        self.read_round = 0
        self.sent_commit = 0  # the commit index the last append to this peer carried
        self.pending_snapshot = 0
        self.snapshot: Snapshot | None = None
        self.snapshot_next_bytes = 0
        self.snapshot_acked_bytes = 0
        self.snapshot_done_sent = False
        self.snapshot_stall_mark = -1

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.name} match={self.match_index} next={self.next_index}"
            f" inflight={len(self.inflights)} learner={self.is_learner})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.flow_paused = False
        self.pending_snapshot = 0
        self.snapshot = None
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Find the follower's match by sending one append at a time (after a rejection,
        a restart, an unreachable report or a finished snapshot)."""
        if self.state is SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(PROBE)
            self.next_index = max(self.match_index + 1, pending + 1)
        else:
            self._reset_state(PROBE)
            self.next_index = self.match_index + 1

    def become_replicate(self) -> None:
        """The follower's match is known: stream appends optimistically (pipelining)."""
        self._reset_state(REPLICATE)
        self.next_index = self.match_index + 1

    def become_snapshot(self, snapshot: Snapshot) -> None:
        """The entries the follower needs are compacted: send it `snapshot` in chunks."""
        self._reset_state(SNAPSHOT)
        self.pending_snapshot = snapshot.meta.index
        self.snapshot = snapshot
        self.snapshot_next_bytes = 0
        self.snapshot_acked_bytes = 0
        self.snapshot_done_sent = False
        self.snapshot_stall_mark = -1

    def rewind_snapshot(self, offset: int) -> None:
        """Resend the snapshot from `offset` (chunks lost, or the follower lost its buffer)."""
        self.snapshot_acked_bytes = offset
        self.snapshot_next_bytes = offset
        self.snapshot_done_sent = False

    def maybe_update(self, index: int) -> bool:
        """The follower matches up to `index`; False if that is old news."""
        updated = False
        if self.match_index < index:
            self.match_index = index
            updated = True
            self.flow_paused = False
        self.next_index = max(self.next_index, index + 1)
        return updated

    def lost_entries(self, held_index: int) -> bool:
        """The follower says it holds only up to `held_index`, below match_index: it lost
        entries it had acknowledged (a wiped disk, a tail written without fsync), or the
        answer is older than its last acknowledgement. Believe it: match_index goes back
        to `held_index` and the leader probes from there (a snapshot if those entries
        are compacted). If the answer was merely old, this costs one probe round.
        False if there is nothing to do (held_index is not below match_index)."""
        if held_index >= self.match_index:
            return False
        self.match_index = held_index
        if self.state is not SNAPSHOT:  # a snapshot in flight replaces its log anyway
            self._reset_state(PROBE)
            self.next_index = held_index + 1
        return True

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append at prev index `rejected`; back off next_index.

        False if the rejection is stale (an answer to an append sent before a newer one).
        A probe's rejection whose hint is below match_index shows that the follower
        holds less than it acknowledged (`lost_entries`). In REPLICATE such an answer
        is not trusted (reordered answers look the same): a rejection beyond the match
        index leads to a probe, and a follower that lost its log rejects that probe
        (or a heartbeat's commit) in turn.
        """
        if self.state is REPLICATE:
            if rejected <= self.match_index:
                return False
            self.next_index = self.match_index + 1
            return True
        if self.next_index - 1 != rejected:
            return False
        if not self.lost_entries(match_hint):
            self.next_index = max(min(rejected, match_hint + 1), self.match_index + 1)
        self.flow_paused = False
        return True

    def is_paused(self) -> bool:
        return self.state is SNAPSHOT or self.flow_paused

    def sent_entries(self, last_index: int, count: int) -> None:
        """An append was sent: advance next_index optimistically or pause the probe."""
        if self.state is REPLICATE:
            if count:
                self.next_index = last_index + 1
                self.inflights.add(last_index)
            # A full window pauses the flow. A heartbeat response unpauses it for one
            # more append even if the window is still full: if the appends that filled
            # it were lost, that append's rejection puts the follower back in PROBE.
            self.flow_paused = self.inflights.full()
        else:
            self.flow_paused = True
