"""A 3-node cluster of real processes on 127.0.0.2-4: replication, redirects, failover."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from nomadkv.harness import LocalCluster, wait_until


@pytest.fixture
def cluster(tmp_path) -> Iterator[LocalCluster]:
    c = LocalCluster(str(tmp_path)).start()
    yield c
    c.stop()


def test_writes_replicate_and_followers_redirect(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    r = leader.client()
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    for node in cluster.nodes:
        if node is leader:
            continue
        follower = node.client()
        with pytest.raises(
            redis.exceptions.MovedError, match=rf"^\d+ {leader.host}:{leader.port}$"
        ):
            follower.get("k")
        follower.execute_command("READONLY")
        wait_until(lambda f=follower: f.get("k") == b"v", 5, "the follower to apply the write")


def test_redis_py_cluster_client_works_unmodified(cluster: LocalCluster) -> None:
    cluster.leader()
    host, port = cluster.startup_nodes()[1]
    rc = RedisCluster(host=host, port=port)
    for i in range(50):
        rc.set(f"key{i}", i)
    assert [rc.get(f"key{i}") for i in range(50)] == [str(i).encode() for i in range(50)]
    rc.close()


def test_kill_leader_new_leader_keeps_acknowledged_writes(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    r = leader.client()
    for i in range(100):
        assert r.set(f"w{i}", i)
    leader.kill()
    new_leader = cluster.leader(timeout_s=15)
    assert new_leader is not leader
    r2 = new_leader.client()
    assert [r2.get(f"w{i}") for i in range(100)] == [str(i).encode() for i in range(100)]
    assert r2.set("after", "failover")
    leader.start()
    cluster.leader()
    follower = leader.client()
    follower.execute_command("READONLY")
    wait_until(lambda: follower.get("after") == b"failover", 10, "the old leader to catch up")


def test_redis_cli_follows_moved_from_a_follower(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    follower = next(node for node in cluster.nodes if node is not leader)

    def cli(*args: str) -> str:
        argv = ["redis-cli", "-c", "-h", follower.host, "-p", str(follower.port), *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    assert cli("set", "cli-key", "cli-value") == "OK"
    assert cli("get", "cli-key") == "cli-value"
    assert leader.client().get("cli-key") == b"cli-value"


def test_a_pipeline_of_writes_and_reads_on_the_leader_answers_in_order(
    cluster: LocalCluster,
) -> None:
    """Reads wait for a ReadIndex round and writes for a commit: each waits behind the
    other kind's pending replies, so every read sees the writes sent before it."""
    pipe = cluster.leader().client().pipeline(transaction=False)
    for i in range(20):
        pipe.set("k", f"v{i}")
        pipe.get("k")
        pipe.strlen("k")
        pipe.append("k", "!")
        pipe.getrange("k", -1, -1)
        pipe.type("k")
        pipe.ttl("k")
        pipe.get("absent")
    expected: list[object] = []
    for i in range(20):
        value = f"v{i}"
        expected += [True, value.encode(), len(value), len(value) + 1, b"!", b"string", -1, None]
    assert pipe.execute() == expected
