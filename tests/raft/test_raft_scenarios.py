"""The paper's tricky cases, step by step, with the safety checkers watching every step."""

from __future__ import annotations

import pytest

from nomadkv.raft import (
    Config,
    Message,
    MessageType,
    RequestDropped,
    StateRole,
    add_learner,
    add_voter,
    remove_node,
)
from nomadkv.sim.checker import Violation
from nomadkv.sim.mutation import mutated
from nomadkv.sim.scenario import Scenario

# Paper-style Raft for hand-driven elections: no PreVote, no leader stickiness.
PLAIN = Config(id=1, pre_vote=False, check_quorum=False, max_size_per_msg=1)


def elect(s: Scenario, node_id: int) -> None:
    s.campaign(node_id)
    s.deliver()
    assert s.leader_id() == node_id


def run_figure8(s: Scenario) -> None:
    """Raft paper Figure 8 on five servers S1..S5."""
    elect(s, 1)  # (a) S1 leads term 2; its empty entry 2 commits everywhere.
    for peer in (3, 4, 5):
        s.cut(1, peer)
    s.propose(1, b"w:x=term2")  # entry 3 of term 2 reaches S2 only
    s.deliver()
    s.crash(1)
    s.heal()
    s.campaign(5)  # (b) S5 leads term 3 with votes from S3, S4; its entry 3 reaches nobody.
    s.deliver_only(lambda m: m.type is not MessageType.APPEND)
    assert s.leader_id() == 5
    s.in_flight()
    s.crash(5)
    s.restart(1)  # (c) S1 restarts and leads term 4 ...
    for _ in range(2):
        s.campaign(1)
        s.deliver_only(lambda m: m.type is not MessageType.APPEND)
    assert s.term(1) == 4

    def holds_entry_3_of_term_2(node_id: int) -> bool:
        return s.node(node_id).raft.log.term(3) == 2

    def not_entry_4_to_a_caught_up_node(m: Message) -> bool:
        return not (any(e.index == 4 for e in m.entries) and holds_entry_3_of_term_2(m.to))

    for _ in range(5):  # ... and replicates entry 3 of term 2 to S3 and S4, not its entry 4
        s.tick(1)
        s.deliver_only(not_entry_4_to_a_caught_up_node)
    assert s.role(1) is StateRole.LEADER
    s.crash(1)  # (d) S1 crashes; S5 can win again: its last entry has term 3 > 2.
    s.restart(5)
    for _ in range(3):
        s.campaign(5)
        s.deliver()
        if s.leader_id() == 5:
            break


def test_figure8_an_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    s = Scenario(voters=(1, 2, 3, 4, 5), config=PLAIN)
    run_figure8(s)
    # S5 led term 5 and replaced entry 3: safe, because S1 never committed it.
    assert s.leader_id() == 5
    assert s.term(5) == 5
    assert s.node(3).raft.log.term(3) == 3


def test_figure8_without_the_rule_the_checkers_catch_the_lost_commit() -> None:
    s = Scenario(voters=(1, 2, 3, 4, 5), config=PLAIN)
    with mutated("figure8"), pytest.raises(Violation, match="leader completeness"):
        run_figure8(s)


def settle_leader(s: Scenario) -> int:
    for _ in range(200):
        s.tick_all()
        s.deliver()
        if s.leader_id():
            s.settle(2)
            return s.leader_id()
    raise AssertionError("no leader")


def test_a_partitioned_old_leader_commits_nothing_and_steps_down_on_return() -> None:
    s = Scenario(voters=(1, 2, 3, 4, 5), config=Config(id=1), seed=11)
    old = settle_leader(s)
    old_term = s.term(old)
    s.isolate(old)
    stale_index = s.propose(old, b"w:k=lost")  # accepted by the old leader only
    s.node(old).read_index(b"stale-read")
    s.cluster.process(old)
    # The majority elects a new leader and moves on; the old one sees none of it.
    for _ in range(60):
        for n in range(1, 6):
            if n != old:
                s.tick(n)
        s.deliver()
    new = s.leader_id()
    assert new not in (0, old) and s.term(new) > old_term
    s.propose(new, b"w:k=kept")
    s.deliver()
    # CheckQuorum: cut off for an election timeout, the old leader stepped down.
    for _ in range(25):
        s.tick(old)
        s.deliver()
    assert s.role(old) is StateRole.FOLLOWER
    assert old not in s.recorder.read_states  # its read was never confirmed
    s.heal()
    s.settle(20)
    assert s.node(old).raft.log.term(stale_index) != old_term  # the stale entry is gone
    assert all(s.applied_values(n) == {"k": "kept"} for n in range(1, 6))


