"""The Raft state machine of one replica: elections, replication, reads, membership.

Owns: `Raft`, the protocol itself (the Raft paper's §5-§8 and Ongaro's thesis
for PreVote, CheckQuorum, leadership transfer, joint consensus and reads),
driven only by `tick()`, `step(message)` and the request methods, as in
etcd-io/raft. Outputs accumulate in `msgs` and `read_states` and in the log's
unstable part; `nomadkv.raft.node.RawNode` packages them into a `Ready`.
Never: does I/O, reads a clock or uses global randomness. Time is a tick count,
election jitter comes from the injected `random.Random`.
Invariants:
  - at most one vote per term, persisted (`hard_state`) before the vote
    response leaves (the Ready contract: persist, then send);
  - a leader never overwrites or deletes its own entries, and commits by
    counting replicas only entries of its own term (§5.4.2);
  - configuration changes take effect when applied, one at a time: a leader
    proposes one only after applying every earlier one, and only after an
    entry of its own term committed (the single-server change fix);
  - a read is released only at a commit index known in the current term and
    after a quorum confirmed this leader (a heartbeat round or the lease).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter

from nomadkv.raft.codec import encode_conf_change
from nomadkv.raft.confchange import ConfChange, Membership, apply_conf_change
from nomadkv.raft.config import Config
from nomadkv.raft.entry import (
    EMPTY_HARD_STATE,
    NO_LIMIT,
    NONE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMeta,
    make_entry,
)
from nomadkv.raft.errors import ConfChangeError, InvariantViolation, RequestDropped, check
from nomadkv.raft.log import RaftLog
from nomadkv.raft.message import CAMPAIGN_TRANSFER, Message, MessageType, SnapshotChunk
from nomadkv.raft.progress import PROBE, REPLICATE, SNAPSHOT, Progress
from nomadkv.raft.read_only import ReadOnly, ReadState
from nomadkv.raft.storage import Storage
from nomadkv.raft.tracker import ProgressTracker, VoteResult


class StateRole(enum.IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


FOLLOWER = StateRole.FOLLOWER
PRE_CANDIDATE = StateRole.PRE_CANDIDATE
CANDIDATE = StateRole.CANDIDATE
LEADER = StateRole.LEADER

APPEND = MessageType.APPEND
APPEND_RESP = MessageType.APPEND_RESP
HEARTBEAT = MessageType.HEARTBEAT
HEARTBEAT_RESP = MessageType.HEARTBEAT_RESP
VOTE = MessageType.VOTE
VOTE_RESP = MessageType.VOTE_RESP
PRE_VOTE = MessageType.PRE_VOTE
PRE_VOTE_RESP = MessageType.PRE_VOTE_RESP
SNAPSHOT_MSG = MessageType.SNAPSHOT
SNAPSHOT_ACK = MessageType.SNAPSHOT_ACK
READ_INDEX = MessageType.READ_INDEX
READ_INDEX_RESP = MessageType.READ_INDEX_RESP
TIMEOUT_NOW = MessageType.TIMEOUT_NOW

NORMAL = EntryType.NORMAL
CONF_CHANGE = EntryType.CONF_CHANGE
_type_of = attrgetter("type")


class _SnapshotReceive:
    """A snapshot being received chunk by chunk from the leader."""

    __slots__ = ("buf", "meta")

    def __init__(self, meta: SnapshotMeta) -> None:
        self.meta = meta
        self.buf = bytearray()


class Raft:
    __slots__ = (
        "config",
        "election_elapsed",
        "heartbeat_elapsed",
        "id",
        "is_learner",
        "lead",
        "lead_transferee",
        "leader_log_match",
        "lease_until_tick",
        "log",
        "msgs",
        "pending_conf_index",
        "pending_reads",
        "randomized_election_timeout",
        "read_only",
        "read_states",
        "rng",
        "send_wanted",
        "snapshot_rx",
        "startup_guard",
        "state",
        "term",
        "ticks",
        "timeout_now_sent",
        "tracker",
        "voted_for",
    )

    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        config.validate()
        self.id = config.id
        self.config = config
        self.rng = rng
        self.log = RaftLog(storage)
        self.tracker = ProgressTracker(config.max_inflight_msgs)
        self.read_only = ReadOnly()
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.pending_reads: list[tuple[bytes, int]] = []
        self.send_wanted: dict[int, bool] = {}
        self.snapshot_rx: _SnapshotReceive | None = None
        self.term = 0
        self.voted_for = NONE
        self.lead = NONE
        # Follower: the last index of its log known to equal the current leader's (an
        # append or snapshot of this term matched it). A heartbeat's commit is applied
        # only up to here: the leader's idea of what we hold can be out of date.
        self.leader_log_match = 0
        self.state = FOLLOWER
        self.is_learner = False
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_ticks
        self.ticks = 0
        self.pending_conf_index = 0
        self.lead_transferee = NONE
        self.timeout_now_sent = False
        self.lease_until_tick = 0
        # A restarted replica cannot remember when it last heard from a leader, so
        # with CheckQuorum it assumes it just did and grants no vote for an election
        # timeout: otherwise a crash could void the promise a leader lease relies on.
        self.startup_guard = True

        hard_state, conf_state = storage.initial_state()
        fresh = storage.last_index() == 0 and hard_state == EMPTY_HARD_STATE
        if fresh and config.voters:
            self._bootstrap(config)
        else:
            self.tracker.set_membership(
                Membership.from_conf_state(conf_state), self.log.last_index() + 1
            )
            self.term = hard_state.term
            self.voted_for = hard_state.vote
            applied = config.applied
            check(
                applied == 0 or applied >= self.log.first_index() - 1,
                "Config.applied is below the snapshot: restore the state machine from it",
            )
            check(applied <= self.log.last_index(), "Config.applied is beyond the last index")
            # Everything applied was committed; the persisted commit may lag (it is
            # written without fsync).
            self.log.commit_to(max(hard_state.commit, applied))
            if applied > self.log.last_applied:
                self.log.applied_to(applied)
        pr = self.tracker.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        self._become_follower(self.term, NONE)

    def _bootstrap(self, config: Config) -> None:
        """A founding member: start from a snapshot at (1, 1) holding the initial
        configuration. Every founding member builds the same one, and a node that
        joins later receives the configuration with the leader's snapshot."""
        cs = ConfState(voters=tuple(sorted(config.voters)), learners=tuple(sorted(config.learners)))
        self.term = 1
        self.log.restore(Snapshot(SnapshotMeta(1, 1, cs)))
        self.tracker.set_membership(Membership.from_conf_state(cs), self.log.last_index() + 1)

    # -- state the Ready reports -------------------------------------------------------------

    def hard_state(self) -> HardState:
        return HardState(self.term, self.voted_for, self.log.commit_index)

    def conf_state(self) -> ConfState:
        return self.tracker.membership.conf_state()

    # -- role changes ------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.voted_for = NONE
        self.lead = NONE
        self.leader_log_match = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        election_ticks = self.config.election_ticks
        self.randomized_election_timeout = election_ticks + self.rng.randrange(election_ticks)
        self.lead_transferee = NONE
        self.timeout_now_sent = False
        self.lease_until_tick = 0
        self.tracker.votes = {}
        last_index = self.log.last_index()
        progress = self.tracker.progress
        max_inflight = self.config.max_inflight_msgs
        for node_id, old in progress.items():
            pr = Progress(last_index + 1, max_inflight, old.is_learner)
            pr.recent_active = False
            if node_id == self.id:
                pr.match_index = last_index
            progress[node_id] = pr
        self.pending_conf_index = 0
        self.read_only.reset()
        self.pending_reads.clear()
        self.send_wanted.clear()
        self.snapshot_rx = None

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.state = FOLLOWER

    def _become_pre_candidate(self) -> None:
        check(self.state is not LEADER, "a leader cannot become pre-candidate")
        # PreVote (thesis §9.6): no term change, no vote; only a poll.
        self.tracker.votes = {}
        self.lead = NONE
        self.state = PRE_CANDIDATE
        self.startup_guard = False

    def _become_candidate(self) -> None:
        check(self.state is not LEADER, "a leader cannot become candidate")
        self._reset(self.term + 1)
        self.voted_for = self.id
        self.state = CANDIDATE
        self.startup_guard = False

    def _become_leader(self) -> None:
        check(self.state is CANDIDATE, "only a candidate becomes leader")
        self._reset(self.term)
        self.lead = self.id
        self.state = LEADER
        me = self.tracker.progress[self.id]
        me.become_replicate()
        me.recent_active = True
        # §5.4.2/§8: an empty entry of the new term; once it commits the leader knows
        # the commit index and may serve reads.
        self._append_entries([Entry(self.log.last_index() + 1, self.term)])
        # No configuration change until everything up to that entry is applied: earlier
        # changes in the log take effect first, and an entry of this term has committed
        # (the fix for single-server changes, Ongaro, raft-dev 2015).
        self.pending_conf_index = self.log.last_index()

    def _promotable(self) -> bool:
        return (
            self.id in self.tracker.progress
            and not self.is_learner
            and self.log.unstable_snapshot is None
        )

    # -- inputs -----------------------------------------------------------------------------

    def tick(self) -> None:
        self.ticks += 1
        if self.state is LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.startup_guard = False
        if self.election_elapsed >= self.randomized_election_timeout and self._promotable():
            self.election_elapsed = 0
            self.campaign()

    def _tick_heartbeat(self) -> None:
        config = self.config
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= config.election_ticks:
            self.election_elapsed = 0
            if config.check_quorum:
                # CheckQuorum (thesis §6.2): a leader cut off from a quorum steps down.
                if not self.tracker.quorum_active(self.id):
                    self._become_follower(self.term, NONE)
                    return
                for node_id, pr in self.tracker.progress.items():
                    pr.recent_active = node_id == self.id
            # A transfer that did not finish within an election timeout is abandoned.
            self.lead_transferee = NONE
        if self.heartbeat_elapsed >= config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()
        self._send_commit()

    def _send_commit(self) -> None:
        """Tell followers a commit index no append has carried to them yet."""
        committed = self.log.commit_index
        for node_id, pr in self.tracker.progress.items():
            if node_id != self.id and pr.sent_commit < committed:
                self._want_send(node_id, True)

    def campaign(self, transfer: bool = False) -> None:
        """Start an election now (an election timeout, TimeoutNow, or the operator)."""
        if self.state is LEADER or not self._promotable():
            return
        if self._has_unapplied_conf_changes():
            # The configuration this node would campaign in is not final yet.
            return
        if transfer or not self.config.pre_vote:
            self._campaign(pre_vote=False, transfer=transfer)
        else:
            self._campaign(pre_vote=True, transfer=False)

    def _has_unapplied_conf_changes(self) -> bool:
        log = self.log
        if log.last_applied >= log.commit_index:
            return False
        pending = log.slice(
            max(log.last_applied + 1, log.first_index()), log.commit_index + 1, NO_LIMIT
        )
        return CONF_CHANGE in map(_type_of, pending)

    def _campaign(self, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            vote_type = PRE_VOTE
            term = self.term + 1
        else:
            self._become_candidate()
            vote_type = VOTE
            term = self.term
        if self.tracker.record_vote(self.id, True) is VoteResult.WON:
            if pre_vote:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self._become_leader()
            return
        last_index = self.log.last_index()
        last_term = self.log.term(last_index)
        context = CAMPAIGN_TRANSFER if transfer else b""
        for node_id in self.tracker.voter_ids():
            if node_id != self.id:
                self.msgs.append(
                    Message(
                        vote_type,
                        node_id,
                        self.id,
                        term,
                        log_term=last_term,
                        index=last_index,
                        context=context,
                    )
                )

    def _in_lease(self) -> bool:
        """Leader stickiness (thesis §4.2.3): with CheckQuorum, a node that heard from a
        leader within the election timeout ignores elections; leases rely on it."""
        return (
            self.config.check_quorum
            and self.election_elapsed < self.config.election_ticks
            and (self.lead != NONE or self.startup_guard)
        )

    def step(self, m: Message) -> None:
        t = m.type
        if m.term > self.term:
            if (t is VOTE or t is PRE_VOTE) and m.context != CAMPAIGN_TRANSFER and self._in_lease():
                return
            if t is PRE_VOTE or (t is PRE_VOTE_RESP and not m.reject):
                # A pre-vote (or a granted answer to ours) carries a future term and
                # changes nothing here.
                pass
            elif t is APPEND or t is HEARTBEAT or t is SNAPSHOT_MSG:
                self._become_follower(m.term, m.sender)
            else:
                self._become_follower(m.term, NONE)
        elif m.term < self.term:
            if t is APPEND or t is HEARTBEAT:
                if self.config.check_quorum or self.config.pre_vote:
                    # A stale leader, e.g. one that was partitioned: tell it our term so it
                    # steps down; with PreVote it could not learn it from an election.
                    self.msgs.append(Message(APPEND_RESP, m.sender, self.id, self.term))
            elif t is PRE_VOTE:
                self.msgs.append(Message(PRE_VOTE_RESP, m.sender, self.id, self.term, reject=True))
            return

        if t is VOTE or t is PRE_VOTE:
            self._handle_vote_request(m)
        elif self.state is LEADER:
            self._step_leader(m)
        elif self.state is FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: Message) -> None:
        resp_type = VOTE_RESP if m.type is VOTE else PRE_VOTE_RESP
        can_vote = (
            self.voted_for == m.sender
            or (self.voted_for == NONE and self.lead == NONE)
            or (m.type is PRE_VOTE and m.term > self.term)
        )
        # §5.4.1: only a candidate whose log is at least as up-to-date as ours.
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self.msgs.append(Message(resp_type, m.sender, self.id, m.term))
            if m.type is VOTE:
                self.election_elapsed = 0
                self.voted_for = m.sender
        else:
            self.msgs.append(Message(resp_type, m.sender, self.id, self.term, reject=True))

    # -- follower and candidate -------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t is APPEND:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_append(m)
        elif t is HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_heartbeat(m)
        elif t is SNAPSHOT_MSG:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_snapshot_chunk(m)
        elif t is TIMEOUT_NOW:
            # Leadership transfer (thesis §3.10): campaign at once, skipping PreVote.
            self.campaign(transfer=True)
        elif t is READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t is APPEND or t is HEARTBEAT or t is SNAPSHOT_MSG:
            # A leader of our term exists (§5.2): follow it.
            self._become_follower(m.term, m.sender)
            self._step_follower(m)
        elif (t is PRE_VOTE_RESP and self.state is PRE_CANDIDATE) or (
            t is VOTE_RESP and self.state is CANDIDATE
        ):
            result = self.tracker.record_vote(m.sender, not m.reject)
            if result is VoteResult.WON:
                if self.state is PRE_CANDIDATE:
                    self._campaign(pre_vote=False, transfer=False)
                else:
                    self._become_leader()
            elif result is VoteResult.LOST:
                self._become_follower(self.term, NONE)

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.commit_index:
            self.msgs.append(
                Message(APPEND_RESP, m.sender, self.id, self.term, index=log.commit_index)
            )
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self.leader_log_match = max(self.leader_log_match, last_new)
            self.msgs.append(Message(APPEND_RESP, m.sender, self.id, self.term, index=last_new))
            return
        # Fast backtracking: point the leader at the last index whose term can match.
        hint_index = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self.msgs.append(
            Message(
                APPEND_RESP,
                m.sender,
                self.id,
                self.term,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=log.term(hint_index),
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        """The commit index comes capped at what the leader believes we hold, which is
        out of date if this log lost entries it had acknowledged (a wiped disk) or, after
        a restart, was never confirmed to match this leader. Commit only the part known
        to match; if that falls short, reject with our last index so that the leader
        sends an append (it matches, or shows where we stand) or backs off to what we
        hold (`Progress.lost_entries`). Never commit, let alone apply, entries that this
        log lacks or that may differ from the leader's."""
        log = self.log
        log.commit_to(min(m.commit, self.leader_log_match))
        short = m.commit > log.commit_index
        self.msgs.append(
            Message(
                HEARTBEAT_RESP,
                m.sender,
                self.id,
                self.term,
                index=m.index,
                reject=short,
                reject_hint=log.last_index() if short else 0,
            )
        )

    def _handle_snapshot_chunk(self, m: Message) -> None:
        chunk = m.snapshot
        if chunk is None:
            raise InvariantViolation("SNAPSHOT message without a chunk")
        meta = chunk.meta
        log = self.log
        if meta.index <= log.commit_index:
            self.snapshot_rx = None
            self.msgs.append(
                Message(APPEND_RESP, m.sender, self.id, self.term, index=log.commit_index)
            )
            return
        rx = self.snapshot_rx
        if rx is None or rx.meta != meta:
            if chunk.offset != 0:
                self._ack_snapshot(m.sender, meta, 0, reject=True)
                return
            rx = self.snapshot_rx = _SnapshotReceive(meta)
        received = len(rx.buf)
        if chunk.offset != received:
            self._ack_snapshot(m.sender, meta, received, reject=chunk.offset > received)
            return
        rx.buf += chunk.data
        if not chunk.done:
            self._ack_snapshot(m.sender, meta, len(rx.buf), reject=False)
            return
        self.snapshot_rx = None
        if self._restore(Snapshot(meta, bytes(rx.buf))):
            index = log.last_index()
            self.leader_log_match = index
        else:
            index = log.commit_index
            self.leader_log_match = max(self.leader_log_match, index)
        self.msgs.append(Message(APPEND_RESP, m.sender, self.id, self.term, index=index))

    def _ack_snapshot(self, to: int, meta: SnapshotMeta, received: int, reject: bool) -> None:
        self.msgs.append(
            Message(
                SNAPSHOT_ACK,
                to,
                self.id,
                self.term,
                index=meta.index,
                log_term=meta.term,
                reject_hint=received,
                reject=reject,
            )
        )

    def _restore(self, snapshot: Snapshot) -> bool:
        """Install a leader's snapshot (§7); False if the log already covers it."""
        meta = snapshot.meta
        log = self.log
        if meta.index <= log.commit_index:
            return False
        check(self.state is FOLLOWER, "only a follower installs a snapshot")
        if log.match_term(meta.index, meta.term):
            # §7: our log has the snapshot's last entry; keep the entries after it.
            log.commit_to(meta.index)
            return False
        log.restore(snapshot)
        self._switch_membership(Membership.from_conf_state(meta.conf_state))
        return True

    # -- leader -----------------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        pr = self.tracker.progress.get(m.sender)
        if pr is None:
            return
        t = m.type
        if t is APPEND_RESP:
            pr.recent_active = True
            self._handle_append_resp(m, pr)
        elif t is HEARTBEAT_RESP:
            pr.recent_active = True
            self._handle_heartbeat_resp(m, pr)
        elif t is SNAPSHOT_ACK:
            pr.recent_active = True
            self._handle_snapshot_ack(m, pr)
        elif t is READ_INDEX:
            self._read_index_for(m.context, m.sender)

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, next_probe):
                if pr.state is REPLICATE:
                    pr.become_probe()
                self._want_send(m.sender, True)
            return
        # A probe answered at the known match (e.g. after report_unreachable) also
        # resumes replication, even though it teaches nothing new.
        if not pr.maybe_update(m.index) and not (pr.state is PROBE and pr.match_index == m.index):
            return
        state = pr.state
        if state is PROBE:
            pr.become_replicate()
        elif state is SNAPSHOT:
            if pr.match_index >= pr.pending_snapshot:
                pr.become_probe()
                if pr.match_index + 1 >= self.log.first_index():
                    pr.become_replicate()
        else:
            pr.inflights.free_le(m.index)
        committed = self.log.commit_index
        if self._maybe_commit():
            # Followers learn the new commit index from the next append (the next
            # proposal's) or at the next tick (_send_commit), not from an empty
            # append of its own: under load that would cost each follower a
            # message, a Ready and a reply per entry for nothing (docs/raft.md).
            # A configuration change is the exception: members apply it only once
            # they know it committed, and until then vote in the old configuration.
            if committed < self.pending_conf_index <= self.log.commit_index:
                self._bcast_append()
            else:
                for node_id in self.tracker.progress:
                    if node_id != self.id:
                        self._want_send(node_id, False)
        else:
            self._want_send(m.sender, False)
        if m.sender == self.lead_transferee and pr.match_index == self.log.last_index():
            self._send_timeout_now(m.sender)

    def _handle_heartbeat_resp(self, m: Message, pr: Progress) -> None:
        pr.flow_paused = False
        if m.reject:
            # The follower could not take the heartbeat's commit: it holds less than
            # its match index (then probe from what it holds) or has not matched this
            # term's log yet (then an append, even an empty one, confirms it).
            pr.lost_entries(m.reject_hint)
        if pr.state is SNAPSHOT:
            self._retry_snapshot(m.sender, pr)
        elif pr.state is PROBE or pr.match_index < self.log.last_index() or m.reject:
            self._want_send(m.sender, True)
        if m.index > pr.read_round:
            pr.read_round = m.index
            self._confirm_reads()

    def _handle_snapshot_ack(self, m: Message, pr: Progress) -> None:
        if pr.state is not SNAPSHOT or m.index != pr.pending_snapshot:
            return
        if m.reject:
            pr.rewind_snapshot(m.reject_hint)
        elif m.reject_hint > pr.snapshot_acked_bytes:
            pr.snapshot_acked_bytes = m.reject_hint
            pr.snapshot_next_bytes = max(pr.snapshot_next_bytes, m.reject_hint)
        self._send_snapshot_chunks(m.sender, pr)

    def _retry_snapshot(self, to: int, pr: Progress) -> None:
        """No chunk acknowledged for a heartbeat interval: resend from the last ack."""
        if pr.snapshot_stall_mark == pr.snapshot_acked_bytes:
            pr.rewind_snapshot(pr.snapshot_acked_bytes)
            self._send_snapshot_chunks(to, pr)
        pr.snapshot_stall_mark = pr.snapshot_acked_bytes

    def _maybe_commit(self) -> bool:
        if not self.log.maybe_commit(self.tracker.quorum_match_index(), self.term):
            return False
        if self.pending_reads:
            # §8: the first entry of this term committed; waiting reads now have a
            # trustworthy commit index.
            reads, self.pending_reads = self.pending_reads, []
            for context, origin in reads:
                self._read_index_for(context, origin)
        return True

    def _append_entries(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        self.tracker.progress[self.id].maybe_update(entries[-1].index)
        if self.tracker.is_singleton(self.id):
            self._maybe_commit()
        for node_id in self.tracker.progress:
            if node_id != self.id:
                self._want_send(node_id, False)

    def _want_send(self, to: int, if_empty: bool) -> None:
        """Appends are sent at `flush`, once per Ready, so proposals batch into messages."""
        wanted = self.send_wanted
        wanted[to] = wanted.get(to, False) or if_empty

    def _bcast_append(self) -> None:
        for node_id in self.tracker.progress:
            if node_id != self.id:
                self._want_send(node_id, True)

    def flush(self) -> None:
        """Send the appends and the read round that this step's inputs asked for."""
        if self.state is not LEADER:
            self.send_wanted.clear()
            return
        if self.send_wanted:
            wanted, self.send_wanted = self.send_wanted, {}
            progress = self.tracker.progress
            for to, if_empty in wanted.items():
                pr = progress.get(to)
                if pr is not None and self._send_append(to, pr, if_empty):
                    while self._send_append(to, pr, False):
                        pass
        ro = self.read_only
        if ro.round_wanted and not ro.in_flight():
            self._bcast_heartbeat(self._read_round_targets())

    def _send_append(self, to: int, pr: Progress, if_empty: bool) -> bool:
        if pr.is_paused():
            return False
        log = self.log
        next_index = pr.next_index
        if next_index < log.first_index():
            self._start_snapshot(to, pr)
            return False
        prev_index = next_index - 1
        prev_term = log.term(prev_index)
        check(prev_term > 0 or prev_index == 0, "no term for the entry preceding an append")
        last_index = log.last_index()
        if next_index <= last_index:
            entries = log.slice(next_index, last_index + 1, self.config.max_size_per_msg)
        elif if_empty:
            entries = []
        else:
            return False
        self.msgs.append(
            Message(
                APPEND,
                to,
                self.id,
                self.term,
                log_term=prev_term,
                index=prev_index,
                commit=log.commit_index,
                entries=tuple(entries),
            )
        )
        pr.sent_entries(prev_index + len(entries), len(entries))
        pr.sent_commit = log.commit_index
        return True

    def _start_snapshot(self, to: int, pr: Progress) -> None:
        if not pr.recent_active:
            return  # do not stream a snapshot to a node that may be down
        snapshot = self.log.snapshot()
        check(
            snapshot.meta.index >= self.log.first_index() - 1,
            "log compacted beyond the latest snapshot",
        )
        pr.become_snapshot(snapshot)
        self._send_snapshot_chunks(to, pr)

    def _send_snapshot_chunks(self, to: int, pr: Progress) -> None:
        snapshot = pr.snapshot
        if snapshot is None:
            raise InvariantViolation("snapshot state without a snapshot")
        data = snapshot.data
        total = len(data)
        chunk_bytes = self.config.snapshot_chunk_bytes
        window = chunk_bytes * self.config.max_inflight_snapshot_chunks
        while (
            not pr.snapshot_done_sent and pr.snapshot_next_bytes - pr.snapshot_acked_bytes < window
        ):
            offset = pr.snapshot_next_bytes
            end = min(offset + chunk_bytes, total)
            done = end == total
            chunk = SnapshotChunk(snapshot.meta, offset, data[offset:end], done)
            self.msgs.append(Message(SNAPSHOT_MSG, to, self.id, self.term, snapshot=chunk))
            pr.snapshot_next_bytes = end
            pr.snapshot_done_sent = done

    def _bcast_heartbeat(self, targets: list[int] | None = None) -> None:
        """Heartbeats double as ReadIndex rounds: each one starts a new round. The
        periodic heartbeat goes to every member; a round that waiting reads asked
        for goes to `targets` only."""
        round_ = self.read_only.start_round(self.ticks, self.config.lease_reads)
        committed = self.log.commit_index
        for node_id, pr in self.tracker.progress.items():
            if node_id != self.id and (targets is None or node_id in targets):
                self.msgs.append(
                    Message(
                        HEARTBEAT,
                        node_id,
                        self.id,
                        self.term,
                        index=round_,
                        commit=min(pr.match_index, committed),
                    )
                )
        if self.tracker.is_singleton(self.id):
            self._confirm_reads()

    def _read_round_targets(self) -> list[int]:
        """The fewest voters that make a quorum with this leader, those that answered
        the latest rounds first: a round for waiting reads needs no more answers,
        and each heartbeat costs its receiver a message to decode and answer.
        Should one of them not answer, the next periodic heartbeat, sent to every
        member, starts a round that the others confirm (docs/raft.md, reads)."""
        me = self.id
        tracker = self.tracker
        progress = tracker.progress
        followers = sorted(
            (i for i in progress if i != me and tracker.is_voter(i)),
            key=lambda i: (-progress[i].read_round, i),
        )
        targets: list[int] = []
        for node_id in followers:
            if tracker.quorum_value(lambda i: i == me or i in targets):
                break
            targets.append(node_id)
        return targets

    def _send_timeout_now(self, to: int) -> None:
        # The target will win an election this leader cannot veto: no lease from now on.
        self.timeout_now_sent = True
        self.msgs.append(Message(TIMEOUT_NOW, to, self.id, self.term))

    # -- reads ------------------------------------------------------------------------------

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read index; a ReadState with `context` follows."""
        if self.state is LEADER:
            self._read_index_for(context, self.id)
        elif self.lead == NONE:
            raise RequestDropped("no leader to serve a read index", NONE)
        else:
            self.msgs.append(Message(READ_INDEX, self.lead, self.id, self.term, context=context))

    def _read_index_for(self, context: bytes, origin: int) -> None:
        log = self.log
        if log.term(log.commit_index) != self.term:
            self.pending_reads.append((context, origin))
            return
        if self.tracker.is_singleton(self.id) or self._lease_valid():
            self._release_read(origin, log.commit_index, context)
            return
        self.read_only.add(context, origin, log.commit_index)

    def _lease_valid(self) -> bool:
        return (
            self.config.lease_reads
            and not self.timeout_now_sent
            and self.ticks < self.lease_until_tick
        )

    def _confirm_reads(self) -> None:
        ro = self.read_only
        if not ro.in_flight():
            return
        progress = self.tracker.progress
        me = self.id
        latest = ro.round

        def round_of(node_id: int) -> int:
            return latest if node_id == me else progress[node_id].read_round

        released, sent_tick = ro.confirm(self.tracker.quorum_value(round_of))
        for req in released:
            self._release_read(req.origin, req.index, req.context)
        if sent_tick is not None:
            self.lease_until_tick = max(
                self.lease_until_tick, sent_tick + self.config.lease_ticks()
            )

    def _release_read(self, origin: int, index: int, context: bytes) -> None:
        if origin == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            self.msgs.append(
                Message(READ_INDEX_RESP, origin, self.id, self.term, index=index, context=context)
            )

    # -- proposals --------------------------------------------------------------------------

    def _check_can_propose(self) -> None:
        if self.state is not LEADER:
            raise RequestDropped("not the leader", self.lead)
        if self.lead_transferee != NONE:
            raise RequestDropped("leadership transfer in progress", self.id)

    def propose(self, data: bytes) -> int:
        """Append one normal entry; its log index (it may still be lost before commit)."""
        self._check_can_propose()
        index = self.log.last_index() + 1
        self._append_entries([Entry(index, self.term, NORMAL, data)])
        return index

    def propose_batch(self, datas: Sequence[bytes]) -> int:
        """Append one normal entry per payload; the index of the last one."""
        self._check_can_propose()
        first = self.log.last_index() + 1
        n = len(datas)
        if n == 0:
            return first - 1
        term = self.term
        self._append_entries(
            list(map(make_entry, range(first, first + n), repeat(term), repeat(NORMAL), datas))
        )
        return first + n - 1

    def propose_conf_change(self, cc: ConfChange) -> int:
        self._check_can_propose()
        if self.pending_conf_index > self.log.last_applied:
            raise RequestDropped("a configuration change is still being applied", self.id)
        # Validate now: every replica applies it against this same configuration.
        apply_conf_change(self.tracker.membership, cc)
        index = self.log.last_index() + 1
        self._append_entries([Entry(index, self.term, CONF_CHANGE, encode_conf_change(cc))])
        self.pending_conf_index = index
        return index

    def maybe_auto_leave_joint(self) -> None:
        """A leader in an auto-leave joint configuration proposes C_new once C_old,new
        is applied (§6)."""
        m = self.tracker.membership
        if (
            self.state is LEADER
            and m.joint
            and m.auto_leave
            and self.log.last_applied >= self.pending_conf_index
        ):
            index = self.log.last_index() + 1
            leave = Entry(index, self.term, CONF_CHANGE, encode_conf_change(ConfChange()))
            self._append_entries([leave])
            self.pending_conf_index = index

    # -- membership -------------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed configuration change (called when its entry is applied)."""
        try:
            membership = apply_conf_change(self.tracker.membership, cc)
        except ConfChangeError as e:
            raise InvariantViolation(f"committed conf change is invalid: {e}") from e
        self._switch_membership(membership)
        return membership.conf_state()

    def _switch_membership(self, membership: Membership) -> None:
        self.tracker.set_membership(membership, self.log.last_index() + 1)
        pr = self.tracker.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if self.state is not LEADER:
            return
        if pr is None or pr.is_learner:
            # §6: a leader that is no longer a voter steps down, handing off to a
            # caught-up voter so the group does not wait for an election timeout.
            self._hand_off()
            self._become_follower(self.term, NONE)
            return
        if self.lead_transferee != NONE and not self.tracker.is_voter(self.lead_transferee):
            self.lead_transferee = NONE
        # A lease was granted by a quorum of the old configuration: earn a new one.
        self.lease_until_tick = 0
        # The quorum changed: commit and read rounds may advance; new members get probed.
        self._maybe_commit()
        self._bcast_append()
        self._confirm_reads()

    def _hand_off(self) -> None:
        last_index = self.log.last_index()
        progress = self.tracker.progress
        for node_id in self.tracker.voter_ids():
            if node_id != self.id and progress[node_id].match_index == last_index:
                self._send_timeout_now(node_id)
                return

    # -- leadership transfer and transport feedback -----------------------------------------

    def transfer_leadership(self, to: int) -> None:
        """Catch `to` up, then send it TimeoutNow (thesis §3.10). Proposals are refused
        meanwhile; the transfer is abandoned after an election timeout."""
        if self.state is not LEADER:
            raise RequestDropped("not the leader", self.lead)
        if to == self.id:
            return
        pr = self.tracker.progress.get(to)
        if pr is None or pr.is_learner:
            raise RequestDropped(f"node {to} is not a voter", self.id)
        if self.lead_transferee == to:
            return
        self.lead_transferee = to
        self.election_elapsed = 0
        if pr.match_index == self.log.last_index():
            self._send_timeout_now(to)
        else:
            self._want_send(to, True)

    def report_unreachable(self, to: int) -> None:
        """The transport could not deliver to `to`: stop pipelining, probe again."""
        pr = self.tracker.progress.get(to)
        if self.state is LEADER and pr is not None and pr.state is REPLICATE:
            pr.become_probe()

    def report_snapshot(self, to: int, ok: bool) -> None:
        """The transport delivered (ok) or failed to deliver the snapshot to `to`.

        Either way the leader probes next, after the next heartbeat response; on
        failure the transfer restarts from scratch if still needed.
        """
        pr = self.tracker.progress.get(to)
        if self.state is not LEADER or pr is None or pr.state is not SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.flow_paused = True
