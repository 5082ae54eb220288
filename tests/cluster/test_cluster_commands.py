"""CLUSTER, ROLE and INFO replication on a running 3-node cluster, compared with
a real one-master Redis Cluster where Redis's reply is the spec: error texts,
RESP3 types, the replicas of a master, failed members, and a proxying
follower's whole-keyspace reads."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import hiredis
import pytest
import redis
from clusterkit import RawConnection, barrier, leader_among

from nomadkv.cluster.topology import node_name
from nomadkv.harness import (
    LocalCluster,
    ServerProcess,
    exchange_bytes,
    free_port,
    redis_server,
    wait_until,
)

# A follower not heard from for two election timeouts (2 x 10 ticks x 50 ms) is failed.
FAILED_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(str(tmp_path_factory.mktemp("commands")), proxy_to_leader="yes").start()
    c.leader()
    yield c
    for node in c.nodes:
        node.signal(signal.SIGCONT)
    c.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real Redis Cluster of one master owning every slot."""
    data_dir = str(tmp_path_factory.mktemp("redis-cluster"))
    conf = os.path.join(data_dir, "nodes.conf")
    server = redis_server(
        data_dir,
        port=free_port(also_free=(10000,)),  # and its cluster bus port
        extra=("--cluster-enabled", "yes", "--cluster-config-file", conf),
    )
    server.start()
    client = server.client(decode_responses=True)
    client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    wait_until(
        lambda: "cluster_state:ok" in client.execute_command("CLUSTER", "INFO"),
        30,
        "the one-master Redis Cluster to be ok",
    )
    client.close()
    yield server
    server.stop()


def encode(*argv: str) -> bytes:
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a.encode()) for a in argv)


def read_reply(sock: socket.socket) -> bytes:
    """The bytes of one reply, exactly as sent (its RESP types kept)."""
    reader = hiredis.Reader()
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
        reader.feed(chunk)
        if reader.gets() is not False:
            return data


def resp3_reply(node: ServerProcess, *argv: str) -> bytes:
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(encode("HELLO", "3"))
        read_reply(sock)
        sock.sendall(encode(*argv))
        return read_reply(sock)


def error_of(node: ServerProcess, *argv: str) -> str:
    with pytest.raises(redis.ResponseError) as caught:
        node.client().execute_command(*argv)
    return str(caught.value)


BAD_SLOT_ARGUMENTS = [
    ("CLUSTER", "COUNTKEYSINSLOT", "abc"),
    ("CLUSTER", "COUNTKEYSINSLOT", "-1"),
    ("CLUSTER", "COUNTKEYSINSLOT", "16384"),
    ("CLUSTER", "GETKEYSINSLOT", "16384", "1"),
    ("CLUSTER", "GETKEYSINSLOT", "-1", "1"),
    ("CLUSTER", "GETKEYSINSLOT", "1", "-1"),
    ("CLUSTER", "GETKEYSINSLOT", "1", "abc"),
    ("CLUSTER", "GETKEYSINSLOT", "abc", "1"),
    ("CLUSTER", "REPLICAS", "0123456789012345678901234567890123456789"),
    ("CLUSTER", "SLAVES", "nosuch"),
]


@pytest.mark.parametrize("argv", BAD_SLOT_ARGUMENTS, ids=[" ".join(a) for a in BAD_SLOT_ARGUMENTS])
def test_errors_match_redis_cluster(
    argv: tuple[str, ...], cluster: LocalCluster, redis_cluster: ServerProcess
) -> None:
    assert error_of(cluster.leader(), *argv) == error_of(redis_cluster, *argv)


def test_resp3_types_match_redis_cluster(
    cluster: LocalCluster, redis_cluster: ServerProcess
) -> None:
    for server in (cluster.leader(), redis_cluster):
        nodes = resp3_reply(server, "CLUSTER", "NODES")
        assert nodes.startswith(b"=") and nodes[nodes.index(b"\r\n") + 2 :].startswith(b"txt:")
        # Each node of CLUSTER SLOTS ends with a map of metadata (empty here).
        slots = resp3_reply(server, "CLUSTER", "SLOTS")
        assert slots.endswith(b"%0\r\n") and b"*0\r\n" not in slots


