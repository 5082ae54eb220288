"""Restarting every node of a cluster (issue 4's proof, real processes).

Every node stopped at once, in order (SIGTERM) or as a crash (kill -9), then
all started again: each recovers its log (and snapshot) from its own disk,
they elect a leader, and every acknowledged write is there, on every node.
Snapshots are taken along the way, so recovery reads a snapshot and the log
after it. Another test kills every node at once in the middle of a write load.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from clusterkit import WriteLoad, barrier, check_acknowledged, get_many, readonly_client

from nomadkv.harness import LocalCluster, ServerProcess, wait_until


def persistence(node: ServerProcess) -> dict[str, Any]:
    client = node.client(socket_timeout=5)
    try:
        return dict(client.info("persistence"))
    finally:
        client.close()


def write_acknowledged(cluster: LocalCluster, prefix: str, count: int) -> dict[str, bytes | None]:
    """Acknowledged SETs, INCRs and a DEL through the leader; what each key must hold."""
    client = cluster.leader().client(socket_timeout=10)
    expected: dict[str, bytes | None] = {}
    pipe = client.pipeline(transaction=False)  # many commands in flight, each acknowledged
    for i in range(count):
        value = f"{prefix}:{i}:" + "x" * (i % 50)
        pipe.set(f"{prefix}:{i}", value)
        expected[f"{prefix}:{i}"] = value.encode()
    assert pipe.execute() == [True] * count
    replies = [client.incr("counter") for _ in range(25)]
    expected["counter"] = str(replies[-1]).encode()
    assert client.delete(f"{prefix}:0") == 1
    expected[f"{prefix}:0"] = None
    client.close()
    return expected


def check_everywhere(cluster: LocalCluster, expected: dict[str, bytes | None]) -> None:
    leader = cluster.leader(timeout_s=20)
    keys = sorted(expected)
    want = [expected[k] for k in keys]
    assert get_many(leader.client(socket_timeout=10), keys) == want, "the leader lost writes"
    barrier(leader, cluster.nodes)
    for node in cluster.nodes:
        assert get_many(readonly_client(node), keys) == want, f"{node.host} lost writes"


STOPS: dict[str, Callable[[ServerProcess], object]] = {
    "sigterm": lambda node: node.stop(),
    "kill-9": lambda node: node.kill(),
}


@pytest.mark.parametrize("how", list(STOPS))
def test_restart_every_node_keeps_acknowledged_writes(
    make_cluster: Callable[..., LocalCluster], how: str
) -> None:
    # A small snapshot threshold, so recovery reads a snapshot and the log after it.
    cluster = make_cluster(snapshot_after_log_bytes="16kb")
    expected = write_acknowledged(cluster, "a", 600)
    wait_until(
        lambda: all(int(persistence(n)["snapshot_index"]) > 0 for n in cluster.nodes),
        10,
        "every node to take a snapshot",
    )
    expected |= write_acknowledged(cluster, "b", 100)  # in the log after the snapshot
    for round_ in ("c", "d"):  # the second restart recovers what the first one recovered
        for node in cluster.nodes:
            STOPS[how](node)
        for node in cluster.nodes:
            node.start()
        check_everywhere(cluster, expected)
        expected |= write_acknowledged(cluster, round_, 50)
    check_everywhere(cluster, expected)


def test_kill_every_node_under_write_load_keeps_acknowledged_writes(
    cluster: LocalCluster,
) -> None:
    """kill -9 of all nodes at once while clients write: whatever was acknowledged
    was fsync'd by a majority, so it is there after they all restart."""
    cluster.leader()
    with WriteLoad(cluster, threads=4) as load:
        wait_until(lambda: load.acks_after(0) >= 300, 30, "300 writes acknowledged")
        for node in cluster.nodes:
            node.signal(signal.SIGKILL)
        for node in cluster.nodes:
            node.kill()  # reap
    for node in cluster.nodes:
        node.start()
    leader = cluster.leader(timeout_s=20)
    checked = check_acknowledged(leader.client(socket_timeout=10), load.logs, "the leader")
    assert checked >= 300
    barrier(leader, cluster.nodes)
    for node in cluster.nodes:
        check_acknowledged(readonly_client(node), load.logs, f"node {node.host}")


def test_rolling_kill_9_under_write_load_keeps_acknowledged_writes(
    cluster: LocalCluster,
) -> None:
    """Each node in turn (the leader among them) killed and restarted while clients
    write; every acknowledged write survives on every node."""
    cluster.leader()
    with WriteLoad(cluster, threads=3) as load:
        for node in cluster.nodes:
            wait_until(lambda: load.acks_after(0) >= 50, 30, "writes acknowledged")
            node.kill()
            killed_at = time.monotonic()
            wait_until(lambda t=killed_at: load.acks_after(t) >= 50, 30, "writes after a kill")
            node.start()
            cluster.leader(timeout_s=20)
    leader = cluster.leader(timeout_s=20)
    barrier(leader, cluster.nodes)
    for node in cluster.nodes:
        check_acknowledged(readonly_client(node), load.logs, f"node {node.host}")
