"""The application's handle on one replica: inputs in, `Ready` out, `advance` back.

Owns: `RawNode` (etcd-io/raft's RawNode), `Ready` and `Status`.
Never: does I/O. The caller's loop, for every Ready, in this order:

  1. persist `entries` (replacing any conflicting suffix), `hard_state` and
     `snapshot`; fsync when `must_sync`;
  2. send `messages` (only now: they may depend on what step 1 persisted);
  3. install `snapshot` into the state machine, apply `committed_entries` in
     order, release `read_states` once the state machine reached their index;
  4. call `advance(ready)`.

Invariants: at most one Ready is outstanding; a committed entry is handed out
exactly once; configuration changes take effect in `advance`, when their
entry has been applied.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from nomadkv.raft.codec import decode_conf_change
from nomadkv.raft.confchange import ConfChange
from nomadkv.raft.config import Config
from nomadkv.raft.core import Raft, StateRole
from nomadkv.raft.entry import ConfState, Entry, EntryType, HardState, Snapshot
from nomadkv.raft.errors import check
from nomadkv.raft.message import Message
from nomadkv.raft.read_only import ReadState
from nomadkv.raft.storage import Storage

_type_of = attrgetter("type")


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting when it changes (never persisted)."""

    leader_id: int
    role: StateRole


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the caller must do, in the order of the module docstring."""

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: list[Entry]
    snapshot: Snapshot | None
    committed_entries: list[Entry]
    messages: list[Message]
    read_states: list[ReadState]
    must_sync: bool


@dataclass(frozen=True, slots=True)
class PeerStatus:
    match_index: int
    next_index: int
    state: str
    is_learner: bool
    recent_active: bool
    inflight: int


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of the replica for INFO, metrics and tests (progress: leader only)."""

    id: int
    role: StateRole
    term: int
    vote: int
    leader_id: int
    commit_index: int
    applied_index: int
    first_index: int
    last_index: int
    conf_state: ConfState
    lead_transferee: int
    progress: dict[int, PeerStatus]


class RawNode:
    __slots__ = ("_outstanding", "_prev_hard_state", "_prev_soft_state", "raft")

    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        self.raft = Raft(config, storage, rng)
        self._prev_hard_state = storage.initial_state()[0]
        self._prev_soft_state = self._soft_state()
        self._outstanding: Ready | None = None

    @property
    def id(self) -> int:
        return self.raft.id

    @property
    def leader_id(self) -> int:
        return self.raft.lead

    @property
    def role(self) -> StateRole:
        return self.raft.state

    def _soft_state(self) -> SoftState:
        return SoftState(self.raft.lead, self.raft.state)

    # -- inputs (see Raft for the protocol) ----------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def step(self, message: Message) -> None:
        """Feed a message from a peer. Messages addressed to another node are dropped."""
        if message.to == self.raft.id:
            self.raft.step(message)

    def campaign(self) -> None:
        self.raft.campaign()

    def propose(self, data: bytes) -> int:
        return self.raft.propose(data)

    def propose_batch(self, datas: Sequence[bytes]) -> int:
        return self.raft.propose_batch(datas)

    def propose_conf_change(self, cc: ConfChange) -> int:
        return self.raft.propose_conf_change(cc)

    def read_index(self, context: bytes) -> None:
        self.raft.read_index(context)

    def transfer_leadership(self, to: int) -> None:
        self.raft.transfer_leadership(to)

    def report_unreachable(self, peer: int) -> None:
        self.raft.report_unreachable(peer)

    def report_snapshot(self, peer: int, ok: bool) -> None:
        self.raft.report_snapshot(peer, ok)

    # -- the Ready loop --------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        r = self.raft
        r.flush()
        log = r.log
        if r.msgs or r.read_states or log.unstable or log.unstable_snapshot is not None:
            return True
        if r.hard_state() != self._prev_hard_state:
            return True
        soft = self._prev_soft_state
        if r.lead != soft.leader_id or r.state is not soft.role:
            return True
        return log.has_next_committed()

    def ready(self) -> Ready:
        check(self._outstanding is None, "ready() called again before advance()")
        r = self.raft
        r.flush()
        log = r.log
        soft = self._soft_state()
        soft_changed = soft != self._prev_soft_state
        self._prev_soft_state = soft
        hard = r.hard_state()
        prev = self._prev_hard_state
        entries = list(log.unstable)
        snapshot = log.unstable_snapshot
        messages, r.msgs = r.msgs, []
        read_states, r.read_states = r.read_states, []
        rd = Ready(
            soft_state=soft if soft_changed else None,
            hard_state=hard if hard != prev else None,
            entries=entries,
            snapshot=snapshot,
            committed_entries=log.next_committed(r.config.max_committed_size_per_ready),
            messages=messages,
            read_states=read_states,
            must_sync=bool(entries)
            or snapshot is not None
            or hard.term != prev.term
            or hard.vote != prev.vote,
        )
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The caller persisted, sent and applied everything in `rd`."""
        check(rd is self._outstanding, "advance() with a Ready that is not the outstanding one")
        self._outstanding = None
        r = self.raft
        log = r.log
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.snapshot is not None:
            index = rd.snapshot.meta.index
            log.stable_snap_to(index)
            if log.last_applied < index:
                log.applied_to(index)
        committed = rd.committed_entries
        if committed:
            if EntryType.CONF_CHANGE in map(_type_of, committed):
                for entry in committed:
                    if entry.type is EntryType.CONF_CHANGE:
                        r.apply_conf_change(decode_conf_change(entry.data))
            log.applied_to(committed[-1].index)
            r.maybe_auto_leave_joint()

    # -- inspection ------------------------------------------------------------------------------

    def conf_state(self) -> ConfState:
        """The configuration as of the applied index (store it with a snapshot)."""
        return self.raft.conf_state()

    def status(self) -> Status:
        r = self.raft
        progress: dict[int, PeerStatus] = {}
        if r.state is StateRole.LEADER:
            for node_id, pr in sorted(r.tracker.progress.items()):
                progress[node_id] = PeerStatus(
                    pr.match_index,
                    pr.next_index,
                    pr.state.name,
                    pr.is_learner,
                    pr.recent_active,
                    len(pr.inflights),
                )
        return Status(
            id=r.id,
            role=r.state,
            term=r.term,
            vote=r.voted_for,
            leader_id=r.lead,
            commit_index=r.log.commit_index,
            applied_index=r.log.last_applied,
            first_index=r.log.first_index(),
            last_index=r.log.last_index(),
            conf_state=r.conf_state(),
            lead_transferee=r.lead_transferee,
            progress=progress,
        )
