"""Leader crashes and pauses under load (issue 4's proof, real processes).

- kill -9 of the leader while client threads write: a new leader serves within
  a few election timeouts, and no acknowledged write is lost, neither on the
  new leader nor, once the old one is back, on any node;
- SIGSTOP of the leader until the others elect, then SIGCONT: commands that
  were queued in its sockets while it was paused run the moment it resumes,
  in its old term, and it must neither serve a stale read nor acknowledge a
  write that is then lost;
- SIGSTOP of either follower: the leader's ReadIndex rounds ask one follower,
  and reads must not wait for a paused one to resume.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable

import pytest
import redis
from clusterkit import (
    NO_RETRY,
    WriteLoad,
    barrier,
    check_acknowledged,
    leader_among,
    readonly_client,
    term_of,
    wait_for_leader,
)

from nomadkv.cluster.slots import key_slot
from nomadkv.harness import LocalCluster, wait_until

FAILOVER_BOUND_S = 5.0  # issue 4's target is 2 s with the default timeouts (50 ms x 10 ticks)
# A read whose round went to a follower that stopped answering waits for the next
# periodic heartbeat (100 ms with the defaults); the bound leaves room for a loaded machine.
READ_STALL_BOUND_S = 2.0
# What each connection to the paused leader has queued when it resumes: writes first
# (proposed in its old term) and reads first (a ReadIndex round in its old term).
ORDERS = [
    ("SET", "GET", "GET"),
    ("GET", "SET", "GET"),
    ("GET", "GET", "SET"),
    ("SET", "SET", "GET"),
]


def test_kill_leader_under_write_load_loses_no_acknowledged_write(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    with WriteLoad(cluster, threads=4) as load:
        wait_until(lambda: load.acks_after(0) >= 200, 30, "200 writes acknowledged")
        killed_at = time.monotonic()
        leader.kill()
        wait_until(
            lambda: load.acks_after(killed_at) >= 100,
            30,
            "100 writes acknowledged after the leader was killed",
        )
    first = load.first_ack_sent_after(killed_at)
    assert first is not None
    failover_s = first - killed_at
    print(f"kill -9 of the leader to the first acknowledged write: {failover_s:.3f} s")
    assert failover_s < FAILOVER_BOUND_S

    survivors = [node for node in cluster.nodes if node is not leader]
    new_leader = leader_among(survivors)
    client = new_leader.client(socket_timeout=10)
    checked = check_acknowledged(client, load.logs, "the new leader")
    assert checked >= 300

    leader.start()
    new_leader = cluster.leader(timeout_s=15)
    barrier(new_leader, cluster.nodes)
    for node in cluster.nodes:
        check_acknowledged(readonly_client(node), load.logs, f"node {node.host}")


@pytest.mark.parametrize("reads", ["read-index", "lease"])
def test_paused_leader_serves_no_stale_read_and_loses_no_acknowledged_write(
    make_cluster: Callable[..., LocalCluster], reads: str
) -> None:
    cluster = make_cluster(raft_lease_reads="yes" if reads == "lease" else "no")
    old = cluster.leader()
    others = [node for node in cluster.nodes if node is not old]
    r = old.client()
    assert r.set("s", "old") is True
    barrier(old, cluster.nodes)
    old_term = term_of(old)
    # Connections opened (and answered) before the pause: what is written to them
    # while the leader is stopped waits in its socket buffer.
    connections = []
    for _ in range(4):
        connection = redis.Connection(host=old.host, port=old.port, socket_timeout=20)
        connection.connect()
        connection.send_command("PING")
        assert connection.read_response() == b"PONG"
        connections.append(connection)

    old.signal(signal.SIGSTOP)
    try:
        new = leader_among(others, timeout_s=15)
        assert term_of(new) > old_term
        assert new.client().set("s", "new") is True  # acknowledged by the new majority
        for i, connection in enumerate(connections):
            commands = [
                ("GET", "s") if kind == "GET" else ("SET", f"paused:{i}:{j}", f"v{i}:{j}")
                for j, kind in enumerate(ORDERS[i])
            ]
            connection.send_packed_command(connection.pack_commands(commands))
    finally:
        old.signal(signal.SIGCONT)

    # Writes through the new leader take the log indexes the paused leader's
    # proposals may hold, so those are answered (as lost) rather than left waiting.
    rn = new.client(socket_timeout=10)
    for i in range(10):
        rn.set(f"after:{i}", i)

    stale: list[tuple[int, object]] = []
    acknowledged: dict[str, str] = {}
    answers: list[object] = []
    misdirected: list[tuple[str, int]] = []
    for i, connection in enumerate(connections):
        for j, kind in enumerate(ORDERS[i]):
            key = "s" if kind == "GET" else f"paused:{i}:{j}"
            try:
                reply: object = connection.read_response()
            except redis.ResponseError as exc:  # MOVED, CLUSTERDOWN, a lost write
                reply = exc
            answers.append(reply)
            # A command the old leader can no longer run is redirected by its own
            # key's slot, which is the slot a cluster client remaps.
            if isinstance(reply, redis.exceptions.MovedError) and reply.slot_id != key_slot(
                key.encode()
            ):
                misdirected.append((key, reply.slot_id))
            if kind == "GET" and reply == b"old":
                stale.append((i, reply))
            if kind == "SET" and reply == b"OK":
                acknowledged[f"paused:{i}:{j}"] = f"v{i}:{j}"
        connection.disconnect()
    assert not stale, f"the paused leader served stale reads: {stale} (all answers: {answers})"
    assert not misdirected, f"MOVED with another key's slot: {misdirected} ({answers})"

    leader = cluster.leader(timeout_s=15)
    client = leader.client(socket_timeout=10)
    for key, value in acknowledged.items():
        assert client.get(key) == value.encode(), f"{key} was acknowledged, then lost"
    assert client.get("s") == b"new"
    barrier(leader, cluster.nodes)
    for node in cluster.nodes:
        replica = readonly_client(node)
        assert replica.get("s") == b"new"
        for key, value in acknowledged.items():
            assert replica.get(key) == value.encode()


def test_cluster_failover_under_write_load_loses_no_acknowledged_write(
    cluster: LocalCluster,
) -> None:
    """A leadership transfer (CLUSTER FAILOVER on a follower) while clients write."""
    leader = cluster.leader()
    target = next(node for node in cluster.nodes if node is not leader)
    old_term = term_of(leader)
    with WriteLoad(cluster, threads=4) as load:
        wait_until(lambda: load.acks_after(0) >= 200, 30, "200 writes acknowledged")
        assert target.client(socket_timeout=10).execute_command("CLUSTER", "FAILOVER") in (
            True,
            b"OK",
        )
        wait_for_leader(target, cluster.nodes)
        moved_at = time.monotonic()
        wait_until(lambda: load.acks_after(moved_at) >= 100, 30, "writes on the new leader")
    assert term_of(target) > old_term
    barrier(target, cluster.nodes)
    for node in cluster.nodes:
        check_acknowledged(readonly_client(node), load.logs, f"node {node.host}")


def test_reads_on_the_leader_go_on_while_either_follower_is_paused(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    r = leader.client(socket_timeout=10)
    term = term_of(leader)
    for follower in [node for node in cluster.nodes if node is not leader]:
        follower.signal(signal.SIGSTOP)
        try:
            slowest_s = 0.0
            for i in range(30):
                assert r.set("k", i) is True
                started = time.monotonic()
                assert r.get("k") == str(i).encode()
                slowest_s = max(slowest_s, time.monotonic() - started)
        finally:
            follower.signal(signal.SIGCONT)
        print(f"slowest read with {follower.host} paused: {slowest_s * 1000:.0f} ms")
        assert slowest_s < READ_STALL_BOUND_S
    assert term_of(leader) == term


ROUNDS_OF_SETTLING = 3  # each catches the window (entries replicated, acks unread) often


def test_writes_settled_by_a_snapshot_are_never_called_not_committed(
    cluster: LocalCluster,
) -> None:
    """A paused leader's proposals often commit under the next leader. If that one
    compacts its log before the old leader resumes, the old leader learns their fate
    from a snapshot, which does not say whose entries it holds: it must not answer
    "not committed" for them (a bug hunt saw 5-20 such committed writes in 4 of 5
    runs; before the fix this test caught it in about a third of its rounds). The
    connections are closed instead: the client cannot know."""
    for round_ in range(ROUNDS_OF_SETTLING):
        replies = _pause_the_leader_under_writes_until_a_snapshot_settles_them(cluster, round_)
        check = cluster.leader(timeout_s=15).client(socket_timeout=10)
        called_lost = [k for k, r in replies.items() if isinstance(r, redis.ResponseError)]
        committed_anyway = [k for k in called_lost if check.get(k) is not None]
        assert not committed_anyway, f"answered {replies[committed_anyway[0]]} yet committed"


def _pause_the_leader_under_writes_until_a_snapshot_settles_them(
    cluster: LocalCluster, round_: int
) -> dict[str, object]:
    old = cluster.leader(timeout_s=15)
    others = [node for node in cluster.nodes if node is not old]
    replies: dict[str, object] = {}
    stop = threading.Event()

    def write(thread: int) -> None:
        client = redis.Redis(host=old.host, port=old.port, socket_timeout=60, retry=NO_RETRY)
        for n in itertools.count():
            key = f"settled:{round_}:{thread}:{n}"
            try:
                replies[key] = client.set(key, "v")
            except redis.ResponseError as exc:  # -MOVED, or "not committed"
                replies[key] = exc
            except (redis.ConnectionError, redis.TimeoutError):
                replies[key] = None  # fate unknown
                break
            if stop.is_set():
                break
        client.close()

    writers = [threading.Thread(target=write, args=(t,), daemon=True) for t in range(20)]
    for writer in writers:
        writer.start()
    wait_until(lambda: len(replies) >= 2000, 30, "2000 writes answered by the leader")
    old.signal(signal.SIGSTOP)
    stop.set()
    try:
        new = leader_among(others, timeout_s=15)
        client = new.client(socket_timeout=30)
        for fill in range(2):  # the log is kept back to the second-newest snapshot
            pipe = client.pipeline(transaction=False)
            for i in range(300):
                pipe.set(f"fill:{round_}:{fill}:{i}", "x" * 100)
            pipe.execute()
            assert client.save()
    finally:
        old.signal(signal.SIGCONT)
    for writer in writers:
        writer.join(timeout=60)
        assert not writer.is_alive()
    barrier(cluster.leader(timeout_s=15), cluster.nodes)
    return replies
