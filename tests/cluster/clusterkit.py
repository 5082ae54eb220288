"""Helpers for the process-level cluster tests: roles, barriers, a write load.

Owns the test-side view of a running ``LocalCluster``: who leads (asked with
ROLE, of any subset of nodes, so a paused node is never waited on), Raft
status from ``INFO raft``, READONLY connections to followers, a barrier that
proves a node has applied everything acknowledged before it, and a write
load of client threads that follow redirects and record exactly which
writes were acknowledged.

Never sleeps to let something happen: every wait is ``wait_until`` with a
deadline, on a condition that says what it waits for.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from nomadkv.harness import LocalCluster, ServerProcess, track_client, wait_until

NO_RETRY = Retry(NoBackoff(), 0)  # redis-py retries (with back-off) by default
QUICK_S = 1.0  # socket timeout for status queries: a paused node must not stall a poll


def role(node: ServerProcess) -> list[Any] | None:
    """The node's ROLE reply, or None when it does not answer in QUICK_S."""
    try:
        client = node.client(socket_timeout=QUICK_S, socket_connect_timeout=QUICK_S)
        try:
            return list(client.execute_command("ROLE"))
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return None


def leader_among(nodes: Sequence[ServerProcess], timeout_s: float = 10.0) -> ServerProcess:
    """The node of ``nodes`` that leads once every other one of ``nodes`` follows it.

    Unlike ``LocalCluster.leader`` this asks only ``nodes``: a paused or cut-off
    node outside them is not waited on.
    """
    found: list[ServerProcess] = []

    def agreed() -> bool:
        roles = {node: role(node) for node in nodes}
        leaders = [n for n, r in roles.items() if r and r[0] == b"master"]
        if len(leaders) != 1:
            return False
        address = [leaders[0].host.encode(), leaders[0].port]
        if any(not r or r[1:3] != address for n, r in roles.items() if n is not leaders[0]):
            return False
        found.append(leaders[0])
        return True

    wait_until(agreed, timeout_s, f"a leader followed by {[n.host for n in nodes]}")
    return found[0]


def wait_for_leader(
    target: ServerProcess, nodes: Sequence[ServerProcess], timeout_s: float = 10.0
) -> None:
    """Wait until ``target`` leads and every other one of ``nodes`` follows it (CLUSTER
    FAILOVER answers once the transfer starts, before it is done)."""

    def leads() -> bool:
        return role(target) is not None and role(target)[0] == b"master"  # type: ignore[index]

    wait_until(leads, timeout_s, f"{target.host} to lead")
    assert leader_among(nodes, timeout_s) is target


def raft_info(node: ServerProcess) -> dict[str, Any]:
    client = node.client(socket_timeout=5.0)
    try:
        return dict(client.info("raft"))
    finally:
        client.close()


def raft_ids(value: object) -> set[int]:
    """An id list of INFO raft (``voters``, ``learners``) as a set, however redis-py
    parsed it ("1,2,3" comes back as a list, "1" as an int, "" as a string)."""
    if isinstance(value, list):
        return {int(v) for v in value}
    if isinstance(value, int):
        return {value}
    text = value.decode() if isinstance(value, bytes) else str(value)
    return {int(v) for v in text.split(",") if v}


def term_of(node: ServerProcess) -> int:
    return int(raft_info(node)["term"])


class ReadonlyConnection(redis.Connection):
    """A connection that sends READONLY when it (re)connects: local replica reads."""

    def on_connect_check_health(self, check_health: bool = True) -> None:
        super().on_connect_check_health(check_health)
        self.send_command("READONLY")
        if self.read_response() != b"OK":
            raise redis.ConnectionError("READONLY refused")


def readonly_client(node: ServerProcess, timeout_s: float = 5.0) -> redis.Redis:
    """A client that reads ``node``'s own replica (stale by design on a follower)."""
    pool = redis.ConnectionPool(
        connection_class=ReadonlyConnection,
        host=node.host,
        port=node.port,
        socket_timeout=timeout_s,
    )
    return track_client(redis.Redis.from_pool(pool))  # close() also closes the pool


_barriers = itertools.count()


