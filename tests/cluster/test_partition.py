"""Network partitions between the nodes' 127.0.0.x addresses (iptables, real processes).

- The leader cut off from both followers, three ways: both directions, the
  leader deaf (it sends, hears nothing) and the leader mute (it hears, its
  messages are lost). The majority side elects and goes on; the old leader
  answers errors (MOVED, CLUSTERDOWN) or nothing, never a read older than a
  write the majority acknowledged, never an OK for a write that is then lost;
  after healing every node holds the same data.
- A follower cut off: the leader and the other follower go on; the follower
  refuses to serve linearizable reads and writes, tries to get elected, and
  on healing catches up without disturbing the leader (PreVote: no term bump).

The test's client connections go to the client port and are never cut.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis
from clusterkit import (
    NO_RETRY,
    barrier,
    get_many,
    leader_among,
    raft_info,
    readonly_client,
    role,
    term_of,
)
from partition import Partition

from nomadkv.harness import LocalCluster, ServerProcess, wait_until

Cut = Callable[[Partition, str, list[str]], None]
LEADER_CUTS: dict[str, Cut] = {
    "both-ways": lambda part, leader, others: part.isolate([leader], others),
    "leader-deaf": lambda part, leader, others: part.cut(others, [leader]),
    "leader-mute": lambda part, leader, others: part.cut([leader], others),
}


def open_connection(node: ServerProcess) -> redis.Connection:
    """A client connection, opened and answered now, for commands sent later."""
    connection = redis.Connection(host=node.host, port=node.port, socket_timeout=20)
    connection.connect()
    connection.send_command("PING")
    assert connection.read_response() == b"PONG"
    return connection


def send(connection: redis.Connection, *commands: tuple[str, ...]) -> None:
    connection.send_packed_command(connection.pack_commands(commands))


def replies(connection: redis.Connection, count: int) -> list[object]:
    """The next ``count`` replies; an error reply is returned as its exception."""
    answers: list[object] = []
    for _ in range(count):
        try:
            answers.append(connection.read_response())
        except redis.ResponseError as exc:
            answers.append(exc)
    return answers


def minority_answer(node: ServerProcess, *command: str) -> object:
    """One command on a fresh connection: its reply, the error it raised, or the timeout."""
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=2.0, retry=NO_RETRY)
    try:
        return client.execute_command(*command)
    except (redis.ResponseError, redis.TimeoutError) as exc:
        return exc
    finally:
        client.close()


def same_everywhere(cluster: LocalCluster, expected: dict[str, bytes | None]) -> None:
    """After a barrier: every node holds ``expected`` and as many keys as the leader."""
    sizes = {}
    for node in cluster.nodes:
        replica = readonly_client(node)
        keys = sorted(expected)
        assert get_many(replica, keys) == [expected[k] for k in keys], f"{node.host} differs"
        sizes[node.host] = replica.dbsize()
        replica.close()
    assert len(set(sizes.values())) == 1, f"the nodes hold different key counts: {sizes}"


@pytest.mark.parametrize("cut", list(LEADER_CUTS))
def test_cut_off_leader_answers_errors_and_majority_goes_on(
    cluster: LocalCluster, cut: str
) -> None:
    old = cluster.leader()
    others = [node for node in cluster.nodes if node is not old]
    r = old.client(socket_timeout=10)
    expected: dict[str, bytes | None] = {f"pre:{i}": str(i).encode() for i in range(100)}
    for key, value in expected.items():
        r.set(key, value)
    assert r.set("p", "before") is True
    barrier(old, cluster.nodes)
    old_term = term_of(old)
    early, late = open_connection(old), open_connection(old)

    with Partition(cluster.bus_port) as partition:
        LEADER_CUTS[cut](partition, old.host, [node.host for node in others])
        cut_at = time.monotonic()
        # At once, before the old leader can notice: a write and a read in its term.
        send(early, ("SET", "q:early", "1"), ("GET", "p"))
        new = leader_among(others, timeout_s=15)
        elected_s = time.monotonic() - cut_at
        assert term_of(new) > old_term
        assert new.client(socket_timeout=10).set("p", "during") is True  # the majority alone
        # From here on a read of p that starts anywhere must not see "before".
        send(late, ("GET", "p"), ("SET", "q:late", "1"), ("GET", "p"))
        seen: list[object] = []

        def minority_refuses() -> bool:
            answer = minority_answer(old, "GET", "p")
            seen.append(answer)
            return isinstance(
                answer, (redis.exceptions.ClusterDownError, redis.exceptions.MovedError)
            )

        wait_until(minority_refuses, 10, "the cut-off leader to answer CLUSTERDOWN or MOVED")
        assert all(isinstance(a, Exception) or a == b"during" for a in seen), seen
        minority_write = minority_answer(old, "SET", "q:minority", "1")
        assert new.client(socket_timeout=10).set("during:last", "1") is True
        print(f"{cut}: a new leader {elected_s:.2f} s after the cut; old leader wrote {seen[-1]!r}")

    healed_at = time.monotonic()
    leader = cluster.leader(timeout_s=30)
    # Writes through the leader take over the log indexes of the old leader's
    # proposals in its old term, so those are answered instead of waiting.
    client = leader.client(socket_timeout=10)
    for i in range(10):
        client.set(f"after:{i}", i)
    barrier(leader, cluster.nodes, timeout_s=30)
    print(f"{cut}: converged {time.monotonic() - healed_at:.2f} s after healing")

    early_answers, late_answers = replies(early, 2), replies(late, 3)
    assert early_answers[1] in (b"before", b"during") or isinstance(
        early_answers[1], redis.ResponseError
    ), early_answers  # concurrent with the write of "during": either value is linearizable
    late_reads = [late_answers[0], late_answers[2]]
    assert all(a == b"during" or isinstance(a, redis.ResponseError) for a in late_reads), (
        f"stale read from the cut-off leader: {late_answers}"
    )
    acknowledged = {
        "q:early": early_answers[0] == b"OK",
        "q:late": late_answers[1] == b"OK",
        "q:minority": minority_write is True,
    }
    for key, ok in acknowledged.items():
        if ok:
            assert client.get(key) == b"1", f"{key} was acknowledged by the old leader, then lost"
    expected |= {"p": b"during", "during:last": b"1"}
    expected |= {f"after:{i}": str(i).encode() for i in range(10)}
    same_everywhere(cluster, expected)


def test_cut_off_follower_catches_up_without_disturbing_the_leader(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower, other = [node for node in cluster.nodes if node is not leader]
    r = leader.client(socket_timeout=10)
    assert r.set("before", "1") is True
    barrier(leader, cluster.nodes)
    term = term_of(leader)

    with Partition(cluster.bus_port) as partition:
        partition.isolate([follower.host], [leader.host, other.host])
        expected = {f"iso:{i}": str(i).encode() for i in range(200)}
        for key, value in expected.items():
            assert r.set(key, value) is True  # committed by the leader and `other`
        barrier(leader, [other])
        assert readonly_client(follower).get("iso:199") is None, "the cut did not cut"
        wait_until(
            lambda: raft_info(follower)["role"] == "candidate",
            10,
            "the cut-off follower to stand for election",
        )
        for command in (("GET", "before"), ("SET", "iso:follower", "1")):
            answer = minority_answer(follower, *command)
            assert isinstance(
                answer, (redis.exceptions.ClusterDownError, redis.exceptions.MovedError)
            ), f"the cut-off follower answered {command} with {answer!r}"

    barrier(leader, cluster.nodes, timeout_s=30)
    assert role(leader)[0] == b"master"  # type: ignore[index]
    assert term_of(leader) == term, "the follower's return forced an election"
    replica = readonly_client(follower)
    keys = sorted(expected)
    assert get_many(replica, keys) == [expected[k] for k in keys]
    assert replica.get("iso:follower") is None


@pytest.mark.parametrize("reads", ["read-index", "lease"])
def test_paused_leader_that_cannot_hear_the_new_one_serves_no_stale_read(
    make_cluster: Callable[..., LocalCluster], reads: str
) -> None:
    """The leader is paused and, while paused, cut off from what the others send it;
    they elect and acknowledge a new value. Resumed, it still believes it leads (it
    cannot hear otherwise). A read there must not return the old value: with leases,
    the time it spent paused must count against its lease."""
    cluster = make_cluster(raft_lease_reads="yes" if reads == "lease" else "no")
    old = cluster.leader()
    others = [node for node in cluster.nodes if node is not old]
    assert old.client(socket_timeout=10).set("s", "old") is True
    barrier(old, cluster.nodes)
    connection = open_connection(old)
    # A read on the leader right before the pause: its confirmation round is what
    # grants a lease, so the lease is fresh when the pause begins.
    send(connection, ("GET", "s"))
    assert replies(connection, 1) == [b"old"]
    with Partition(cluster.bus_port) as partition:
        old.signal(signal.SIGSTOP)
        try:
            partition.cut([node.host for node in others], [old.host])
            new = leader_among(others, timeout_s=15)
            assert new.client(socket_timeout=10).set("s", "new") is True
            send(connection, ("GET", "s"))
        finally:
            old.signal(signal.SIGCONT)
        answer = replies(connection, 1)[0]
    assert answer != b"old", "the resumed leader served a stale read"
    assert answer == b"new" or isinstance(answer, redis.ResponseError), answer