def test_replicas_of_the_leader_are_the_followers(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    leader_name = node_name(cluster.nodes.index(leader) + 1)
    lines = [
        line.decode()
        for line in leader.client().execute_command("CLUSTER", "REPLICAS", leader_name)
    ]
    ports = sorted(int(line.split(" ")[1].split(":")[1].split("@")[0]) for line in lines)
    assert ports == sorted(n.port for n in cluster.nodes if n is not leader)
    assert all(
        line.split(" ")[2] == "slave" and line.split(" ")[3] == leader_name for line in lines
    )
    follower_name = node_name(next(i for i, n in enumerate(cluster.nodes, 1) if n is not leader))
    assert error_of(leader, "CLUSTER", "SLAVES", follower_name) == (
        "The specified node is not a master"
    )


def test_a_proxying_follower_sees_its_own_writes_in_whole_keyspace_reads(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower = next(node for node in cluster.nodes if node is not leader)
    client = follower.client()  # a plain client: the follower proxies for it
    before = client.dbsize()
    for i in range(30):
        assert client.set(f"own:{i}", i) is True
        assert client.dbsize() == before + i + 1
        assert len(client.keys("own:*")) == i + 1
        assert len(list(client.scan_iter("own:*", count=1000))) == i + 1
    assert client.randomkey() is not None
    readonly = follower.client()
    readonly.execute_command("READONLY")  # a READONLY connection reads its own replica
    barrier(leader, cluster.nodes)
    assert len(readonly.keys("own:*")) == 30


def replication(node: ServerProcess) -> dict[str, object]:
    return node.client(socket_timeout=2).info("replication")


def test_a_silent_follower_is_reported_failed_then_online(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    followers = [node for node in cluster.nodes if node is not leader]
    stopped, other = followers
    stopped_id = node_name(cluster.nodes.index(stopped) + 1)
    client = leader.client(socket_timeout=5)

    def reports(alive: bool) -> bool:
        line = next(
            line.split(" ")
            for line in client.execute_command("CLUSTER", "NODES").decode().splitlines()
            if line.startswith(stopped_id)
        )
        failed = "fail" in line[2].split(",") and line[7] == "disconnected"
        return failed != alive

    info = replication(leader)
    assert info["role"] == "master" and info["connected_slaves"] == 2
    mine = replication(other)
    assert mine["role"] == "slave" and mine["master_port"] == leader.port
    assert mine["master_link_status"] == "up"

    stopped.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: reports(alive=False), FAILED_WITHIN_S, "the stopped follower failed")
        slots = client.execute_command("CLUSTER", "SLOTS")
        # Every node has the same port on its own address: nodes are told apart by host.
        assert [entry[0].decode() for entry in slots[0][3:]] == [other.host]
        assert [r[0].decode() for r in client.execute_command("ROLE")[2]] == [other.host]
        info = replication(leader)
        assert info["connected_slaves"] == 1 and info["slave0"]["ip"] == other.host
        shards = client.execute_command("CLUSTER", "SHARDS")
        health = {n[b"ip"]: n[b"health"] for n in shards[0][b"nodes"]}  # RESP3 maps
        assert health[stopped.host.encode()] == b"failed"
        assert health[other.host.encode()] == b"online"
    finally:
        stopped.signal(signal.SIGCONT)
    wait_until(lambda: reports(alive=True), FAILED_WITHIN_S, "the follower back online")
    assert replication(leader)["connected_slaves"] == 2
    assert leader_among(cluster.nodes) is leader


def test_meet_of_something_that_is_not_a_node_answers_an_error(cluster: LocalCluster) -> None:
    """An HTTP server where a node should be: the MEET fails with a reply (it used to
    leave the connection waiting forever) and the connection goes on."""
    listener = socket.create_server(("127.0.0.1", free_port()))
    port = listener.getsockname()[1]

    done = threading.Event()

    def answer_like_http() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            done.wait(30)  # keep it open: the node must give up on what it read

    threading.Thread(target=answer_like_http, daemon=True).start()
    try:
        client = cluster.leader().client(socket_timeout=20)
        started = time.monotonic()
        with pytest.raises(redis.ResponseError, match=f"cannot reach 127.0.0.1:{port}"):
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        # At once, not after the MEET's 5 s call timeout (or never: the task died).
        assert time.monotonic() - started < 4.0
        assert client.ping()
    finally:
        done.set()
        listener.close()


def test_writes_are_cut_into_entries_of_raft_max_entry_bytes(make_cluster) -> None:
    """A pipeline of writes larger than one entry goes out as several; a write larger
    than an entry is refused, in its place among the replies."""
    cluster = make_cluster(raft_max_entry_bytes=64 * 1024)
    leader = cluster.leader()
    client = leader.client(socket_timeout=20)
    raft = client.info("raft")
    term, commit = int(raft["term"]), int(raft["commit_index"])
    pipe = client.pipeline(transaction=False)
    for i in range(20):
        pipe.set(f"chunk:{i}", str(i) * 30_000)  # 20 x 30 kB: at least 10 entries
    pipe.set("before-huge", "1")
    pipe.set("huge", "x" * 100_000)
    pipe.set("after-huge", "1")
    replies = pipe.execute(raise_on_error=False)
    assert replies[:21] == [True] * 21 and replies[22] is True
    assert isinstance(replies[21], redis.ResponseError)
    assert "exceeds raft-max-entry-bytes (65536)" in str(replies[21])
    raft = client.info("raft")
    assert int(raft["term"]) == term
    assert int(raft["commit_index"]) - commit >= 10
    assert client.get("huge") is None and client.get("after-huge") == b"1"
    assert client.get("chunk:19") == b"19" * 30_000


def rss_mb(node: ServerProcess) -> float:
    with open(f"/proc/{node.pid}/status") as f:
        kilobytes = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kilobytes / 1024


def test_a_client_that_never_reads_cannot_balloon_the_leader(make_cluster) -> None:
    """8,000 pipelined GETs of a 256 kB value (56 kB of requests), never read: the
    leader built every reply of a read round before checking the output limit and
    reached 2 GB (and lost its leadership). Now it stops reading the connection past
    PENDING_INPUT_LIMIT waiting replies and writes large replies as it builds them,
    so the output limit applies."""
    cluster: LocalCluster = make_cluster()
    leader = cluster.leader()
    client = leader.client(socket_timeout=10)
    client.set("big", b"x" * 256 * 1024)
    flood = socket.create_connection((leader.host, leader.port))
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flood.setblocking(False)
    payload = b"GET big\r\n" * 8000
    sent, peak = 0, rss_mb(leader)
    deadline = time.monotonic() + 8
    try:
        while time.monotonic() < deadline and peak < 1500:
            if sent < len(payload):
                with contextlib.suppress(BlockingIOError):
                    sent += flood.send(payload[sent : sent + 65536])
            peak = max(peak, rss_mb(leader))
            time.sleep(0.05)  # a sampling interval for the leader's memory
    finally:
        flood.close()
    assert peak < 1000, f"the leader reached {peak:.0f} MB"
    assert client.ping() and cluster.leader() is leader
    client.close()


def test_a_leader_answers_pipelined_large_reads_whole_and_in_order(make_cluster) -> None:
    """Released ReadIndex reads of 64 kB and more go out as references to the stored
    value (LargeBulk), between small replies and a PING that waited for them."""
    cluster: LocalCluster = make_cluster()
    leader = cluster.leader()
    client = leader.client(socket_timeout=10)
    values = {b"{k}small": b"s" * 10, b"{k}big": bytes(range(256)) * 1024}
    client.mset(values)
    keys = [b"{k}big", b"{k}small", b"{k}big", b"{k}none"]
    payload = b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k) for k in keys)
    payload += b"*1\r\n$4\r\nPING\r\n"
    expected = b"".join(
        b"$%d\r\n%b\r\n" % (len(values[k]), values[k]) if k in values else b"$-1\r\n" for k in keys
    )
    expected += b"+PONG\r\n"
    received = exchange_bytes(leader.host, leader.port, payload * 5, 5 * len(expected))
    assert received == expected * 5
    client.close()