def barrier(leader: ServerProcess, nodes: Iterable[ServerProcess], timeout_s: float = 20.0) -> None:
    """Return once each of ``nodes`` has applied everything acknowledged before this
    call: a fresh write through the leader (or, should leadership move meanwhile,
    the node its -MOVED names), then wait for it on each node (entries apply in log
    order, so it is the last of them to appear)."""
    nodes = list(nodes)
    key = f"barrier:{time.monotonic_ns()}:{next(_barriers)}"
    address = [(leader.host, leader.port)]

    def written() -> bool:
        client = redis.Redis(*address[0], socket_timeout=5.0, retry=NO_RETRY)
        try:
            return client.set(key, "1") is True
        except redis.exceptions.MovedError as exc:
            address[0] = (exc.host, exc.port)
        except (redis.RedisError, OSError):
            pass  # CLUSTERDOWN during an election, a write lost to it: try again
        finally:
            client.close()
        return False

    wait_until(written, timeout_s, f"the barrier write {key}", interval_s=0.05)
    for node in nodes:
        replica = readonly_client(node)
        try:
            wait_until(lambda r=replica: _answers(r, key), timeout_s, f"{node.host} to apply {key}")
        finally:
            replica.close()


def _answers(client: redis.Redis, key: str) -> bool:
    try:
        return client.get(key) == b"1"
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def pause_and_wait(stop: threading.Event, seconds: float) -> None:
    """A client's back-off between retries (ends early when the load stops)."""
    stop.wait(seconds)


# -- a write load that survives failovers -------------------------------------------------


@dataclass
class Ack:
    sent_at: float
    acked_at: float


@dataclass
class WriterLog:
    """What one writer thread knows for certain about its writes."""

    thread: int
    # SET {w<t>}:<n> -> "<t>:<n>", acknowledged with OK (never overwritten afterwards).
    acked_sets: dict[str, str] = field(default_factory=dict)
    # INCR {w<t>}:count: every value an acknowledged INCR returned, in order.
    incr_replies: list[int] = field(default_factory=list)
    incr_attempts: int = 0
    acks: list[Ack] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


