"""Membership changes on a running cluster (real processes).

A 4th node started with --cluster-join is added with CLUSTER MEET: it joins
as a learner, catches up, is promoted to voter, and holds the data; CLUSTER
FORGET removes it again; CLUSTER FAILOVER on a follower hands it leadership.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import redis
from clusterkit import (
    NO_RETRY,
    barrier,
    get_many,
    leader_among,
    raft_ids,
    raft_info,
    readonly_client,
    term_of,
    wait_for_leader,
)
from partition import Partition

from nomadkv.harness import (
    PORT_RANGE,
    LocalCluster,
    ServerProcess,
    StartError,
    nomadkv_node,
    port_is_free,
    wait_until,
)

JOINER_HOST = "127.0.0.5"


def port_free_on(hosts: list[str]) -> int:
    """A client port free on every host, with its bus port (+10000)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*PORT_RANGE)
        if all(port_is_free(port, h) and port_is_free(port + 10000, h) for h in hosts):
            return port
    raise StartError("no port free on every node address")


def cluster_nodes_lines(node: ServerProcess) -> list[str]:
    text = node.client(socket_timeout=5).execute_command("CLUSTER", "NODES")
    raw = text.decode() if isinstance(text, bytes) else str(text)
    return [line for line in raw.splitlines() if line]


def voters_and_learners(node: ServerProcess) -> tuple[set[int], set[int]]:
    info = raft_info(node)
    return raft_ids(info["voters"]), raft_ids(info["learners"])


def write_keys(leader: ServerProcess, prefix: str, count: int) -> dict[str, bytes | None]:
    pipe = leader.client(socket_timeout=10).pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"{prefix}:{i}", i)
    assert pipe.execute() == [True] * count
    return {f"{prefix}:{i}": str(i).encode() for i in range(count)}


def test_meet_promotes_a_learner_then_forget_and_failover(
    make_cluster: Callable[..., LocalCluster],
    processes: list[ServerProcess],
    tmp_path,
) -> None:
    port = port_free_on([f"127.0.0.{i}" for i in range(2, 6)])
    cluster = make_cluster(port=port)
    leader = cluster.leader()
    expected = write_keys(leader, "before", 2000)

    joiner = nomadkv_node(
        str(tmp_path / "node4"),
        host=JOINER_HOST,
        port=port,
        node_id=4,
        cluster_secret=cluster.secret,
        cluster_join="yes",
    )
    processes.append(joiner)
    joiner.start()
    joiner_id = joiner.client().execute_command("CLUSTER", "MYID").decode()
    assert len(joiner_id) == 40
    assert len(cluster_nodes_lines(leader)) == 3

    reply = leader.client(socket_timeout=10).execute_command("CLUSTER", "MEET", JOINER_HOST, port)
    assert reply in (True, b"OK")
    wait_until(
        lambda: voters_and_learners(leader) == ({1, 2, 3, 4}, set()),
        20,
        "node 4 to be promoted to voter",
    )
    with open(leader.log_path, "rb") as log:
        assert b"promoting learner 4 to voter" in log.read(), "node 4 was never a learner"
    expected |= write_keys(leader, "after-join", 200)
    barrier(leader, [*cluster.nodes, joiner])
    keys = sorted(expected)
    assert get_many(readonly_client(joiner), keys) == [expected[k] for k in keys]
    lines = cluster_nodes_lines(leader)
    assert len(lines) == 4
    assert any(line.startswith(joiner_id) and f"{JOINER_HOST}:{port}" in line for line in lines)
    assert raft_info(joiner)["role"] == "follower"

    # FORGET node 4 (by its 40-hex name), on the leader.
    leader = leader_among([*cluster.nodes, joiner])
    assert leader is not joiner
    reply = leader.client(socket_timeout=10).execute_command("CLUSTER", "FORGET", joiner_id)
    assert reply in (True, b"OK")
    wait_until(
        lambda: (
            voters_and_learners(leader) == ({1, 2, 3}, set())
            and len(cluster_nodes_lines(leader)) == 3
        ),
        20,
        "node 4 to leave the group",
    )
    expected |= write_keys(leader, "after-forget", 50)
    barrier(leader, cluster.nodes)
    assert readonly_client(joiner).get("after-forget:0") is None  # it gets no more entries
    # Still running, the removed node lists itself, as a forgotten Redis node does.
    own = [line.split(" ") for line in cluster_nodes_lines(joiner) if line.startswith(joiner_id)]
    assert len(own) == 1 and "myself" in own[0][2].split(",")

    # CLUSTER FAILOVER on a follower: leadership moves to it.
    follower = next(node for node in cluster.nodes if node is not leader)
    term = term_of(leader)
    reply = follower.client(socket_timeout=10).execute_command("CLUSTER", "FAILOVER")
    assert reply in (True, b"OK")
    wait_for_leader(follower, cluster.nodes)
    assert term_of(follower) > term
    expected |= write_keys(follower, "after-failover", 50)
    barrier(follower, cluster.nodes)
    for node in cluster.nodes:
        assert get_many(readonly_client(node), keys := sorted(expected)) == [
            expected[k] for k in keys
        ]