def test_a_writer_that_never_reads_is_read_no_faster_than_it_commits(make_cluster) -> None:
    """One connection pipelining small SETs over 10,000 keys without reading: the
    leader read its whole stream into the next entry and its query buffer (760 MB
    in 8 s while its followers held 110 MB, 250-540 ms PINGs, then an election).
    Past PENDING_INPUT_LIMIT waiting replies it is no longer read."""
    cluster: LocalCluster = make_cluster(appendfsync="no")
    leader = cluster.leader()
    client = leader.client(socket_timeout=10)
    flood = socket.create_connection((leader.host, leader.port))
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flood.setblocking(False)
    payload = b"".join(b"SET flood:%d %b\r\n" % (i % 10_000, b"v" * 100) for i in range(20_000))
    sent, peak, slowest_ping = 0, rss_mb(leader), 0.0
    deadline = time.monotonic() + 6
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                for _ in range(100):  # as fast as the leader takes it
                    start = sent % len(payload)
                    sent += flood.send(payload[start : start + 65536])
            peak = max(peak, rss_mb(leader))
            started = time.monotonic()
            client.ping()
            slowest_ping = max(slowest_ping, time.monotonic() - started)
            time.sleep(0.02)  # a sampling interval
    finally:
        flood.close()
    assert peak < 400, f"the leader reached {peak:.0f} MB"
    assert slowest_ping < 0.2, f"a PING took {slowest_ping * 1000:.0f} ms"
    assert cluster.leader() is leader
    client.close()


