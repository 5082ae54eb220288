"""Membership configurations and how a configuration change transforms them.

Owns: `ConfChange` (what a CONF_CHANGE entry carries), `Membership` (the
configuration a replica acts on) and the pure transitions between them:
simple (at most one voter changes), enter joint, leave joint (§6; thesis §4.3).
Never: touches progress or the log; `nomadkv.raft.core` applies the result when
the entry is applied, as etcd-io/raft does.
Invariants (checked after every transition): learners and voters are disjoint;
`learners_next` only holds outgoing voters being demoted; outside a joint
configuration there are no outgoing voters, no `learners_next`, no auto-leave;
a configuration always keeps at least one incoming voter.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from nomadkv.raft.entry import ConfState
from nomadkv.raft.errors import ConfChangeError


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0
    ADD_LEARNER = 1
    REMOVE_NODE = 2


class ConfChangeTransition(enum.IntEnum):
    """How a change that alters the voters travels (etcd's ConfChangeV2 transitions).

    AUTO: a change of at most one voter applies directly; anything larger enters
    a joint configuration that the leader leaves automatically.
    JOINT_IMPLICIT: always joint, left automatically.
    JOINT_EXPLICIT: always joint, left only by an empty `ConfChange`.
    """

    AUTO = 0
    JOINT_IMPLICIT = 1
    JOINT_EXPLICIT = 2


@dataclass(frozen=True, slots=True)
class ConfChangeSingle:
    type: ConfChangeType
    node_id: int


@dataclass(frozen=True, slots=True)
class ConfChange:
    """The payload of a CONF_CHANGE entry. No changes and AUTO means "leave joint".

    `context` is opaque to Raft (the server puts a joining node's address there).
    """

    changes: tuple[ConfChangeSingle, ...] = ()
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    context: bytes = b""

    def leaves_joint(self) -> bool:
        return not self.changes and self.transition is ConfChangeTransition.AUTO

    def uses_joint(self) -> bool:
        return self.transition is not ConfChangeTransition.AUTO or len(self.changes) > 1

    def auto_leave(self) -> bool:
        return self.transition is not ConfChangeTransition.JOINT_EXPLICIT


def add_voter(node_id: int) -> ConfChangeSingle:
    return ConfChangeSingle(ConfChangeType.ADD_VOTER, node_id)


def add_learner(node_id: int) -> ConfChangeSingle:
    return ConfChangeSingle(ConfChangeType.ADD_LEARNER, node_id)


def remove_node(node_id: int) -> ConfChangeSingle:
    return ConfChangeSingle(ConfChangeType.REMOVE_NODE, node_id)


@dataclass(frozen=True, slots=True)
class Membership:
    """The configuration a replica acts on: who votes (both halves when joint), who learns."""

    voters: frozenset[int] = frozenset()
    voters_outgoing: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()
    learners_next: frozenset[int] = frozenset()
    auto_leave: bool = False

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)

    def all_voters(self) -> frozenset[int]:
        return self.voters | self.voters_outgoing

    def members(self) -> frozenset[int]:
        return self.voters | self.voters_outgoing | self.learners | self.learners_next

    def is_learner(self, node_id: int) -> bool:
        """Learns without voting now. A voter being demoted (`learners_next`) still
        votes in the outgoing half until the joint configuration is left."""
        return node_id in self.learners

    def conf_state(self) -> ConfState:
        return ConfState(
            voters=tuple(sorted(self.voters)),
            learners=tuple(sorted(self.learners)),
            voters_outgoing=tuple(sorted(self.voters_outgoing)),
            learners_next=tuple(sorted(self.learners_next)),
            auto_leave=self.auto_leave,
        )

    @classmethod
    def from_conf_state(cls, cs: ConfState) -> Membership:
        m = cls(
            voters=frozenset(cs.voters),
            voters_outgoing=frozenset(cs.voters_outgoing),
            learners=frozenset(cs.learners),
            learners_next=frozenset(cs.learners_next),
            auto_leave=cs.auto_leave,
        )
        if m.members():
            _check_invariants(m)
        return m


def apply_conf_change(m: Membership, cc: ConfChange) -> Membership:
    """The configuration after `cc`; raises ConfChangeError if `cc` is invalid here."""
    if cc.leaves_joint():
        return leave_joint(m)
    if cc.uses_joint():
        return enter_joint(m, cc.auto_leave(), cc.changes)
    return simple(m, cc.changes)


def enter_joint(m: Membership, auto_leave: bool, changes: Iterable[ConfChangeSingle]) -> Membership:
    """C_old -> C_old,new: decisions now need majorities of both halves (§6)."""
    if m.joint:
        raise ConfChangeError("configuration is already joint")
    if not m.voters:
        raise ConfChangeError("cannot make a zero-voter configuration joint")
    entered = Membership(
        voters=m.voters,
        voters_outgoing=m.voters,
        learners=m.learners,
        learners_next=m.learners_next,
        auto_leave=auto_leave,
    )
    result = _apply(entered, changes)
    _check_invariants(result)
    return result


def leave_joint(m: Membership) -> Membership:
    """C_old,new -> C_new: outgoing voters not kept leave; demoted ones become learners."""
    if not m.joint:
        raise ConfChangeError("cannot leave a non-joint configuration")
    result = Membership(voters=m.voters, learners=m.learners | m.learners_next)
    _check_invariants(result)
    return result


def simple(m: Membership, changes: Iterable[ConfChangeSingle]) -> Membership:
    """A change of at most one voter, applied directly (single-server change, thesis §4.1)."""
    if m.joint:
        raise ConfChangeError("cannot apply a simple change to a joint configuration")
    result = _apply(m, changes)
    if len(m.voters ^ result.voters) > 1:
        raise ConfChangeError("more than one voter changed without entering joint consensus")
    _check_invariants(result)
    return result


def _apply(m: Membership, changes: Iterable[ConfChangeSingle]) -> Membership:
    voters = set(m.voters)
    learners = set(m.learners)
    learners_next = set(m.learners_next)
    for change in changes:
        node_id = change.node_id
        if node_id <= 0:
            raise ConfChangeError(f"invalid node id {node_id}")
        if change.type is ConfChangeType.ADD_VOTER:
            voters.add(node_id)
            learners.discard(node_id)
            learners_next.discard(node_id)
        elif change.type is ConfChangeType.ADD_LEARNER:
            if node_id in learners:
                continue
            voters.discard(node_id)
            # An outgoing voter keeps voting until the joint config is left (§6);
            # it becomes a learner only then.
            if node_id in m.voters_outgoing:
                learners_next.add(node_id)
            else:
                learners.add(node_id)
        else:
            voters.discard(node_id)
            learners.discard(node_id)
            learners_next.discard(node_id)
    if not voters:
        raise ConfChangeError("removed all voters")
    return Membership(
        voters=frozenset(voters),
        voters_outgoing=m.voters_outgoing,
        learners=frozenset(learners),
        learners_next=frozenset(learners_next),
        auto_leave=m.auto_leave,
    )


def _check_invariants(m: Membership) -> None:
    if not m.voters:
        raise ConfChangeError("a configuration needs at least one voter")
    if m.learners & m.all_voters():
        raise ConfChangeError("a node is both voter and learner")
    if not m.learners_next <= m.voters_outgoing:
        raise ConfChangeError("learners_next must be outgoing voters")
    if m.learners_next & m.learners:
        raise ConfChangeError("a node is in both learners and learners_next")
    if not m.joint and (m.learners_next or m.auto_leave):
        raise ConfChangeError("learners_next and auto_leave need a joint configuration")
