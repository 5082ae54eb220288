"""The leader's view of the cluster: membership, per-peer progress, votes, quorums.

Owns: `ProgressTracker` (the current `Membership`, a `Progress` per member, the
votes of an election) and the quorum arithmetic over majority and joint
configurations (§6: in C_old,new a decision needs a majority of each half).
Never: sends messages or reads the log.
Invariants: there is exactly one Progress per member of the membership; a
learner's progress has is_learner set; an empty half of a configuration
imposes no constraint (so a non-joint config is just its incoming half).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

from nomadkv.raft.confchange import Membership
from nomadkv.raft.progress import Progress

_NO_CONSTRAINT = (1 << 63) - 1


class VoteResult(enum.IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


def majority_value(voters: Iterable[int], value_of: Callable[[int], int]) -> int:
    """The largest value that a majority of `voters` has reached (or exceeded)."""
    values = sorted(map(value_of, voters), reverse=True)
    if not values:
        return _NO_CONSTRAINT
    return values[len(values) // 2]


def majority_vote(voters: frozenset[int], votes: dict[int, bool]) -> VoteResult:
    if not voters:
        return VoteResult.WON
    granted = rejected = 0
    for v in voters:
        vote = votes.get(v)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    quorum = len(voters) // 2 + 1
    if granted >= quorum:
        return VoteResult.WON
    if len(voters) - rejected >= quorum:
        return VoteResult.PENDING
    return VoteResult.LOST


class ProgressTracker:
    __slots__ = ("max_inflight", "membership", "progress", "votes")

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.membership = Membership()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}

    def set_membership(self, membership: Membership, next_index: int) -> None:
        """Switch to `membership`: new members start probing at next_index, gone ones vanish."""
        self.membership = membership
        members = membership.members()
        for node_id in [i for i in self.progress if i not in members]:
            del self.progress[node_id]
        for node_id in sorted(members):
            pr = self.progress.get(node_id)
            if pr is None:
                # New members count as recently active so CheckQuorum does not step
                # the leader down before they had a chance to answer.
                self.progress[node_id] = Progress(
                    next_index, self.max_inflight, membership.is_learner(node_id)
                )
            else:
                pr.is_learner = membership.is_learner(node_id)

    def voter_ids(self) -> list[int]:
        return sorted(self.membership.all_voters())

    def is_voter(self, node_id: int) -> bool:
        m = self.membership
        return node_id in m.voters or node_id in m.voters_outgoing

    def is_singleton(self, node_id: int) -> bool:
        m = self.membership
        return m.voters == {node_id} and not m.voters_outgoing

    def quorum_value(self, value_of: Callable[[int], int]) -> int:
        """The largest value a quorum of the (possibly joint) configuration reached."""
        m = self.membership
        value = majority_value(m.voters, value_of)
        if m.voters_outgoing:
            value = min(value, majority_value(m.voters_outgoing, value_of))
        return value

    def quorum_match_index(self) -> int:
        """The highest index stored on a quorum (§5.3 / §6)."""
        progress = self.progress

        def match_of(node_id: int) -> int:
            return progress[node_id].match_index

        return self.quorum_value(match_of)

    def quorum_active(self, self_id: int) -> bool:
        """CheckQuorum: has a quorum (counting the leader) been heard from recently?"""
        progress = self.progress
        votes = {i: i == self_id or pr.recent_active for i, pr in progress.items()}
        return self.vote_result(votes) is VoteResult.WON

    def vote_result(self, votes: dict[int, bool]) -> VoteResult:
        m = self.membership
        incoming = majority_vote(m.voters, votes)
        outgoing = majority_vote(m.voters_outgoing, votes)
        if incoming is VoteResult.LOST or outgoing is VoteResult.LOST:
            return VoteResult.LOST
        if incoming is VoteResult.WON and outgoing is VoteResult.WON:
            return VoteResult.WON
        return VoteResult.PENDING

    def record_vote(self, node_id: int, granted: bool) -> VoteResult:
        self.votes.setdefault(node_id, granted)
        return self.vote_result(self.votes)
