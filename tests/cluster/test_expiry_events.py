"""Expiry across the events a bug hunt found it broke on: a write stamped before a
deadline but applied after a read saw the key gone, a leadership transfer that
refused the expiry cycle's deletions, and keys too large for one batch."""

from __future__ import annotations

import signal
import time

import redis
from clusterkit import RawConnection, readonly_client

from nomadkv.harness import LocalCluster, wait_until

TRANSFER_ABANDONED_S = 1.5
RACE_TRIALS = 40  # before the fix about a third of the trials showed the key back


def wait_for_clock(unix_s: float) -> None:
    """Until the wall clock reads ``unix_s`` (the deadlines below are on it)."""
    while time.time() < unix_s:
        time.sleep(max(0.0, min(0.002, unix_s - time.time())))


def test_a_key_a_read_saw_expire_never_comes_back(make_cluster) -> None:
    """PERSIST sent just before the deadline, GETs from another client right after
    it: once a GET answers nil, the key must stay gone. With lease reads (where the
    bug hunt saw it most) the write was stamped before the deadline but applied
    after a read had used its own, later, time."""
    cluster: LocalCluster = make_cluster(raft_lease_reads="yes")
    leader = cluster.leader()
    checker = leader.client(socket_timeout=10)
    writer, reader = RawConnection(leader), RawConnection(leader)
    try:
        for trial in range(RACE_TRIALS):
            key = f"race:{trial}"
            assert checker.set(key, "v", px=100)
            deadline_s = int(checker.execute_command("PEXPIRETIME", key)) / 1000
            wait_for_clock(deadline_s - (trial % 10 + 1) / 10_000)
            writer.send("PERSIST", key)
            reader.send("GET", key, times=20)
            seen = reader.replies(20)
            persisted = writer.replies(1)[0]
            if None in seen:
                assert checker.get(key) is None, (
                    f"trial {trial}: a GET saw {key} expired, then PERSIST ({persisted}) "
                    "brought it back"
                )
    finally:
        writer.close()
        reader.close()
        checker.close()


def accepts_writes(client: redis.Redis) -> bool:
    try:
        return client.set("after-transfer", "1") is True
    except redis.ResponseError:  # CLUSTERDOWN while the transfer is under way
        return False


def test_expiries_refused_during_a_leadership_transfer_are_proposed_again(
    cluster: LocalCluster,
) -> None:
    """While a transfer is under way the leader refuses proposals, its expiry
    cycle's deletions included; the keys it had taken off its deadline heap were
    then never deleted on any node."""
    leader = cluster.leader()
    target = next(node for node in cluster.nodes if node is not leader)
    client = leader.client(socket_timeout=10)
    keep = [f"keep:{i}" for i in range(10)]
    for key in keep:
        client.set(key, "1")
    pipe = client.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"{{transfer}}:{i}", i, px=1500)
    pipe.execute()
    first = int(client.execute_command("PEXPIRETIME", "{transfer}:0")) / 1000
    last = int(client.execute_command("PEXPIRETIME", "{transfer}:1999")) / 1000
    wait_for_clock(first - 0.1)
    target.signal(signal.SIGSTOP)  # the transfer cannot complete
    try:
        target_id = cluster.nodes.index(target) + 1
        client.execute_command("CLUSTER", "NOMADKV-TRANSFER", target_id)
        wait_for_clock(last + 0.05)
        assert not accepts_writes(client), "the transfer ended before the deadlines"
        # A transfer is abandoned after an election timeout (at most 2 x 10 ticks of
        # 50 ms): the target resumes after that, so that the leader stays the leader.
        wait_for_clock(time.time() + TRANSFER_ABANDONED_S)
        assert accepts_writes(client), "the leader did not give up the transfer"
    finally:
        target.signal(signal.SIGCONT)

    def expired_everywhere() -> bool:
        return all(readonly_client(node).dbsize() == len(keep) + 1 for node in cluster.nodes)

    wait_until(expired_everywhere, 20, "every expired key deleted on every node")


def test_keys_too_large_for_one_batch_still_expire(cluster: LocalCluster) -> None:
    """All due keys went into one deletion command, which a 16 MiB pair of names
    made larger than an entry may be: it was refused, and the keys never expired."""
    leader = cluster.leader()
    client = leader.client(socket_timeout=30)
    names = [("{big}" + letter * (5 << 20)) for letter in "ab"]
    for name in names:
        assert client.set(name, "1")
    deadline_ms = int(time.time() * 1000) + 300  # the same for both: one batch
    for name in names:
        assert client.pexpireat(name, deadline_ms)
    wait_until(
        lambda: all(readonly_client(node).dbsize() == 0 for node in cluster.nodes),
        20,
        "both large keys expired on every node",
    )
