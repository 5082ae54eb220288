"""The protocol, feature by feature, on hand-driven clusters (checkers on at every step)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from nomadkv.raft import (
    ConfChange,
    ConfChangeTransition,
    Config,
    ConfigError,
    InvariantViolation,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    RequestDropped,
    StateRole,
    add_learner,
    add_voter,
    remove_node,
)
from nomadkv.raft.progress import ProgressState
from nomadkv.sim.scenario import Scenario

PLAIN = Config(id=1, pre_vote=False, check_quorum=False)


def settle_leader(s: Scenario, rounds: int = 100) -> int:
    for _ in range(rounds):
        s.tick_all()
        s.deliver()
        if s.leader_id():
            s.deliver()
            return s.leader_id()
    raise AssertionError("no leader")


def elect(s: Scenario, node_id: int) -> None:
    s.campaign(node_id)
    s.deliver()
    assert s.leader_id() == node_id


def sent(s: Scenario, node_id: int, kind: MessageType) -> list[Message]:
    return [m for rd in s.recorder.readies.get(node_id, []) for m in rd.messages if m.type is kind]


# -- elections ---------------------------------------------------------------------------------


def test_single_node_elects_itself_and_commits_at_once() -> None:
    s = Scenario(voters=(1,))
    settle_leader(s)
    index = s.propose(1, b"w:a=1")
    assert s.commit(1) == index
    assert s.applied_values(1) == {"a": "1"}


def test_ticking_elects_exactly_one_leader_and_commits_its_empty_entry() -> None:
    s = Scenario(voters=(1, 2, 3, 4, 5), seed=7)
    leader = settle_leader(s)
    s.settle(3)
    assert [s.role(n) for n in range(1, 6)].count(StateRole.LEADER) == 1
    assert all(s.commit(n) == s.commit(leader) == 2 for n in range(1, 6))


def test_prevote_keeps_a_partitioned_node_from_inflating_terms() -> None:
    s = Scenario(seed=3)
    leader = settle_leader(s)
    follower = next(n for n in (1, 2, 3) if n != leader)
    term = s.term(leader)
    s.isolate(follower)
    for _ in range(100):
        s.tick(follower)
        s.deliver()
    assert s.term(follower) == term  # pre-votes fail without changing the term
    s.heal()
    s.settle(20)
    assert s.leader_id() == leader and s.term(leader) == term


def test_without_prevote_a_rejoining_node_disrupts_the_leader() -> None:
    s = Scenario(config=replace(PLAIN, check_quorum=False), seed=3)
    leader = settle_leader(s)
    follower = next(n for n in (1, 2, 3) if n != leader)
    term = s.term(leader)
    s.isolate(follower)
    for _ in range(50):
        s.tick(follower)
        s.deliver()
    assert s.term(follower) > term + 1
    s.heal()
    s.settle(30)
    assert s.term(s.leader_id()) > term


def test_check_quorum_steps_down_a_leader_cut_off_from_the_majority() -> None:
    s = Scenario(seed=1)
    leader = settle_leader(s)
    s.isolate(leader)
    for _ in range(2 * 10 + 1):
        s.tick(leader)
        s.deliver()
    assert s.role(leader) is StateRole.FOLLOWER


def test_followers_with_a_leader_ignore_elections_leader_stickiness() -> None:
    s = Scenario(seed=1)
    leader = settle_leader(s)
    a, b = (n for n in (1, 2, 3) if n != leader)
    term = s.term(a)
    vote = Message(MessageType.VOTE, a, b, term + 1, log_term=term, index=s.commit(a))
    s.act(a, lambda raw: raw.step(vote))
    assert s.term(a) == term and not s.in_flight()


def test_a_voter_refuses_a_candidate_with_a_shorter_log() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.isolate(3)
    s.propose(1, b"w:a=1")
    s.deliver()
    s.heal()
    s.campaign(3)
    s.deliver()
    assert s.role(3) is not StateRole.LEADER
    votes = sent(s, 1, MessageType.VOTE_RESP) + sent(s, 2, MessageType.VOTE_RESP)
    assert votes and all(m.reject for m in votes if m.to == 3)
    s.settle(30)
    assert s.leader_id() in (1, 2)
    assert s.applied_values(3) == {"a": "1"}


def test_hard_state_with_the_vote_is_in_the_same_ready_as_the_vote() -> None:
    s = Scenario(config=PLAIN)
    s.campaign(1)
    s.deliver()
    for voter in (2, 3):
        grants = [
            rd
            for rd in s.recorder.readies[voter]
            if any(m.type is MessageType.VOTE_RESP and not m.reject for m in rd.messages)
        ]
        assert grants
        rd = grants[0]
        assert rd.hard_state is not None and rd.hard_state.vote == 1 and rd.must_sync


# -- replication -------------------------------------------------------------------------------


def test_fast_backtracking_skips_a_whole_divergent_term() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 3)
    s.isolate(3)
    for i in range(40):
        s.propose(3, b"w:stale=%d" % i)  # term 2, never committed
    s.heal()
    s.cut(1, 3)
    s.cut(2, 3)
    elect(s, 1)
    for i in range(40):
        s.propose(1, b"w:fresh=%d" % i)  # term 3, committed by 1 and 2
    s.deliver()
    s.act(1, lambda raw: raw.transfer_leadership(2))
    s.deliver()
    assert s.leader_id() == 2  # its next index for 3 is past all 40 divergent entries
    s.heal()
    s.tick(2)
    s.deliver()
    rejects = [m for m in sent(s, 3, MessageType.APPEND_RESP) if m.reject and m.term == s.term(2)]
    assert len(rejects) == 1
    assert s.applied_values(3) == s.applied_values(2)


def test_inflight_window_bounds_pipelined_appends() -> None:
    s = Scenario(config=replace(PLAIN, max_inflight_msgs=2, max_size_per_msg=1))
    elect(s, 1)
    s.cut(1, 2)
    for i in range(10):
        s.propose(1, b"w:k=%d" % i)
    to_3 = [m for m in s.in_flight() if m.to == 3 and m.type is MessageType.APPEND]
    assert len(to_3) == 2 and all(len(m.entries) == 1 for m in to_3)
    s.heal()
    s.settle(5)
    assert s.commit(3) == s.commit(1) == 12


def test_lost_appends_are_recovered_after_a_heartbeat() -> None:
    s = Scenario(config=replace(PLAIN, max_inflight_msgs=1))
    elect(s, 1)
    s.propose(1, b"w:a=1")
    s.in_flight()  # the append is lost
    s.propose(1, b"w:a=2")  # paused: the window is full
    assert not [m for m in s.in_flight() if m.type is MessageType.APPEND]
    s.settle(3)
    assert s.applied_values(2) == s.applied_values(3) == {"a": "2"}


def test_proposals_at_a_follower_are_refused_with_a_leader_hint() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 2)
    with pytest.raises(RequestDropped) as err:
        s.node(1).propose(b"x")
    assert err.value.leader_id == 2


def test_batched_proposals_travel_in_one_append() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    last = s.node(1).propose_batch([b"w:k=%d" % i for i in range(100)])
    s.cluster.process(1)
    appends = [m for m in s.in_flight() if m.type is MessageType.APPEND and m.to == 2]
    assert len(appends) == 1 and appends[0].entries[-1].index == last == 102


# -- reads -------------------------------------------------------------------------------------


def test_read_index_batches_concurrent_reads_into_one_heartbeat_round() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    heartbeats_before = len(sent(s, 1, MessageType.HEARTBEAT))
    for i in range(5):
        s.node(1).read_index(b"r%d" % i)
    s.cluster.process(1)
    s.deliver()
    assert len(sent(s, 1, MessageType.HEARTBEAT)) - heartbeats_before == 1  # one round
    states = s.recorder.read_states[1]
    assert [rs.context for rs in states] == [b"r%d" % i for i in range(5)]
    assert {rs.index for rs in states} == {s.commit(1)}


@pytest.mark.parametrize(("voters", "asked"), [((1, 2, 3), 1), ((1, 2, 3, 4, 5), 2)])
def test_a_read_round_asks_only_enough_voters_for_a_quorum(
    voters: tuple[int, ...], asked: int
) -> None:
    s = Scenario(voters=voters, config=PLAIN)
    elect(s, 1)
    s.add_node(6)
    s.propose_conf_change(1, add_learner(6))
    s.deliver()
    before = len(sent(s, 1, MessageType.HEARTBEAT))
    s.node(1).read_index(b"r")
    s.cluster.process(1)
    round_ = sent(s, 1, MessageType.HEARTBEAT)[before:]
    assert len(round_) == asked and 6 not in {m.to for m in round_}  # never the learner
    s.deliver()
    assert [rs.context for rs in s.recorder.read_states[1]] == [b"r"]


def test_a_read_round_whose_follower_is_gone_is_confirmed_by_the_next_heartbeat() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    before = len(sent(s, 1, MessageType.HEARTBEAT))
    s.node(1).read_index(b"first")
    s.cluster.process(1)
    [asked] = [m.to for m in sent(s, 1, MessageType.HEARTBEAT)[before:]]
    s.isolate(asked)
    s.deliver()
    assert 1 not in s.recorder.read_states
    s.tick(1, PLAIN.heartbeat_ticks)  # the periodic heartbeat goes to everyone
    s.deliver()
    assert [rs.context for rs in s.recorder.read_states[1]] == [b"first"]
    # The next round asks the follower that answered.
    before = len(sent(s, 1, MessageType.HEARTBEAT))
    s.node(1).read_index(b"second")
    s.cluster.process(1)
    assert [m.to for m in sent(s, 1, MessageType.HEARTBEAT)[before:]] == [5 - asked]
    s.deliver()
    assert [rs.context for rs in s.recorder.read_states[1]] == [b"first", b"second"]


def test_a_follower_read_is_confirmed_by_the_leader() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.propose(1, b"w:a=1")
    s.deliver()
    s.act(3, lambda raw: raw.read_index(b"follower-read"))
    s.deliver()
    [state] = s.recorder.read_states[3]
    assert state.context == b"follower-read" and state.index == s.commit(1)


def test_a_new_leader_serves_reads_only_after_its_first_commit() -> None:
    s = Scenario(config=PLAIN)
    s.campaign(1)
    s.deliver_only(lambda m: m.type is not MessageType.APPEND)
    assert s.role(1) is StateRole.LEADER
    s.node(1).read_index(b"early")
    s.cluster.process(1)
    assert 1 not in s.recorder.read_states
    s.tick(1)
    s.deliver()
    assert [rs.context for rs in s.recorder.read_states[1]] == [b"early"]


def test_a_partitioned_leader_releases_no_read() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.isolate(1)
    s.node(1).read_index(b"stale?")
    s.cluster.process(1)
    s.settle(5)
    assert 1 not in s.recorder.read_states


def test_lease_reads_skip_the_round_while_the_lease_holds() -> None:
    s = Scenario(config=Config(id=1, lease_reads=True), seed=5)
    leader = settle_leader(s)
    s.settle(2)  # a heartbeat round confirms the lease
    before = len(sent(s, leader, MessageType.HEARTBEAT))
    s.node(leader).read_index(b"lease")
    s.cluster.process(leader)
    assert [rs.context for rs in s.recorder.read_states[leader]] == [b"lease"]
    assert len(sent(s, leader, MessageType.HEARTBEAT)) == before
    # Cut off, the lease runs out within election_ticks - 2 ticks and reads wait for a round.
    s.isolate(leader)
    for _ in range(8):
        s.tick(leader)
    s.node(leader).read_index(b"expired")
    s.cluster.process(leader)
    assert [rs.context for rs in s.recorder.read_states[leader]] == [b"lease"]


def test_no_lease_reads_once_leadership_is_being_handed_over() -> None:
    s = Scenario(config=Config(id=1, lease_reads=True), seed=5)
    leader = settle_leader(s)
    s.settle(2)
    target = next(n for n in (1, 2, 3) if n != leader)
    s.node(leader).transfer_leadership(target)
    s.node(leader).read_index(b"during-transfer")
    s.cluster.process(leader)
    released = s.recorder.read_states.get(leader, [])
    assert b"during-transfer" not in [rs.context for rs in released]


# -- snapshots ---------------------------------------------------------------------------------


def test_a_lagging_follower_gets_the_snapshot_in_chunks() -> None:
    config = replace(PLAIN, snapshot_chunk_bytes=16, max_inflight_snapshot_chunks=2)
    s = Scenario(config=config, snapshot_every=5)
    elect(s, 1)
    s.isolate(3)
    for i in range(20):
        s.propose(1, b"w:k%d=%d" % (i % 4, i))
        s.deliver()
    assert s.node(1).raft.log.first_index() > 3
    s.heal()
    s.settle(10)
    chunks = sent(s, 1, MessageType.SNAPSHOT)
    assert len(chunks) > 2 and chunks[-1].snapshot is not None and chunks[-1].snapshot.done
    assert s.applied_values(3) == s.applied_values(1)
    assert s.node(3).raft.log.commit_index == s.commit(1)


def test_a_snapshot_transfer_survives_lost_chunks() -> None:
    config = replace(PLAIN, snapshot_chunk_bytes=8)
    s = Scenario(config=config, snapshot_every=5)
    elect(s, 1)
    s.isolate(3)
    for i in range(20):
        s.propose(1, b"w:k=%d" % i)
        s.deliver()
    s.heal()
    rng = random.Random(1)
    for _ in range(40):
        s.tick_all()
        s.deliver_only(lambda m: m.type is not MessageType.SNAPSHOT or rng.random() < 0.5)
    s.settle(5)
    assert s.applied_values(3) == s.applied_values(1) == {"k": "19"}


# -- membership --------------------------------------------------------------------------------


def test_a_joining_node_catches_up_as_a_learner_then_votes() -> None:
    s = Scenario(config=PLAIN, snapshot_every=4)
    elect(s, 1)
    for i in range(10):
        s.propose(1, b"w:k=%d" % i)
    s.deliver()
    s.add_node(4)
    s.propose_conf_change(1, add_learner(4))
    s.settle(5)
    assert s.node(4).conf_state().learners == (4,)
    assert s.applied_values(4) == {"k": "9"}
    assert not s.node(4).raft.tracker.is_voter(4)
    s.propose_conf_change(1, add_voter(4))
    s.settle(5)
    assert s.node(1).conf_state().voters == (1, 2, 3, 4)
    s.isolate(2)
    s.isolate(3)
    s.heal()
    s.cut(1, 2)
    s.cut(1, 3)
    s.propose(1, b"w:k=quorum-needs-4")  # quorum of 4 voters is 3: 1, 4 and one more
    s.deliver()
    assert s.applied_values(1)["k"] == "9"


def test_joint_consensus_replaces_a_voter_and_leaves_automatically() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.add_node(4)
    s.propose_conf_change(1, add_learner(4))
    s.settle(3)
    s.propose_conf_change(1, add_voter(4), remove_node(3))
    s.deliver()
    s.settle(3)
    for node_id in (1, 2, 4):
        cs = s.node(node_id).conf_state()
        assert cs.voters == (1, 2, 4) and not cs.voters_outgoing


def test_explicit_joint_configuration_waits_for_an_explicit_leave() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.propose_conf_change(1, add_learner(3), transition=ConfChangeTransition.JOINT_EXPLICIT)
    s.settle(3)
    cs = s.node(1).conf_state()
    assert cs.voters_outgoing == (1, 2, 3) and cs.learners_next == (3,)
    s.act(1, lambda raw: raw.propose_conf_change(ConfChange()))
    s.settle(3)
    cs = s.node(1).conf_state()
    assert cs.voters == (1, 2) and cs.learners == (3,) and not cs.voters_outgoing


def test_one_conf_change_at_a_time() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.node(1).propose_conf_change(ConfChange((add_learner(4),)))
    with pytest.raises(RequestDropped, match="still being applied"):
        s.node(1).propose_conf_change(ConfChange((add_learner(5),)))


def test_a_new_leader_changes_membership_only_after_its_first_commit() -> None:
    s = Scenario(config=PLAIN)
    s.campaign(1)
    s.deliver_only(lambda m: m.type is not MessageType.APPEND)
    with pytest.raises(RequestDropped, match="still being applied"):
        s.node(1).propose_conf_change(ConfChange((add_learner(4),)))


# -- leadership transfer -----------------------------------------------------------------------


def test_transfer_to_an_up_to_date_node_is_immediate() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.act(1, lambda raw: raw.transfer_leadership(2))
    s.deliver()
    assert s.leader_id() == 2 and s.term(2) == 3


def test_proposals_are_refused_during_a_transfer_and_resume_if_it_times_out() -> None:
    s = Scenario(config=Config(id=1, pre_vote=False), seed=2)
    leader = settle_leader(s)
    target = next(n for n in (1, 2, 3) if n != leader)
    s.isolate(target)
    s.act(leader, lambda raw: raw.transfer_leadership(target))
    with pytest.raises(RequestDropped, match="transfer"):
        s.node(leader).propose(b"x")
    for _ in range(10):
        s.tick(leader)
        s.deliver()
    assert s.node(leader).raft.lead_transferee == 0
    s.propose(leader, b"w:after=1")


def test_transfer_targets_must_be_voters() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    with pytest.raises(RequestDropped, match="not a voter"):
        s.node(1).transfer_leadership(9)
    with pytest.raises(RequestDropped, match="not the leader"):
        s.node(2).transfer_leadership(3)


# -- the Ready contract, restarts, status, config ------------------------------------------------


def test_ready_must_be_advanced_before_the_next_one() -> None:
    raw = RawNode(Config(id=1, voters=(1,)), MemoryStorage(), random.Random(0))
    rd = raw.ready()
    assert rd.snapshot is not None and rd.must_sync  # the bootstrap configuration
    with pytest.raises(InvariantViolation, match="before advance"):
        raw.ready()
    assert not raw.has_ready()
    raw.advance(rd)
    with pytest.raises(InvariantViolation, match="not the outstanding one"):
        raw.advance(rd)


def test_a_commit_only_change_needs_no_fsync() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.propose(1, b"w:a=1")
    s.deliver()
    s.tick(1)
    s.deliver()
    commit_only = [
        rd
        for rd in s.recorder.readies[2]
        if rd.hard_state is not None and not rd.entries and rd.hard_state.commit == 3
    ]
    assert commit_only and not commit_only[-1].must_sync


def test_a_restarted_node_keeps_its_term_vote_and_log() -> None:
    s = Scenario(config=PLAIN, snapshot_every=3)
    elect(s, 1)
    for i in range(7):
        s.propose(1, b"w:k=%d" % i)
    s.deliver()
    term, vote, last = s.term(2), s.node(2).raft.voted_for, s.node(2).raft.log.last_index()
    s.crash(2)
    s.restart(2)
    raft = s.node(2).raft
    assert (raft.term, raft.voted_for, raft.log.last_index()) == (term, vote, last)
    s.settle(3)
    assert s.applied_values(2) == {"k": "6"}


def test_status_reports_role_and_progress() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.propose(1, b"w:a=1")
    s.deliver()
    st = s.node(1).status()
    assert (st.role, st.leader_id, st.commit_index, st.applied_index) == (StateRole.LEADER, 1, 3, 3)
    assert {n: p.match_index for n, p in st.progress.items()} == {1: 3, 2: 3, 3: 3}
    assert st.progress[2].state == ProgressState.REPLICATE.name
    assert s.node(2).status().progress == {}


def test_report_unreachable_and_snapshot_failure_fall_back_to_probing() -> None:
    s = Scenario(config=PLAIN)
    elect(s, 1)
    s.propose(1, b"w:a=1")
    s.deliver()
    s.act(1, lambda raw: raw.report_unreachable(2))
    assert s.node(1).raft.tracker.progress[2].state is ProgressState.PROBE
    s.settle(2)
    assert s.node(1).raft.tracker.progress[2].state is ProgressState.REPLICATE
    s.act(1, lambda raw: raw.report_snapshot(2, False))  # not snapshotting: no effect
    assert s.node(1).raft.tracker.progress[2].state is ProgressState.REPLICATE


def test_messages_for_another_node_are_dropped() -> None:
    s = Scenario(config=PLAIN)
    s.act(1, lambda raw: raw.step(Message(MessageType.HEARTBEAT, 2, 3, 9)))
    assert s.term(1) == 1


@pytest.mark.parametrize(
    ("config", "why"),
    [
        (Config(id=0), "id"),
        (Config(id=1, election_ticks=1), "greater than heartbeat"),
        (Config(id=1, voters=(1, 2), learners=(2,)), "both voter and learner"),
        (Config(id=1, max_inflight_msgs=0), "max_inflight_msgs"),
        (Config(id=1, lease_reads=True, check_quorum=False), "check_quorum"),
        (Config(id=1, lease_reads=True, election_ticks=2), "lease"),
    ],
)
def test_config_validation(config: Config, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        config.validate()