class ClusterWriter(threading.Thread):
    """Writes SETs and INCRs in a loop, one at a time, to whichever node leads.

    Follows -MOVED to the node it names; on -CLUSTERDOWN, a lost write, a
    timeout or a refused connection tries the next node. A write counts as
    acknowledged only when its reply is OK (SET) or an integer (INCR).
    """

    def __init__(self, thread: int, nodes: Sequence[ServerProcess], stop: threading.Event) -> None:
        super().__init__(name=f"writer-{thread}", daemon=True)
        self.log = WriterLog(thread)
        self.addresses = [(n.host, n.port) for n in nodes]
        self.target = 0
        self.stop_event = stop
        self.clients: dict[tuple[str, int], redis.Redis] = {}
        self.counter_key = f"{{w{thread}}}:count"
        self.failure: BaseException | None = None

    def client(self) -> redis.Redis:
        address = self.addresses[self.target]
        if address not in self.clients:
            self.clients[address] = redis.Redis(
                host=address[0],
                port=address[1],
                socket_timeout=2.0,
                socket_connect_timeout=1.0,
                retry=NO_RETRY,  # a retried INCR could apply twice and be counted once
            )
        return self.clients[address]

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by WriteLoad.stop, in the test's thread
            self.failure = exc
        finally:
            for client in self.clients.values():
                client.close()

    def _run(self) -> None:
        log = self.log
        for n in itertools.count():
            if self.stop_event.is_set():
                break
            if n % 4 == 3:
                self._write_until_done(incr=True, key=self.counter_key, value="")
            else:
                key = f"{{w{log.thread}}}:{n}"
                self._write_until_done(incr=False, key=key, value=f"{log.thread}:{n}")

    def _write_until_done(self, incr: bool, key: str, value: str) -> None:
        log = self.log
        while not self.stop_event.is_set():
            sent_at = time.monotonic()
            try:
                if incr:
                    log.incr_attempts += 1
                    reply = self.client().incr(key)
                else:
                    reply = self.client().set(key, value)
            except redis.exceptions.MovedError as exc:
                self._count(exc)
                self._move_to(exc.host, exc.port)
                continue
            except (redis.RedisError, OSError) as exc:
                self._count(exc)
                self.target = (self.target + 1) % len(self.addresses)
                pause_and_wait(self.stop_event, 0.02)
                continue
            acked_at = time.monotonic()
            if incr:
                log.incr_replies.append(int(reply))
            else:
                if reply is not True:
                    raise AssertionError(f"SET {key} answered {reply!r}")
                log.acked_sets[key] = value
            log.acks.append(Ack(sent_at, acked_at))
            return

    def _count(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.log.errors[name] = self.log.errors.get(name, 0) + 1

    def _move_to(self, host: str, port: int) -> None:
        if (host, port) in self.addresses:
            self.target = self.addresses.index((host, port))


class WriteLoad:
    """``threads`` ClusterWriters against ``cluster``; use as a context manager."""

    def __init__(self, cluster: LocalCluster, threads: int = 4) -> None:
        self.stop_event = threading.Event()
        self.writers = [ClusterWriter(t, cluster.nodes, self.stop_event) for t in range(threads)]

    def __enter__(self) -> WriteLoad:
        for writer in self.writers:
            writer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for writer in self.writers:
            writer.join(timeout=30)
            assert not writer.is_alive(), f"{writer.name} did not stop"
        for writer in self.writers:
            if writer.failure is not None:
                raise AssertionError(f"{writer.name} failed") from writer.failure

    @property
    def logs(self) -> list[WriterLog]:
        return [w.log for w in self.writers]

    def acks_after(self, t: float) -> int:
        """Writes sent after ``t`` and acknowledged, by every thread together."""
        return sum(1 for log in self.logs for ack in log.acks if ack.sent_at >= t)

    def first_ack_sent_after(self, t: float) -> float | None:
        """When the first write sent after ``t`` was acknowledged."""
        times = [ack.acked_at for log in self.logs for ack in log.acks if ack.sent_at >= t]
        return min(times) if times else None


def check_acknowledged(client: redis.Redis, logs: Iterable[WriterLog], where: str) -> int:
    """Every acknowledged write of ``logs`` is in what ``client`` reads; returns how many
    acknowledged writes were checked."""
    checked = 0
    for log in logs:
        keys = sorted(log.acked_sets)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            values = client.mget(chunk)  # one slot per thread: the keys share a hash tag
            lost = [
                (k, log.acked_sets[k], v)
                for k, v in zip(chunk, values, strict=True)
                if v != log.acked_sets[k].encode()
            ]
            assert not lost, f"{where}: acknowledged SETs lost or changed: {lost[:5]}"
            checked += len(chunk)
        if log.incr_replies:
            replies = log.incr_replies
            assert replies == sorted(set(replies)), f"thread {log.thread}: INCR went backwards"
            final = int(client.get(f"{{w{log.thread}}}:count") or 0)
            assert replies[-1] <= final <= log.incr_attempts, (
                f"{where}: counter of thread {log.thread} is {final}; acknowledged up to "
                f"{replies[-1]}, {log.incr_attempts} attempts"
            )
            checked += len(replies)
    return checked


def get_many(client: redis.Redis, keys: Sequence[str]) -> list[bytes | None]:
    """GET every key in one pipeline (MGET would need the keys in one slot)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    return pipe.execute()  # type: ignore[no-any-return]


class RawConnection:
    """Commands sent without waiting for their replies; replies read when asked
    (pipelines whose timing a test controls: a write in flight, a read after it)."""

    def __init__(self, node: ServerProcess, timeout_s: float = 20.0) -> None:
        self.sock = socket.create_connection((node.host, node.port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()

    def send(self, *argv: str, times: int = 1) -> None:
        frame = b"*%d\r\n" % len(argv) + b"".join(
            b"$%d\r\n%b\r\n" % (len(a.encode()), a.encode()) for a in argv
        )
        self.sock.sendall(frame * times)

    def replies(self, count: int) -> list[object]:
        found: list[object] = []
        while len(found) < count:
            while len(found) < count and (reply := self.reader.gets()) is not False:
                found.append(reply)
            if len(found) < count:
                self.reader.feed(self.sock.recv(65536))
        return found

    def replies_or_close(self, count: int, timeout_s: float) -> int:
        """How many of ``count`` replies arrive, or -1 if the server closes first."""
        self.sock.settimeout(timeout_s)
        found = 0
        while found < count:
            while found < count and self.reader.gets() is not False:
                found += 1
            if found < count:
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    return found
                if not data:
                    return -1
                self.reader.feed(data)
        return found

    def close(self) -> None:
        self.sock.close()
