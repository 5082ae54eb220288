"""Catching up from the leader: snapshot, then log (real processes).

100k keys are written and the leader's log is compacted behind a snapshot,
so a node that starts empty needs the snapshot (streamed in chunks over the
bus) and then the log after it.

A member that lost its data comes back as a new member (docs/cluster.md,
"A member that lost its data"): CLUSTER FORGET it, start it empty with
--cluster-join, CLUSTER MEET it. Restarted empty with its old --peers it
would bootstrap as a founder and could vote again in a term it already voted
in, or help elect a leader without entries it had acknowledged.

- A wiped follower brought back that way: it catches up, is promoted, and
  is a full voter again (with the old leader killed, it elects a new one
  with the third node).
- The same procedure, checked step by step (it leaves the voters before it
  restarts, the snapshot is installed).
- Restarted empty with its old --peers instead, it is refused: the others
  know its data directory by its identity (nomadkv.storage.identity), so its
  acknowledgements do not count and, with one other node down, nothing can
  commit on its word.
- Restarted on an old copy of its own data directory (same identity, older
  term), it is refused too, while a plain restart of the same node is not.

The rates (bytes of snapshot and log the node stored, per second from
CLUSTER MEET until it applied the leader's index) are printed: run with
``-s`` to see them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable

import pytest
import redis
from clusterkit import (
    barrier,
    get_many,
    leader_among,
    raft_ids,
    raft_info,
    readonly_client,
    wait_for_leader,
)

from nomadkv.cluster.topology import node_name
from nomadkv.harness import LocalCluster, ServerProcess, wait_until
from nomadkv.storage.log import stored_bytes

KEYS = 100_000
BATCH = 2000
PREFIXES = (("bulk", KEYS), ("tail", 1000), ("while-down", 1000))


def write_keys(leader: ServerProcess, prefix: str, count: int) -> None:
    client = leader.client(socket_timeout=30)
    for start in range(0, count, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + BATCH, count)):
            pipe.set(f"{prefix}:{i}", value_of(prefix, i))
        assert all(reply is True for reply in pipe.execute())
    client.close()


def value_of(prefix: str, i: int) -> bytes:
    # 64 hex digits that zstd cannot squeeze to nothing: the snapshot has a real size.
    return hashlib.blake2b(f"{prefix}:{i}".encode(), digest_size=32).hexdigest().encode()


def applied_index(node: ServerProcess) -> int:
    """The node's applied index, 0 while it does not answer."""
    try:
        return int(raft_info(node)["applied_index"])
    except (redis.RedisError, OSError, KeyError):
        return 0


def fill_and_compact(cluster: LocalCluster) -> ServerProcess:
    leader = cluster.leader()
    write_keys(leader, "bulk", KEYS)
    wait_until(
        lambda: int(raft_info(leader)["first_index"]) > 2,
        15,
        "the leader to compact its log behind a snapshot",
    )
    write_keys(leader, "tail", 1000)  # in the log after the snapshot
    return leader


