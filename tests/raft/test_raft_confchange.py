"""Membership transitions: simple changes, entering and leaving joint consensus, validation."""

from __future__ import annotations

import pytest

from nomadkv.raft import (
    ConfChange,
    ConfChangeError,
    ConfChangeTransition,
    ConfState,
    add_learner,
    add_voter,
    remove_node,
)
from nomadkv.raft.confchange import Membership, apply_conf_change, simple

BASE = Membership(voters=frozenset({1, 2, 3}))


def test_simple_change_of_one_voter() -> None:
    m = apply_conf_change(BASE, ConfChange((add_voter(4),)))
    assert m.voters == {1, 2, 3, 4} and not m.joint
    m = apply_conf_change(m, ConfChange((remove_node(1),)))
    assert m.voters == {2, 3, 4}


def test_learners_are_added_promoted_and_demoted() -> None:
    m = apply_conf_change(BASE, ConfChange((add_learner(4),)))
    assert m.learners == {4} and m.is_learner(4)
    m = apply_conf_change(m, ConfChange((add_voter(4),)))
    assert m.voters == {1, 2, 3, 4} and not m.learners
    m = apply_conf_change(m, ConfChange((add_learner(1),)))
    assert m.voters == {2, 3, 4} and m.learners == {1}


def test_two_voter_changes_go_through_joint_consensus() -> None:
    joint = apply_conf_change(BASE, ConfChange((add_voter(4), remove_node(1))))
    assert joint.joint and joint.auto_leave
    assert joint.voters == {2, 3, 4} and joint.voters_outgoing == {1, 2, 3}
    assert joint.all_voters() == {1, 2, 3, 4}
    final = apply_conf_change(joint, ConfChange())
    assert final == Membership(voters=frozenset({2, 3, 4}))


def test_demoting_a_voter_in_joint_keeps_it_voting_until_leave() -> None:
    joint = apply_conf_change(
        BASE,
        ConfChange((add_learner(3),), ConfChangeTransition.JOINT_EXPLICIT),
    )
    assert joint.learners_next == {3} and 3 in joint.voters_outgoing and not joint.auto_leave
    final = apply_conf_change(joint, ConfChange())
    assert final.voters == {1, 2} and final.learners == {3}


@pytest.mark.parametrize(
    ("start", "cc", "why"),
    [
        (BASE, ConfChange(), "non-joint"),
        (
            apply_conf_change(BASE, ConfChange((add_voter(4), add_voter(5)))),
            ConfChange((add_voter(6),)),
            "joint",
        ),
        (
            Membership(voters=frozenset({1})),
            ConfChange((remove_node(1),)),
            "removed all voters",
        ),
        (BASE, ConfChange((add_voter(0),)), "invalid node id"),
    ],
)
def test_invalid_changes_are_refused(start: Membership, cc: ConfChange, why: str) -> None:
    with pytest.raises(ConfChangeError, match=why):
        apply_conf_change(start, cc)


def test_simple_refuses_more_than_one_voter() -> None:
    with pytest.raises(ConfChangeError, match="more than one voter"):
        simple(BASE, (remove_node(1), remove_node(2)))


def test_conf_state_round_trip() -> None:
    joint = apply_conf_change(BASE, ConfChange((add_voter(4), remove_node(1), add_learner(7))))
    cs = joint.conf_state()
    assert cs == ConfState((2, 3, 4), (7,), (1, 2, 3), (), True)
    assert Membership.from_conf_state(cs) == joint
    assert cs.members() == {1, 2, 3, 4, 7}
