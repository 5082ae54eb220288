"""A replica that lost its disk, and a leader whose idea of a follower's log is out of date.

The rule (docs/raft.md, "Disk loss"): a member that lost its data comes back as a
new member: removed, started empty as a joiner, added as a learner, promoted.
The core must also survive a follower that holds less than it acknowledged
(a wiped learner, a tail written without fsync): no broken invariant, no
commit of entries the follower lacks, and the leader backs up to what it holds.
"""

from __future__ import annotations

from nomadkv.raft import (
    Config,
    Message,
    MessageType,
    add_learner,
    add_voter,
    remove_node,
)
from nomadkv.raft.progress import ProgressState
from nomadkv.sim.scenario import Scenario

PLAIN = Config(id=1, pre_vote=False, check_quorum=False)


def elect(s: Scenario, node_id: int) -> None:
    s.campaign(node_id)
    s.deliver()
    assert s.leader_id() == node_id


def write(s: Scenario, leader: int, count: int, tag: str) -> None:
    for i in range(count):
        s.propose(leader, f"w:{tag}={i}".encode())
        s.deliver()
    s.tick(leader)  # the followers learn the last commit index at the leader's next tick
    s.deliver()


def replies(s: Scenario, node_id: int, kind: MessageType) -> list[Message]:
    return [m for rd in s.recorder.readies.get(node_id, []) for m in rd.messages if m.type is kind]


def test_a_wiped_voter_is_removed_then_rejoins_as_a_new_member() -> None:
    s = Scenario(config=PLAIN, snapshot_every=4)
    elect(s, 1)
    write(s, 1, 10, "k")
    s.wipe(3)
    s.propose_conf_change(1, remove_node(3))
    s.deliver()
    assert s.node(1).conf_state().voters == (1, 2)
    write(s, 1, 5, "while-out")
    s.rejoin(3)
    assert s.node(3).status().conf_state.members() == frozenset()  # a joiner
    s.propose_conf_change(1, add_learner(3))
    s.settle(5)
    assert s.node(3).conf_state().learners == (3,)
    s.propose_conf_change(1, add_voter(3))
    s.settle(5)
    assert all(s.node(n).conf_state().voters == (1, 2, 3) for n in (1, 2, 3))
    assert s.applied_values(3) == s.applied_values(1) == {"k": "9", "while-out": "4"}


def test_the_leader_backs_up_to_a_wiped_learner_and_sends_it_the_snapshot() -> None:
    s = Scenario(config=PLAIN, snapshot_every=4)
    elect(s, 1)
    s.add_node(4)
    s.propose_conf_change(1, add_learner(4))
    s.settle(3)
    write(s, 1, 10, "k")
    s.settle(2)
    match_before = s.node(1).raft.tracker.progress[4].match_index
    assert match_before == s.node(1).raft.log.last_index()
    s.wipe(4)  # a learner may come back empty without leaving: it never voted
    s.rejoin(4)
    s.tick(1, PLAIN.heartbeat_ticks)  # the heartbeat carries commit = min(match, committed)
    s.deliver()
    rejected = [m for m in replies(s, 4, MessageType.HEARTBEAT_RESP) if m.reject]
    assert rejected and rejected[0].reject_hint == 0  # "I hold nothing": no invariant broken
    assert any(m.snapshot is not None for m in replies(s, 1, MessageType.SNAPSHOT))
    s.settle(3)
    progress = s.node(1).raft.tracker.progress[4]
    assert progress.state is ProgressState.REPLICATE
    assert progress.match_index == s.node(1).raft.log.last_index()
    assert s.node(4).conf_state().learners == (4,)
    assert s.applied_values(4) == s.applied_values(1) == {"k": "9"}


def test_a_heartbeat_commits_only_what_is_known_to_match_the_leader() -> None:
    """Node 3 holds entries 3..5 of a leader of term 2 that never committed them. The
    next leader's heartbeat claims commit 5 (as a leader with stale progress would):
    node 3 must not commit entries that may differ from that leader's."""
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.cut(1, 2)
    for i in range(3):
        s.propose(1, b"w:stale=%d" % i)
    s.deliver_only(lambda m: m.type is not MessageType.APPEND_RESP)  # never acknowledged
    s.crash(1)
    s.heal()
    assert s.node(3).raft.log.last_index() == 5 and s.commit(3) == 2
    s.act(3, lambda raw: raw.step(Message(MessageType.HEARTBEAT, 3, 2, 3, commit=5)))
    assert s.commit(3) == 2 and s.node(3).raft.term == 3
    answer = replies(s, 3, MessageType.HEARTBEAT_RESP)[-1]
    assert answer.reject and answer.reject_hint == 5
    assert s.applied_values(3) == {}


def test_a_restarted_follower_learns_the_commit_index_from_the_append_it_asks_for() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    write(s, 1, 3, "k")
    assert s.commit(3) == 5
    s.crash(3)  # its commit index was written without fsync: it restarts lower
    s.restart(3)
    assert s.commit(3) < 5
    s.tick(1, PLAIN.heartbeat_ticks)
    s.deliver()
    assert any(m.reject for m in replies(s, 3, MessageType.HEARTBEAT_RESP))
    assert s.commit(3) == 5 and s.applied_values(3) == {"k": "2"}