def wipe(node: ServerProcess) -> str:
    """Stop ``node`` and delete everything in its data directory but its server log."""
    data_dir = os.path.dirname(node.log_path)
    node.stop()
    for entry in os.listdir(data_dir):
        if entry != os.path.basename(node.log_path):
            path = os.path.join(data_dir, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return data_dir


def check_all_keys(leader: ServerProcess, node: ServerProcess) -> None:
    replica, reference = readonly_client(node), readonly_client(leader)
    try:
        assert replica.dbsize() == reference.dbsize()
        for prefix, count in PREFIXES:
            for start in range(0, count, 10_000):
                end = min(start + 10_000, count)
                keys = [f"{prefix}:{i}" for i in range(start, end)]
                want = [value_of(prefix, i) for i in range(start, end)]
                assert get_many(replica, keys) == want, f"{prefix} keys from {start} differ"
    finally:
        replica.close()
        reference.close()


def rejoin_as_new_member(
    cluster: LocalCluster, leader: ServerProcess, node: ServerProcess, label: str
) -> None:
    """Wipe ``node`` and bring it back the supported way: CLUSTER FORGET it (1000
    keys are written while it is out), start it empty with --cluster-join, CLUSTER
    MEET it. Returns once it has caught up (the rate is printed), is a voter again
    and holds every key."""
    raft_id = cluster.nodes.index(node) + 1
    data_dir = wipe(node)
    admin = leader.client(socket_timeout=10)
    assert admin.execute_command("CLUSTER", "FORGET", node_name(raft_id)) in (True, b"OK")
    wait_until(
        lambda: raft_id not in raft_ids(raft_info(leader)["voters"]),
        10,
        f"node {raft_id} to leave the group",
    )
    write_keys(leader, "while-down", 1000)
    target = int(raft_info(leader)["applied_index"])

    node.argv += ["--cluster-join", "yes"]
    node.start()
    started = time.monotonic()
    assert admin.execute_command("CLUSTER", "MEET", node.host, node.port) in (True, b"OK")

    def caught_up() -> bool:
        assert node.alive(), f"the {label} stopped; its log:\n{node.log_tail(8)}"
        return applied_index(node) >= target

    wait_until(caught_up, 60, f"the {label} to catch up")
    elapsed_s = time.monotonic() - started
    received = stored_bytes(os.path.join(data_dir, "snapshots")) + stored_bytes(
        os.path.join(data_dir, "log")
    )
    keys = sum(count for _, count in PREFIXES)
    print(
        f"{label}: {received / 1e6:.1f} MB of snapshot and log ({keys} keys) in "
        f"{elapsed_s:.2f} s from CLUSTER MEET: {received / 1e6 / elapsed_s:.1f} MB/s, "
        f"{keys / elapsed_s:.0f} keys/s"
    )
    wait_until(
        lambda: raft_id in raft_ids(raft_info(leader)["voters"]),
        20,
        f"node {raft_id} to be promoted to voter again",
    )
    admin.close()
    barrier(leader, cluster.nodes, timeout_s=30)
    check_all_keys(leader, node)


def test_wiped_follower_catches_up_from_snapshot_and_log(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(snapshot_after_log_bytes="2mb")
    leader = fill_and_compact(cluster)
    follower = next(node for node in cluster.nodes if node is not leader)
    rejoin_as_new_member(cluster, leader, follower, "wiped follower")

    # A full voter again: without the old leader, the other two need its vote.
    leader.kill()
    survivors = [node for node in cluster.nodes if node is not leader]
    new_leader = leader_among(survivors, timeout_s=15)
    barrier(new_leader, survivors, timeout_s=30)
    check_all_keys(new_leader, follower)


def test_wiped_node_forgotten_and_met_again_catches_up(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(snapshot_after_log_bytes="2mb")
    leader = fill_and_compact(cluster)
    node = next(n for n in cluster.nodes if n is not leader)
    rejoin_as_new_member(cluster, leader, node, "wiped node rejoining")
    with open(node.log_path, "rb") as log:
        assert b"installed a snapshot at index" in log.read(), "no snapshot was installed"


def test_follower_down_while_the_leader_compacts_catches_up_by_snapshot(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    """A follower killed before the bulk load restarts from its own (short) disk state;
    the entries it misses are compacted away on the leader, so it gets the snapshot."""
    cluster = make_cluster(snapshot_after_log_bytes="2mb")
    leader = cluster.leader()
    write_keys(leader, "early", 1000)
    follower = next(node for node in cluster.nodes if node is not leader)
    barrier(leader, cluster.nodes)
    early_index = applied_index(follower)
    follower.kill()
    write_keys(leader, "bulk", KEYS)
    wait_until(
        lambda: int(raft_info(leader)["first_index"]) > early_index + 1,
        15,
        "the leader to compact away the entries the follower misses",
    )
    write_keys(leader, "tail", 1000)
    write_keys(leader, "while-down", 1000)
    target = int(raft_info(leader)["applied_index"])

    follower.start()
    wait_until(lambda: applied_index(follower) >= target, 60, "the follower to catch up")
    with open(follower.log_path, "rb") as log:
        assert b"installed a snapshot at index" in log.read().split(b"recovering")[-1]
    barrier(leader, cluster.nodes, timeout_s=30)
    check_all_keys(leader, follower)


def test_a_wiped_member_restarted_as_a_founder_is_refused(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster()
    leader = cluster.leader()
    barrier(leader, cluster.nodes)  # every node has shown the others its identity
    wiped, other = [node for node in cluster.nodes if node is not leader]
    wipe(wiped)
    wiped.start()  # its old --peers, no --cluster-join: it would found the group again

    def refused_by(node: ServerProcess) -> bool:
        return int(raft_info(node)["bus_identity_refusals"]) > 0

    wait_until(lambda: refused_by(leader) and refused_by(other), 15, "both to refuse it")
    with open(wiped.log_path, "rb") as log:
        assert b"refused this node" in log.read()
    assert raft_info(wiped)["role"] != "leader"

    # Its acknowledgements count for nothing: with the other node down, the
    # leader has no quorum, and a write is not acknowledged.
    other.kill()
    client = leader.client(socket_timeout=5)
    try:
        with pytest.raises((redis.RedisError, OSError)):
            client.set("on-the-word-of-a-wiped-node", "1")
    finally:
        client.close()


def test_a_member_restarted_on_an_old_copy_of_its_data_is_refused(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster()
    leader = cluster.leader()
    barrier(leader, cluster.nodes)
    member = next(node for node in cluster.nodes if node is not leader)
    data_dir = os.path.dirname(member.log_path)
    old_copy = data_dir + ".copy"
    member.stop()
    shutil.copytree(data_dir, old_copy)
    old_term = int(raft_info(leader)["term"])

    # A plain restart is welcome: it leads a new term, so the others see it
    # send messages in a term its copy never reached.
    member.start()
    barrier(leader, cluster.nodes)  # it follows the leader and has caught up
    admin = member.client()
    assert admin.execute_command("CLUSTER", "FAILOVER") in (True, b"OK")
    admin.close()
    wait_for_leader(member, cluster.nodes, 15)
    assert int(raft_info(member)["term"]) > old_term
    barrier(member, cluster.nodes)
    assert all(int(raft_info(node)["bus_identity_refusals"]) == 0 for node in cluster.nodes)

    member.stop()
    shutil.rmtree(data_dir)
    os.rename(old_copy, data_dir)
    member.start()
    others = [node for node in cluster.nodes if node is not member]

    def refused_by(node: ServerProcess) -> bool:
        return int(raft_info(node)["bus_identity_refusals"]) > 0

    wait_until(lambda: all(refused_by(node) for node in others), 15, "both to refuse it")
    with open(member.log_path, "rb") as log:
        assert b"its data directory is older than the one it ran on" in log.read()
    survivor = leader_among(others, 15)
    client = survivor.client(socket_timeout=5)
    try:
        assert client.set("after-the-restore", "1")
    finally:
        client.close()
    assert raft_info(member)["role"] != "leader"