def test_a_learner_that_cannot_receive_is_never_promoted(
    make_cluster: Callable[..., LocalCluster],
    processes: list[ServerProcess],
    tmp_path,
) -> None:
    """A learner is promoted once caught up, not merely because the log is short:
    a premature voter that cannot answer costs the group its fault tolerance
    (4 voters need 3 answers; with one down and the new one mute, writes stop)."""
    port = port_free_on([f"127.0.0.{i}" for i in range(2, 6)])
    cluster = make_cluster(port=port)
    leader = cluster.leader()
    expected = write_keys(leader, "before", 100)
    joiner = nomadkv_node(
        str(tmp_path / "node4"),
        host=JOINER_HOST,
        port=port,
        node_id=4,
        cluster_secret=cluster.secret,
        cluster_join="yes",
    )
    processes.append(joiner)
    joiner.start()

    with Partition(cluster.bus_port) as partition:
        partition.cut([node.host for node in cluster.nodes], [JOINER_HOST])  # it hears nothing
        reply = leader.client(socket_timeout=10).execute_command(
            "CLUSTER", "MEET", JOINER_HOST, port
        )
        assert reply in (True, b"OK")
        wait_until(lambda: 4 in set.union(*voters_and_learners(leader)), 10, "node 4 to join")
        assert voters_and_learners(leader) == ({1, 2, 3}, {4}), (
            "node 4 was promoted to voter before it received anything"
        )
        victim = next(node for node in cluster.nodes if node is not leader)
        victim.kill()
        client = leader.client(socket_timeout=5, retry=NO_RETRY)
        try:
            for i in range(20):  # committed by the leader and the one follower left
                assert client.set(f"after-kill:{i}", i) is True
        except redis.RedisError as exc:
            raise AssertionError(
                f"writes stopped with one follower down ({exc!r}); voters and learners now "
                f"{voters_and_learners(leader)}: node 4 was promoted before it caught up"
            ) from exc
        expected |= {f"after-kill:{i}": str(i).encode() for i in range(20)}
        assert voters_and_learners(leader) == ({1, 2, 3}, {4})

    # Healed: the learner catches up, is promoted, and 3 of the 4 voters serve.
    wait_until(
        lambda: voters_and_learners(leader) == ({1, 2, 3, 4}, set()),
        20,
        "node 4 to be promoted once it caught up",
    )
    expected |= write_keys(leader, "after-promotion", 20)
    live = [node for node in (*cluster.nodes, joiner) if node.alive()]
    barrier(leader, live)
    keys = sorted(expected)
    assert get_many(readonly_client(joiner), keys) == [expected[k] for k in keys]