def test_a_deadline_counts_from_the_write_not_from_a_waiting_entry(make_cluster) -> None:
    """SET PX while an earlier entry waits for its commit: the deadline was taken
    from the read clock, which stops at that entry's stamp, so a write answered
    +OK could already be expired when it applied."""
    cluster: LocalCluster = make_cluster()
    leader = cluster.leader()
    followers = [node for node in cluster.nodes if node is not leader]
    first, second = RawConnection(leader), RawConnection(leader)
    checker = leader.client(socket_timeout=10)
    try:
        for node in followers:
            node.signal(signal.SIGSTOP)
        try:
            first.send("SET", "waiting", "1")  # its entry cannot commit yet
            time.sleep(0.4)  # the entry's stamp ages (within an election timeout)
            second.send("SET", "fresh", "v", "PX", "300")
        finally:
            for node in followers:
                node.signal(signal.SIGCONT)
        assert first.replies(1) == [b"OK"] and second.replies(1) == [b"OK"]
        assert checker.get("fresh") == b"v" and checker.pttl("fresh") > 0
    finally:
        first.close()
        second.close()
        checker.close()


def test_writes_queued_past_one_entry_are_answered_when_leadership_is_lost(
    make_cluster,
) -> None:
    """Writes left for the next entries (raft-max-entry-bytes) were never answered
    when the leader stepped down: only the first entry's worth was redirected."""
    cluster: LocalCluster = make_cluster(raft_max_entry_bytes=64 * 1024)
    leader = cluster.leader()
    followers = [node for node in cluster.nodes if node is not leader]
    writes = RawConnection(leader)
    try:
        for node in followers:
            node.signal(signal.SIGSTOP)
        try:
            for i in range(40):  # 800 kB: more than ten entries
                writes.send("SET", f"queued:{i}", "x" * 20_000)
            # Cut off from both, the leader steps down (CheckQuorum) with them queued.
            wait_until(lambda: role(leader) != "master", 15, "the leader to step down")
        finally:
            for node in followers:
                node.signal(signal.SIGCONT)
        answered = writes.replies_or_close(40, timeout_s=20)
        assert answered in (40, -1), f"{answered} of 40 writes answered, then nothing"
    finally:
        writes.close()


def role(node: ServerProcess) -> str:
    client = node.client(socket_timeout=5)
    try:
        return client.execute_command("ROLE")[0].decode()
    finally:
        client.close()
