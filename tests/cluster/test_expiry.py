"""Expiry in a cluster: only the leader deletes, through the log (real processes).

Keys with a short PX TTL are written on the leader and replicated. The leader
is paused half a second before their deadline. Once the deadline has passed, each
follower hides the keys (READONLY GET nil, EXISTS 0) but still holds them
(DBSIZE unchanged): followers never delete on their own, or the replicas
would diverge from the log. When the leader resumes, its expiry cycle deletes
them through the log and every follower's DBSIZE drops.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from clusterkit import barrier, get_many, readonly_client, role

from nomadkv.harness import LocalCluster, wait_until

EXPIRING = 50
PERSISTENT = 10
TTL_MS = 3000
PAUSE_BEFORE_S = 0.5
# Followers run their expiry cycle every 100 ms: past the deadline by this much,
# a follower that expired keys on its own would have done so at least twice.
PAST_DEADLINE_S = 0.3


def test_followers_hide_expired_keys_but_only_the_leader_deletes_them(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    # Long election timeouts (2-4 s): no follower takes over (and expires the keys
    # as the new leader) while the paused leader is being watched.
    cluster = make_cluster(raft_election_ticks=40)
    leader = cluster.leader(timeout_s=20)
    followers = [node for node in cluster.nodes if node is not leader]
    client = leader.client(socket_timeout=10)
    pipe = client.pipeline(transaction=False)
    for i in range(PERSISTENT):
        pipe.set(f"keep:{i}", i)
    for i in range(EXPIRING):
        pipe.set(f"{{exp}}:{i}", i, px=TTL_MS)
    sent_at = time.time()
    assert pipe.execute() == [True] * (PERSISTENT + EXPIRING)
    # The leader made PX absolute when the commands arrived, between these two times.
    deadline = time.time() + TTL_MS / 1000
    assert deadline - sent_at < TTL_MS / 1000 + 0.2, "the writes took too long"
    expiring = [f"{{exp}}:{i}" for i in range(EXPIRING)]
    barrier(leader, cluster.nodes)
    replicas = [readonly_client(node) for node in followers]
    for replica in replicas:
        assert replica.dbsize() == PERSISTENT + EXPIRING + 1  # + the barrier key
        assert get_many(replica, expiring) == [str(i).encode() for i in range(EXPIRING)]
    assert time.time() < deadline - PAUSE_BEFORE_S, "too slow to pause before the deadline"
    # Paused shortly before the deadline, so that the whole watch below stays well
    # inside the followers' election timeout.
    wait_until(lambda: time.time() > deadline - PAUSE_BEFORE_S, TTL_MS / 1000, "the pause")
    leader.signal(signal.SIGSTOP)
    try:
        wait_until(
            lambda: time.time() > deadline + PAST_DEADLINE_S, TTL_MS / 1000 + 1, "the deadline"
        )
        for node, replica in zip(followers, replicas, strict=True):
            assert get_many(replica, expiring) == [None] * EXPIRING, "expired keys were read"
            assert replica.exists(*expiring) == 0
            assert replica.dbsize() == PERSISTENT + EXPIRING + 1, (
                f"{node.host} deleted expired keys on its own"
            )
            # Still following the paused leader: nobody else could have deleted them.
            assert role(node)[1:3] == [leader.host.encode(), leader.port]  # type: ignore[index]
    finally:
        leader.signal(signal.SIGCONT)

    for node, replica in zip(followers, replicas, strict=True):
        wait_until(
            lambda r=replica: r.dbsize() == PERSISTENT + 1,
            10,
            f"{node.host} to apply the leader's expiry",
        )
    keep = [f"keep:{i}" for i in range(PERSISTENT)]
    for node in cluster.nodes:
        assert get_many(readonly_client(node), keep) == [str(i).encode() for i in range(10)]
    assert client.dbsize() == PERSISTENT + 1