def test_a_leader_removed_by_a_conf_change_steps_down_and_hands_over() -> None:
    s = Scenario(config=PLAIN)
    s.campaign(1)
    s.deliver()
    s.propose(1, b"w:a=1")
    s.propose_conf_change(1, remove_node(1))
    s.deliver()
    # Applying its own removal, the leader stepped down and sent TimeoutNow to a caught-up
    # voter, which won at once: no election timeout elapsed (nobody ticked).
    assert s.role(1) is StateRole.FOLLOWER
    new = s.leader_id()
    assert new in (2, 3)
    assert s.node(new).conf_state().voters == (2, 3)
    assert sent_types(s, 1).count(MessageType.TIMEOUT_NOW) == 1
    s.propose(new, b"w:a=2")
    s.deliver()
    s.tick(new)  # the other voter learns the commit index at the leader's next tick
    s.deliver()
    assert s.applied_values(2) == s.applied_values(3) == {"a": "2"}
    s.settle(30)  # the removed node never campaigns again
    assert s.role(1) is StateRole.FOLLOWER and s.leader_id() == new


def test_a_learner_promoted_during_a_partition_joins_the_quorum_when_it_returns() -> None:
    s = Scenario(config=PLAIN, snapshot_every=5)
    s.campaign(1)
    s.deliver()
    s.add_node(4)
    s.propose_conf_change(1, add_learner(4))
    s.deliver()
    s.settle(3)
    s.isolate(4)  # the learner is cut off ...
    for i in range(12):
        s.propose(1, b"w:k=%d" % i)
        s.deliver()
    s.propose_conf_change(1, add_voter(4))  # ... and promoted meanwhile (1, 2, 3 commit it)
    s.deliver()
    s.tick(1)
    s.deliver()
    assert s.node(1).conf_state().voters == (1, 2, 3, 4)
    assert s.node(4).conf_state().learners == (4,)  # it has not heard yet
    # Four voters need three: with 3 down too, the leader cannot commit until 4 returns.
    s.crash(3)
    index = s.propose(1, b"w:k=needs-4")
    s.settle(3)
    assert s.commit(1) < index
    s.heal()
    s.settle(5)  # 4 catches up (by snapshot: the log was compacted) and votes
    assert s.commit(1) >= index
    assert s.applied_values(4) == s.applied_values(1) == {"k": "needs-4"}
    assert s.node(4).conf_state().voters == (1, 2, 3, 4)


def test_leadership_transfer_to_a_lagging_node_catches_it_up_first() -> None:
    s = Scenario(config=PLAIN, snapshot_every=4)
    s.campaign(1)
    s.deliver()
    s.isolate(3)
    for i in range(10):
        s.propose(1, b"w:k=%d" % i)
        s.deliver()
    s.heal()
    s.act(1, lambda raw: raw.transfer_leadership(3))
    with pytest.raises(RequestDropped, match="transfer"):
        s.node(1).propose(b"w:k=refused")
    assert MessageType.TIMEOUT_NOW not in sent_types(s, 1)  # 3 is behind: catch up first
    s.deliver()
    assert s.leader_id() == 3 and s.term(3) == 3
    assert sent_types(s, 1).count(MessageType.TIMEOUT_NOW) == 1
    s.propose(3, b"w:k=from-3")
    s.deliver()
    s.tick(3)
    s.deliver()
    assert all(s.applied_values(n) == {"k": "from-3"} for n in (1, 2, 3))


def sent_types(s: Scenario, node_id: int) -> list[MessageType]:
    return [m.type for rd in s.recorder.readies.get(node_id, []) for m in rd.messages]
