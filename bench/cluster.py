"""Cluster benchmarks: a local 3-node cluster against redis-server, failover, catch-up.

Owns the performance figures of the replicated-cluster issue, measured on a
``LocalCluster`` (3 nodes on 127.0.0.2-4, default options: appendfsync
always, ReadIndex reads) started here, in four phases:

1. throughput: redis-benchmark SET and GET (``-c 50``, ``-P 1`` and
   ``-P 16``, the ``-r``/``-d`` of bench.throughput) against the leader and
   against redis-server started here, alternating as bench.throughput does
   (warm-up on each side sizes ``-n``, then ``--rounds`` rounds of redis
   then cluster with the same command line). SET's reference is
   ``redis-server --appendonly yes --appendfsync always``; GET's is an
   in-memory redis-server (its own process, no AOF). GET is measured twice:
   ReadIndex (the default) and on a second cluster with ``raft-lease-reads
   yes``. CPU time per request is recorded for redis-server, the leader and
   each follower, with what explains it: the leader's log entries, fsyncs
   and bus messages per run, the CPU pressure (PSI) during the run and an
   fdatasync probe before each round (this VM's disk changes speed).
   ``redis-benchmark --cluster`` is run against the cluster and, as a
   control, against a real one-master Redis Cluster.
2. failover: one client writes SETs in a loop, following -MOVED and moving
   to the next node on -CLUSTERDOWN or a connection error; the leader is
   killed (SIGKILL); the time from the kill to the first write acknowledged
   by the new leader, ``--failovers`` times (the killed node is restarted
   and caught up between repetitions).
3. catch-up: ``--catchup-keys`` keys with random values, a snapshot on the
   leader (SAVE, which compacts its log), ``--catchup-tail-keys`` more keys
   in the log after it; then a follower is stopped, its data directory
   wiped, and brought back as a new member (CLUSTER FORGET, start empty
   with ``--cluster-join``, CLUSTER MEET: restarted with its old
   ``--peers`` its peers would refuse it); the time until its applied index
   reaches the leader's, and the bytes the leader sent it on the bus
   (``bytes_sent`` of the peer in ``INFO raft``) per second.
4. profile (only with ``--phases profile``): py-spy (or perf) samples the
   leader and one follower under SET ``-P 16`` and GET ``-P 1``.

Every server is started here on loopback and stopped by PID. Never changes
the nodes' code or options beyond what the phase says. Results: a table per
phase on stdout, JSON in bench/results/cluster-*.json.

Run from a clone of the repository so the code under test cannot change
mid-run: ``git clone /work/main /tmp/x && cd /tmp/x &&
/work/main/.venv/bin/python -m bench.cluster [--rounds 3] [--seconds 3]
[--only "GET -P 1"] [--phases throughput,failover,catchup] [--failovers 5]
[--catchup-keys 200000] [--check]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bench import dataset, hotpath, loadgen, machine, memory, report, throughput
from nomadkv.harness import LocalCluster, ServerProcess, free_port, redis_server, wait_until
from nomadkv.storage.log import stored_bytes

SET_TARGET = 0.6  # against redis-server --appendonly yes --appendfsync always, -P 1 and -P 16
GET_TARGET = 0.7  # ReadIndex GET against an in-memory redis-server, -P 1
FAILOVER_TARGET_S = 2.0
PHASES = ("throughput", "failover", "catchup", "profile")
QUICK_S = 1.0  # timeout of status queries, so a dead or busy node never stalls a poll
RETRY_PAUSE_S = 0.01  # the failover client's pause after an error before the next node
CATCHUP_TIMEOUT_S = 180.0
RAFT_INVARIANT_BROKEN = b"Raft invariant broken"
PROBE_SAMPLES = 30  # fdatasyncs timed before each round


# -- cluster status -------------------------------------------------------------------------


def raft_info(node: ServerProcess) -> dict[str, Any]:
    """``INFO raft`` of ``node``, or {} when it does not answer within QUICK_S."""
    try:
        client = node.client(socket_timeout=QUICK_S, socket_connect_timeout=QUICK_S)
        try:
            return dict(client.info("raft"))
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return {}


def raft_id(cluster: LocalCluster, node: ServerProcess) -> int:
    return cluster.nodes.index(node) + 1


def bytes_sent_to(leader: ServerProcess, peer: int) -> int:
    """Bytes the leader has sent on its bus link to ``peer`` (0 while it has none)."""
    entry = raft_info(leader).get(f"peer{peer}")
    return int(entry.get("bytes_sent", 0)) if isinstance(entry, dict) else 0


def applied_index(node: ServerProcess) -> int:
    return int(raft_info(node).get("applied_index", 0))


def wait_caught_up(cluster: LocalCluster, timeout_s: float = 60.0) -> ServerProcess:
    """The leader, once every live node follows it and has applied its commit index."""
    leader = cluster.leader(timeout_s=timeout_s)
    target = int(raft_info(leader).get("commit_index", 0))
    for node in cluster.nodes:
        if node.alive():
            caught_up = functools.partial(applied_index_reached, node, target)
            wait_until(caught_up, timeout_s, f"{node.host} to apply index {target}")
    return leader


def applied_index_reached(node: ServerProcess, target: int) -> bool:
    return applied_index(node) >= target


@contextlib.contextmanager
def running(*servers: ServerProcess | LocalCluster) -> Iterator[None]:
    """Start ``servers`` (redis-servers, clusters); stop whatever is alive on exit."""
    started: list[ServerProcess | LocalCluster] = []
    try:
        for server in servers:
            started.append(server)
            server.start()
        yield
    finally:
        for server in reversed(started):
            nodes = server.nodes if isinstance(server, LocalCluster) else [server]
            for node in nodes:
                if node.alive():
                    with contextlib.suppress(subprocess.TimeoutExpired):  # stop() killed it
                        node.stop(timeout_s=15)


# -- 1. throughput --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    test: str  # redis-benchmark -t
    pipeline: int
    lease_reads: bool  # the cluster serves reads from a leader lease instead of ReadIndex
    target: float | None  # the least acceptable ratio cluster/redis; None: reported only

    @property
    def baseline(self) -> str:
        return "fsync always" if self.test == "set" else "in-memory"

    @property
    def name(self) -> str:
        reads = "" if self.test == "set" else (" (lease)" if self.lease_reads else " (ReadIndex)")
        return f"{self.test.upper()} -P {self.pipeline}{reads}"

    @property
    def probe_requests(self) -> int:
        """Requests of the warm-up run that also sizes the measured runs."""
        return 50_000 if self.pipeline == 1 else 400_000


SCENARIOS = (
    Scenario("set", 1, False, SET_TARGET),
    Scenario("set", 16, False, SET_TARGET),
    Scenario("get", 1, False, GET_TARGET),
    Scenario("get", 16, False, None),
    Scenario("get", 1, True, None),
    Scenario("get", 16, True, None),
)
REDIS_FSYNC_ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")


def run_on_leader(
    cluster: LocalCluster, argv_for: Callable[[ServerProcess], list[str]]
) -> tuple[loadgen.Run, dict[str, Any]]:
    """One redis-benchmark run against the leader, with every follower's CPU time.

    Should leadership move during the run (an election on a loaded machine),
    redis-benchmark stops at the first -MOVED; the run is then repeated once
    on the new leader, and the change recorded.
    """
    leader = cluster.leader()
    term = int(raft_info(leader).get("term", 0))
    try:
        return watched_run(cluster, leader, term, argv_for)
    except loadgen.BenchmarkError:
        if int(raft_info(cluster.leader()).get("term", 0)) == term:
            raise
    print("  leadership moved during the run: once more on the new leader", flush=True)
    leader = cluster.leader()
    return watched_run(cluster, leader, int(raft_info(leader).get("term", 0)), argv_for)


def watched_run(
    cluster: LocalCluster,
    leader: ServerProcess,
    term: int,
    argv_for: Callable[[ServerProcess], list[str]],
) -> tuple[loadgen.Run, dict[str, Any]]:
    followers = {n.host: n for n in cluster.nodes if n is not leader}
    before = {node.host: node_counters(node) for node in cluster.nodes}
    run = loadgen.run(leader, argv_for(leader), followers)
    after = {node.host: node_counters(node) for node in cluster.nodes}
    term_after = int(raft_info(leader).get("term", 0))
    counters = {
        host: {name: after[host][name] - before[host][name] for name in after[host]}
        for host in after
    }
    return run, {
        "leader": leader.host,
        "term": term,
        "term_changed": term_after != term,
        "counters": counters,
    }


def node_counters(node: ServerProcess) -> dict[str, int]:
    """What explains a run beside its CPU time: log entries appended, fsyncs, bus
    messages (INFO persistence, CLUSTER INFO)."""
    client = node.client(socket_timeout=5.0, decode_responses=True)
    try:
        persistence = client.info("persistence")
        info = client.execute_command("CLUSTER", "INFO")
    finally:
        client.close()
    if isinstance(info, str):  # redis-py versions differ in parsing CLUSTER INFO
        info = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return {
        "log_entries": int(persistence["log_last_index"]),
        "fsyncs": int(persistence["fsyncs"]),
        "messages_sent": int(info["cluster_stats_messages_sent"]),
        "messages_received": int(info["cluster_stats_messages_received"]),
    }


def measure(
    scenario: Scenario,
    redis_ref: ServerProcess,
    cluster: LocalCluster,
    rounds: int,
    seconds: float,
    requests: int | None,
    workdir: str,
) -> dict[str, Any]:
    def argv(server: ServerProcess, count: int) -> list[str]:
        return loadgen.benchmark_argv(
            server,
            scenario.test,
            count,
            throughput.CLIENTS,
            scenario.pipeline,
            throughput.KEYSPACE,
            throughput.DATA_SIZE,
        )

    print(f"\n{scenario.name}: warm-up", flush=True)
    warm_up = min(requests or scenario.probe_requests, scenario.probe_requests)
    warm_redis = loadgen.run(redis_ref, argv(redis_ref, warm_up))
    run_on_leader(cluster, lambda leader: argv(leader, warm_up))
    count = requests or throughput.requests_for(warm_redis.rps, seconds, scenario.probe_requests)
    print(f"  redis:   {shlex.join(argv(redis_ref, count))}")
    print(f"  cluster: {shlex.join(argv(cluster.leader(), count))}")
    redis_runs: list[loadgen.Run] = []
    cluster_runs: list[loadgen.Run] = []
    leaders: list[dict[str, Any]] = []
    disk_ms: list[float] = []
    for round_number in range(1, rounds + 1):
        # This VM's disk flips between fast and slow fsyncs within minutes; SET's
        # figures on both sides follow it, so each round records it.
        disk_ms.append(fdatasync_latency_ms(workdir, PROBE_SAMPLES)["median"])
        redis_runs.append(loadgen.run(redis_ref, argv(redis_ref, count)))
        run, leader = run_on_leader(cluster, lambda node: argv(node, count))
        cluster_runs.append(run)
        leaders.append(leader)
        print(
            f"  round {round_number}: redis {redis_runs[-1].rps:,.0f}/s, "
            f"cluster {run.rps:,.0f}/s (leader {leader['leader']}), "
            f"ratio {run.rps / redis_runs[-1].rps:.2f}; CPU pressure "
            f"{share(redis_runs[-1].cpu_contention)} / {share(run.cpu_contention)}; "
            f"fdatasync {disk_ms[-1]:.2f} ms",
            flush=True,
        )
    ratios = [c.rps / r.rps for r, c in zip(redis_runs, cluster_runs, strict=True)]
    redis_rps = report.median([r.rps for r in redis_runs])
    cluster_rps = report.median([c.rps for c in cluster_runs])
    ratio = cluster_rps / redis_rps
    # Per follower, busier first (which node follows may change with the leader).
    followers_cpu = [
        report.median([sorted(us_per_request(c).values(), reverse=True)[i] for c in cluster_runs])
        for i in range(len(cluster.nodes) - 1)
    ]
    leader_cpu = report.median([c.server_cpu_us_per_request for c in cluster_runs])
    leader_counters = [round_["counters"][round_["leader"]] for round_ in leaders]
    return {
        "scenario": scenario.name,
        "test": scenario.test,
        "clients": throughput.CLIENTS,
        "pipeline": scenario.pipeline,
        "reads": "lease" if scenario.lease_reads else "ReadIndex",
        "baseline": scenario.baseline,
        "requests": count,
        "target": scenario.target,
        "ratio": ratio,
        "ratios": ratios,
        "passed": None if scenario.target is None else ratio >= scenario.target,
        "redis_rps_median": redis_rps,
        "nomadkv_rps_median": cluster_rps,
        "redis_cpu_us_per_request": report.median(
            [r.server_cpu_us_per_request for r in redis_runs]
        ),
        "nomadkv_cpu_us_per_request": leader_cpu,
        "followers_cpu_us_per_request": followers_cpu,
        "cluster_cpu_us_per_request": leader_cpu + sum(followers_cpu),
        "leaders": leaders,
        "leader_changes": sum(1 for leader in leaders if leader["term_changed"]),
        # Leader: log entries and fsyncs per second, commands per entry, bus messages
        # sent per request (a ReadIndex round costs one heartbeat per follower).
        "leader_entries_per_s": report.median(
            [
                c["log_entries"] / r.wall_s
                for c, r in zip(leader_counters, cluster_runs, strict=True)
            ]
        ),
        "requests_per_entry": report.median(
            [
                r.requests / c["log_entries"]
                for c, r in zip(leader_counters, cluster_runs, strict=True)
            ]
        )
        if all(c["log_entries"] for c in leader_counters)
        else None,
        "leader_fsyncs_per_s": report.median(
            [c["fsyncs"] / r.wall_s for c, r in zip(leader_counters, cluster_runs, strict=True)]
        ),
        "leader_messages_per_request": report.median(
            [
                c["messages_sent"] / r.requests
                for c, r in zip(leader_counters, cluster_runs, strict=True)
            ]
        ),
        "cpu_contention": contention(redis_runs + cluster_runs),
        "fdatasync_ms": disk_ms,
        "redis_runs": [r.as_dict() for r in redis_runs],
        "nomadkv_runs": [c.as_dict() for c in cluster_runs],
    }


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def contention(runs: list[loadgen.Run]) -> float | None:
    """Median share of a run's time during which some task waited for a CPU."""
    shares = [r.cpu_contention for r in runs if r.cpu_contention is not None]
    return report.median(shares) if shares else None


def us_per_request(run: loadgen.Run) -> dict[str, float]:
    """CPU µs per request of each watched process (the followers) in ``run``."""
    return {label: cpu * 1e6 / run.requests for label, cpu in run.watched_cpu_s.items()}


def benchmark_cluster_mode(target: ServerProcess, requests: int) -> dict[str, Any]:
    """``redis-benchmark --cluster`` against ``target``: exit status, output, rows."""
    argv = loadgen.benchmark_argv(
        target, "set,get", requests, throughput.CLIENTS, 1, throughput.KEYSPACE
    )
    argv.insert(1, "--cluster")
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    rows = {}
    if done.returncode == 0:
        rows = {test: loadgen.parse_csv(done.stdout, test)["rps"] for test in ("set", "get")}
    output = (done.stdout + done.stderr).strip()
    return {
        "command": shlex.join(argv),
        "exit_status": done.returncode,
        "output": output[-2000:],
        "rps": rows,
    }


def one_master_redis_cluster(workdir: str) -> ServerProcess:
    """A started redis-server in cluster mode, one master owning all 16384 slots."""
    data_dir = os.path.join(workdir, "redis-cluster")
    server = redis_server(
        data_dir,
        port=free_port(also_free=(10000,)),  # and its cluster bus port
        extra=(
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            os.path.join(data_dir, "nodes.conf"),
        ),
    )
    server.start()
    client = server.client(decode_responses=True)
    try:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until(
            lambda: "cluster_state:ok" in client.execute_command("CLUSTER", "INFO"),
            30,
            "the one-master redis cluster to be ok",
        )
    finally:
        client.close()
    return server


def load_benchmark_keys(server: ServerProcess) -> None:
    """redis-benchmark's keys (``-r 100000``), so that every GET hits, as bench.throughput."""
    value = b"x" * throughput.DATA_SIZE
    dataset.load(server, dataset.set_batches(throughput.KEYSPACE, lambda i: value))


def throughput_phase(options: Options, workdir: str) -> dict[str, Any]:
    scenarios = [s for s in SCENARIOS if options.only.lower() in s.name.lower()]
    if not scenarios:
        raise SystemExit(f"no scenario matches {options.only!r}")
    results: list[dict[str, Any]] = []
    commands: dict[str, str] = {}
    persistence: dict[str, dict[str, str]] = {}
    references: dict[str, ServerProcess] = {}
    if any(s.baseline == "fsync always" for s in scenarios):
        references["fsync always"] = redis_server(
            os.path.join(workdir, "redis-fsync-always"), extra=REDIS_FSYNC_ALWAYS
        )
    if any(s.baseline == "in-memory" for s in scenarios):
        references["in-memory"] = redis_server(os.path.join(workdir, "redis-in-memory"))
    cluster_mode: dict[str, Any] = {}
    fsync_probe = fdatasync_latency_ms(workdir)
    print(
        f"  fdatasync of a 1.5 KB append here: median {fsync_probe['median']:.2f} ms, "
        f"p90 {fsync_probe['p90']:.2f} ms"
    )
    with running(*references.values()):
        for name, server in references.items():
            load_benchmark_keys(server)
            commands[f"redis-server ({name})"] = shlex.join(server.argv)
            persistence[name] = throughput.redis_persistence(server)
            print(f"  redis-server ({name}): {shlex.join(server.argv)}")
            print(f"    reports {persistence[name]}")
        for lease_reads in (False, True):
            selected = [s for s in scenarios if s.lease_reads is lease_reads]
            if not selected:
                continue
            extra: dict[str, Any] = {"raft_lease_reads": "yes"} if lease_reads else {}
            tag = "lease" if lease_reads else "readindex"
            cluster = LocalCluster(os.path.join(workdir, f"cluster-{tag}"), **extra)
            with running(cluster):
                leader = cluster.leader()
                commands[f"cluster ({tag})"] = " ; ".join(shlex.join(n.argv) for n in cluster.nodes)
                print(f"\n[cluster, {tag} reads] nodes: {', '.join(n.host for n in cluster.nodes)}")
                for node in cluster.nodes:
                    print(f"  {shlex.join(node.argv)}")
                load_benchmark_keys(leader)
                wait_caught_up(cluster)
                for scenario in selected:
                    result = measure(
                        scenario,
                        references[scenario.baseline],
                        cluster,
                        options.rounds,
                        options.seconds,
                        options.requests,
                        workdir,
                    )
                    result["redis_persistence"] = persistence[scenario.baseline]
                    results.append(result)
                if not lease_reads:
                    print("\nredis-benchmark --cluster against the cluster", flush=True)
                    requests = options.requests or 100_000
                    cluster_mode["nomadkv"] = benchmark_cluster_mode(cluster.leader(), requests)
                    print(f"  {cluster_mode['nomadkv']['command']}")
                    print(
                        f"  -> exit {cluster_mode['nomadkv']['exit_status']}: "
                        f"{cluster_mode['nomadkv']['output'][-300:]}"
                    )
    if cluster_mode:
        print("\nredis-benchmark --cluster against a one-master Redis Cluster (control)")
        control = one_master_redis_cluster(workdir)
        try:
            cluster_mode["redis_one_master"] = benchmark_cluster_mode(
                control, options.requests or 100_000
            )
        finally:
            control.stop()
        print(
            f"  -> exit {cluster_mode['redis_one_master']['exit_status']}: "
            f"{cluster_mode['redis_one_master']['output'][-300:]}"
        )
    return {
        "results": results,
        "commands": commands,
        "redis_persistence": persistence,
        "cluster_mode_benchmark": cluster_mode,
        "fdatasync_ms": fsync_probe,
        "table": throughput_table(results) + "\n\n" + work_table(results),
    }


def fdatasync_latency_ms(directory: str, samples: int = 200) -> dict[str, float]:
    """How long an fdatasync of a small append takes on this disk now: the floor of
    a write under appendfsync always, for redis-server and for each Raft replica."""
    path = os.path.join(directory, "fsync-probe")
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(samples):
            os.write(fd, b"x" * 1500)
            started = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - started) * 1e3)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {"median": report.median(times), "p90": times[int(0.9 * (samples - 1))]}


def work_table(results: list[dict[str, Any]]) -> str:
    """What the leader did per run, and how contended the machine was (CPU pressure:
    share of the run's time during which some task, ours included, waited for a CPU)."""
    headers = [
        "scenario",
        "leader log entries/s",
        "requests/entry",
        "fsyncs/s",
        "bus msgs sent/request",
        "CPU pressure",
        "fdatasync ms (rounds)",
    ]
    rows = [
        [
            r["scenario"],
            f"{r['leader_entries_per_s']:,.0f}",
            "-" if r["requests_per_entry"] is None else f"{r['requests_per_entry']:,.1f}",
            f"{r['leader_fsyncs_per_s']:,.0f}",
            f"{r['leader_messages_per_request']:.3f}",
            "-" if r["cpu_contention"] is None else f"{r['cpu_contention']:.0%}",
            " ".join(f"{ms:.2f}" for ms in r["fdatasync_ms"]),
        ]
        for r in results
    ]
    return report.table(headers, rows)


def throughput_table(results: list[dict[str, Any]]) -> str:
    headers = [
        "scenario (-c 50)",
        "redis",
        "redis req/s",
        "cluster req/s",
        "ratio",
        "rounds",
        "target",
        "",
        "CPU us/req redis",
        "leader",
        "followers",
    ]
    rows = [
        [
            r["scenario"],
            r["baseline"],
            f"{r['redis_rps_median']:,.0f}",
            f"{r['nomadkv_rps_median']:,.0f}",
            f"{r['ratio']:.2f}",
            "-".join(f"{x:.2f}" for x in (min(r["ratios"]), max(r["ratios"]))),
            "" if r["target"] is None else f">= {r['target']:.2f}",
            "" if r["passed"] is None else ("pass" if r["passed"] else "FAIL"),
            f"{r['redis_cpu_us_per_request']:.2f}",
            f"{r['nomadkv_cpu_us_per_request']:.2f}",
            " + ".join(f"{x:.2f}" for x in r["followers_cpu_us_per_request"]),
        ]
        for r in results
    ]
    return report.table(headers, rows)


# -- 2. failover ----------------------------------------------------------------------------


@dataclass
class Ack:
    sent_at: float
    acked_at: float
    node: str


def error_name(exc: BaseException) -> str:
    """ConnectionError, ClusterDownError, ... (redis-py's class), with the error code
    for a plain -ERR reply."""
    if type(exc) is redis.ResponseError:
        return f"ResponseError {str(exc).split(' ', 1)[0]}"
    return type(exc).__name__


class Writer(threading.Thread):
    """One client writing SETs in a loop, one at a time, to whichever node leads.

    Follows -MOVED to the node it names; on -CLUSTERDOWN, any other error, a
    timeout or a refused connection, pauses RETRY_PAUSE_S and tries the next
    node. No retries inside redis-py: every attempt is one command.
    """

    def __init__(self, nodes: Sequence[ServerProcess]) -> None:
        super().__init__(name="failover-writer", daemon=True)
        self.addresses = [(n.host, n.port) for n in nodes]
        self.target = 0
        self.stop_event = threading.Event()
        self.acks: list[Ack] = []
        self.errors: Counter[str] = Counter()
        self.failure: BaseException | None = None
        self._clients: dict[tuple[str, int], redis.Redis] = {}

    def _client(self) -> redis.Redis:
        address = self.addresses[self.target]
        if address not in self._clients:
            self._clients[address] = redis.Redis(
                host=address[0],
                port=address[1],
                socket_timeout=2.0,
                socket_connect_timeout=QUICK_S,
                retry=Retry(NoBackoff(), 0),
            )
        return self._clients[address]

    def run(self) -> None:
        try:
            for n in range(sys.maxsize):
                if self.stop_event.is_set():
                    break
                self._write(f"failover:{n}", n)
        except BaseException as exc:  # raised again by stop(), in the measuring thread
            self.failure = exc
        finally:
            for client in self._clients.values():
                client.close()

    def _write(self, key: str, value: int) -> None:
        while not self.stop_event.is_set():
            sent_at = time.monotonic()
            try:
                reply = self._client().set(key, value)
            except redis.exceptions.MovedError as exc:
                self.errors["MOVED"] += 1
                if (exc.host, exc.port) in self.addresses:
                    self.target = self.addresses.index((exc.host, exc.port))
                continue
            except (redis.RedisError, OSError) as exc:
                self.errors[error_name(exc)] += 1
                self.target = (self.target + 1) % len(self.addresses)
                self.stop_event.wait(RETRY_PAUSE_S)
                continue
            if reply is not True:
                raise RuntimeError(f"SET {key} answered {reply!r}")
            self.acks.append(Ack(sent_at, time.monotonic(), self.addresses[self.target][0]))
            return

    def first_ack_after(self, t: float, start: int, killed: str) -> Ack | None:
        """The first write acknowledged at ``t`` or later by a node other than ``killed``
        (looking from ack ``start`` on). The killed node's own last replies may be
        read just after ``t``: they left it before the signal landed."""
        return next(
            (ack for ack in self.acks[start:] if ack.acked_at >= t and ack.node != killed), None
        )

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)
        if self.failure is not None:
            raise RuntimeError("the failover writer failed") from self.failure


def role_of(client: redis.Redis) -> bytes | None:
    """b"master", b"slave", ... from ROLE, or None when the node does not answer."""
    try:
        return bytes(client.execute_command("ROLE")[0])  # type: ignore[no-untyped-call]
    except (redis.RedisError, OSError):
        return None


def one_failover(cluster: LocalCluster, repetition: int, warm_acks: int) -> dict[str, Any]:
    """Kill the leader under the writer; when the first write after it was acknowledged."""
    leader = wait_caught_up(cluster)
    term = int(raft_info(leader)["term"])
    survivors = [node for node in cluster.nodes if node is not leader]
    watchers = {
        node.host: node.client(socket_timeout=QUICK_S, socket_connect_timeout=QUICK_S)
        for node in survivors
    }
    writer = Writer(cluster.nodes)
    writer.target = cluster.nodes.index(leader)
    writer.start()
    elected: dict[str, float] = {}
    try:
        wait_until(lambda: len(writer.acks) >= warm_acks, 30, f"{warm_acks} writes acknowledged")
        start = len(writer.acks)
        killed_at = time.monotonic()
        leader.kill()

        def new_leader_serves() -> bool:
            for host, client in watchers.items():
                if host not in elected and role_of(client) == b"master":
                    elected[host] = time.monotonic()
            first = writer.first_ack_after(killed_at, start, leader.host)
            return first is not None and bool(elected)

        wait_until(new_leader_serves, 30, "a write acknowledged after the kill", interval_s=0.005)
    finally:
        writer.stop()
        for client in watchers.values():
            client.close()
    first = writer.first_ack_after(killed_at, start, leader.host)
    assert first is not None  # new_leader_serves() held
    new_leader = next(node for node in survivors if node.host == first.node)
    result = {
        "repetition": repetition,
        "killed": leader.host,
        "term_before": term,
        "new_leader": new_leader.host,
        "term_after": int(raft_info(new_leader).get("term", 0)),
        "failover_s": first.acked_at - killed_at,
        "first_write_sent_after_kill_s": first.sent_at - killed_at,
        "leader_seen_s": min(elected.values()) - killed_at,
        "errors": dict(writer.errors),
        "acknowledged_writes": len(writer.acks),
    }
    print(
        f"  {repetition}: killed {leader.host} (term {term}); {new_leader.host} leads in term "
        f"{result['term_after']}; ROLE says master after {result['leader_seen_s']:.3f} s; "
        f"first write acknowledged after {result['failover_s']:.3f} s; errors {result['errors']}",
        flush=True,
    )
    leader.start()
    wait_caught_up(cluster)
    return result


def failover_phase(options: Options, workdir: str) -> dict[str, Any]:
    cluster = LocalCluster(os.path.join(workdir, "cluster-failover"))
    repetitions = []
    print("\n[failover] kill -9 of the leader while one client writes")
    with running(cluster):
        for node in cluster.nodes:
            print(f"  {shlex.join(node.argv)}")
        for repetition in range(1, options.failovers + 1):
            repetitions.append(one_failover(cluster, repetition, warm_acks=50))
    times = [r["failover_s"] for r in repetitions]
    result = {
        "repetitions": repetitions,
        "min_s": min(times),
        "median_s": report.median(times),
        "max_s": max(times),
        "target_s": FAILOVER_TARGET_S,
        "passed": max(times) < FAILOVER_TARGET_S,
        "retry_pause_s": RETRY_PAUSE_S,
    }
    result["table"] = failover_table(result)
    return result


def failover_table(result: dict[str, Any]) -> str:
    headers = ["#", "killed", "new leader", "term", "ROLE master (s)", "first write (s)", "errors"]
    rows = [
        [
            str(r["repetition"]),
            r["killed"],
            r["new_leader"],
            f"{r['term_before']} -> {r['term_after']}",
            f"{r['leader_seen_s']:.3f}",
            f"{r['failover_s']:.3f}",
            ", ".join(f"{name} {count}" for name, count in sorted(r["errors"].items())),
        ]
        for r in result["repetitions"]
    ]
    verdict = "pass" if result["passed"] else "FAIL"
    return "\n".join(
        [
            report.table(headers, rows),
            f"kill -9 to first acknowledged write: min {result['min_s']:.3f} s, median "
            f"{result['median_s']:.3f} s, max {result['max_s']:.3f} s "
            f"(target: every one < {result['target_s']:.0f} s, {verdict})",
        ]
    )


# -- 3. catch-up ----------------------------------------------------------------------------


def data_dir(node: ServerProcess) -> str:
    return os.path.dirname(node.log_path)


def node_stored_bytes(node: ServerProcess) -> dict[str, int]:
    """Bytes of the node's snapshots and log on disk."""
    return {part: stored_bytes(os.path.join(data_dir(node), part)) for part in ("snapshots", "log")}


def wipe(node: ServerProcess) -> None:
    """Stop ``node`` (if running) and delete its data directory but its server log."""
    if node.alive():
        node.stop()
    for entry in os.listdir(data_dir(node)):
        if entry != os.path.basename(node.log_path):
            path = os.path.join(data_dir(node), entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def log_since(node: ServerProcess, offset: int) -> bytes:
    with open(node.log_path, "rb") as f:
        f.seek(offset)
        return f.read()


def raft_ids(value: object) -> set[int]:
    """An id list of INFO raft (``voters``) as a set, however redis-py parsed it."""
    if isinstance(value, list):
        return {int(v) for v in value}
    if isinstance(value, int):
        return {value}
    return {int(v) for v in str(value).split(",") if v}


@dataclass
class CatchUp:
    """One wiped node coming back: how, what it took, how long."""

    method: str
    started_at: float = 0.0  # monotonic, when the process was spawned
    ready_at: float = 0.0  # its first PONG
    met_at: float | None = None  # CLUSTER MEET sent (rejoin only)
    first_byte_at: float | None = None  # the leader's bytes_sent to it first grew
    caught_up_at: float | None = None
    failure: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def watch_catch_up(
    leader: ServerProcess,
    node: ServerProcess,
    peer: int,
    target: int,
    sent_before: int,
    run: CatchUp,
) -> int:
    """Poll until ``node`` has applied ``target`` (or died, or the deadline passed);
    the bytes the leader sent it meanwhile."""

    def settled() -> bool:
        now = time.monotonic()
        if run.first_byte_at is None and bytes_sent_to(leader, peer) > sent_before:
            run.first_byte_at = now
        if not node.alive():
            return True
        if applied_index(node) >= target:
            run.caught_up_at = time.monotonic()
            return True
        return False

    try:
        wait_until(settled, CATCHUP_TIMEOUT_S, f"{node.host} to apply index {target}")
    except TimeoutError as exc:
        run.failure = str(exc)
    if run.caught_up_at is None and not run.failure:
        run.failure = f"the node exited with status {node.process.poll() if node.process else '?'}"
    return bytes_sent_to(leader, peer) - sent_before


def catch_up_rejoin(cluster: LocalCluster, leader: ServerProcess, node: ServerProcess) -> CatchUp:
    """Bring ``node`` back empty the way Raft always supports: CLUSTER FORGET it,
    start it with --cluster-join, CLUSTER MEET it."""
    from nomadkv.cluster.topology import node_name

    peer = raft_id(cluster, node)
    wipe(node)
    admin = leader.client(socket_timeout=10)
    try:
        admin.execute_command("CLUSTER", "FORGET", node_name(peer))
        wait_until(
            lambda: peer not in raft_ids(raft_info(leader).get("voters", "")),
            30,
            f"node {peer} to leave the group",
        )
        if "--cluster-join" not in node.argv:
            node.argv += ["--cluster-join", "yes"]
        target = int(raft_info(leader)["commit_index"])
        sent_before = bytes_sent_to(leader, peer)
        log_offset = os.path.getsize(node.log_path)
        run = CatchUp("CLUSTER FORGET, start with --cluster-join, CLUSTER MEET")
        run.started_at = time.monotonic()
        node.start(timeout_s=60)
        run.ready_at = time.monotonic()
        admin.execute_command("CLUSTER", "MEET", node.host, node.port)
        run.met_at = time.monotonic()
    finally:
        admin.close()
    run.extra["bytes_sent"] = watch_catch_up(leader, node, peer, target, sent_before, run)
    finish(run, node, log_offset)
    return run


def finish(run: CatchUp, node: ServerProcess, log_offset: int) -> None:
    """What the node stored and logged while it came back."""
    run.extra["stored_bytes"] = node_stored_bytes(node)
    text = log_since(node, log_offset)
    run.extra["snapshot_installed"] = b"installed a snapshot at index" in text
    if not run.caught_up_at and RAFT_INVARIANT_BROKEN in text:
        line = next(x for x in text.splitlines() if RAFT_INVARIANT_BROKEN in x)
        run.failure = line.split(b" C ", 1)[-1].decode(errors="replace")


def catch_up_result(run: CatchUp) -> dict[str, Any]:
    def since(t: float | None, origin: float | None) -> float | None:
        return None if t is None or origin is None else t - origin

    sent = int(run.extra.get("bytes_sent", 0))
    transfer_s = since(run.caught_up_at, run.first_byte_at)
    total_s = since(run.caught_up_at, run.started_at)
    return {
        "method": run.method,
        "caught_up": run.caught_up_at is not None,
        "failure": run.failure,
        "bytes_sent": sent,
        "stored_bytes": run.extra.get("stored_bytes", {}),
        "snapshot_installed": run.extra.get("snapshot_installed", False),
        "spawn_to_ready_s": since(run.ready_at, run.started_at) if run.ready_at else None,
        "spawn_to_meet_s": since(run.met_at, run.started_at),
        "spawn_to_first_byte_s": since(run.first_byte_at, run.started_at),
        "first_byte_to_caught_up_s": transfer_s,
        "spawn_to_caught_up_s": total_s,
        "mb_per_s_transfer": sent / 1e6 / transfer_s if transfer_s else None,
        "mb_per_s_from_spawn": sent / 1e6 / total_s if total_s else None,
    }


def catchup_phase(options: Options, workdir: str) -> dict[str, Any]:
    keys, tail = options.catchup_keys, options.catchup_tail_keys
    cluster = LocalCluster(os.path.join(workdir, "cluster-catchup"))
    print(
        f"\n[catch-up] {keys:,} keys + SAVE + {tail:,} keys in the log, "
        f"{options.value_size}-byte random values"
    )
    with running(cluster):
        leader = cluster.leader()
        value = memory.values(keys + tail, options.value_size)
        load_s = dataset.load(leader, dataset.set_batches(keys, value))
        admin = leader.client(socket_timeout=300)
        try:
            started = time.perf_counter()
            admin.execute_command("SAVE")
            save_s = time.perf_counter() - started
        finally:
            admin.close()
        load_s += dataset.load(
            leader, dataset.set_batches(tail, lambda i: value(keys + i), b"tail:%012d")
        )
        leader = wait_caught_up(cluster)
        info = raft_info(leader)
        leader_stored = node_stored_bytes(leader)
        print(
            f"  loaded in {load_s:.1f} s, SAVE {save_s:.1f} s; leader {leader.host}: log "
            f"{info['first_index']}..{info['last_index']}, snapshot "
            f"{leader_stored['snapshots'] / 1e6:.1f} MB, log {leader_stored['log'] / 1e6:.1f} MB",
            flush=True,
        )
        node = next(n for n in cluster.nodes if n is not leader)
        # Restarted wiped with its old id, it would be refused (docs/cluster.md, "A
        # member that lost its data"): it comes back as a new member.
        runs = [catch_up_rejoin(cluster, leader, node)]
    attempts = [catch_up_result(run) for run in runs]
    result = {
        "keys": keys,
        "tail_keys": tail,
        "value_size": options.value_size,
        "load_s": load_s,
        "save_s": save_s,
        "leader_first_index": int(info["first_index"]),
        "leader_last_index": int(info["last_index"]),
        "leader_stored_bytes": leader_stored,
        "node": node.host,
        "attempts": attempts,
        "passed": attempts[0]["caught_up"],
    }
    result["table"] = catchup_table(result)
    return result


def catchup_table(result: dict[str, Any]) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    headers = [
        "method",
        "caught up",
        "MB sent",
        "MB stored (snap + log)",
        "ready (s)",
        "first byte (s)",
        "caught up (s)",
        "MB/s transfer",
        "MB/s from spawn",
    ]
    rows = [
        [
            a["method"],
            "yes" if a["caught_up"] else "NO",
            f"{a['bytes_sent'] / 1e6:.1f}",
            " + ".join(f"{a['stored_bytes'].get(p, 0) / 1e6:.1f}" for p in ("snapshots", "log")),
            seconds(a["spawn_to_ready_s"]),
            seconds(a["spawn_to_first_byte_s"]),
            seconds(a["spawn_to_caught_up_s"]),
            rate(a["mb_per_s_transfer"]),
            rate(a["mb_per_s_from_spawn"]),
        ]
        for a in result["attempts"]
    ]
    lines = [report.table(headers, rows), "times from spawning the node's process"]
    lines += [f"{a['method']}: {a['failure']}" for a in result["attempts"] if a["failure"]]
    return "\n".join(lines)


# -- 4. profile -----------------------------------------------------------------------------

PROFILES = (("set", 16), ("get", 1))
# py-spy leaf frames where a node waits rather than works: the fsync executor's
# thread waiting for a job, and uvloop's C loop (epoll_wait, and the socket
# syscalls it makes in C). A cluster node is mostly waiting (for fsyncs and its
# peers), so the busy samples are summarised without them.
WAITING_FRAMES = ("_worker (concurrent/futures/thread.py)", "Runner.run (asyncio/runners.py)")


def summarise_busy(raw_path: str, top: int) -> str:
    """py-spy's summary of the samples not in WAITING_FRAMES (written next to the
    raw profile as <raw>.busy), after the share those took."""
    busy_path = raw_path + ".busy"
    waiting = total = 0
    with open(raw_path) as raw, open(busy_path, "w") as busy:
        for entry in raw:
            stack, _, count_text = entry.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            total += int(count_text)
            if hotpath.short(stack.rsplit(";", 1)[-1])[0] in WAITING_FRAMES:
                waiting += int(count_text)
            else:
                busy.write(entry)
    share = waiting / total if total else 0.0
    return (
        f"{share:.0%} of {total} samples waiting (idle worker threads, uvloop's C loop); "
        f"the rest:\n\n{hotpath.summarise_py_spy(busy_path, top)}"
    )


def profile_phase(options: Options, workdir: str) -> dict[str, Any]:
    """Sample the leader and a follower under each load of PROFILES."""
    cluster = LocalCluster(os.path.join(workdir, "cluster-profile"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = "perf.data" if options.profiler == "perf" else "py-spy.txt"
    os.makedirs(report.RESULTS_DIR, exist_ok=True)
    profiles: list[dict[str, Any]] = []
    print(f"\n[profile] {options.profiler}, {options.profile_seconds} s per load")
    with running(cluster):
        load_benchmark_keys(cluster.leader())
        for test, pipeline in PROFILES:
            leader = wait_caught_up(cluster)
            follower = next(n for n in cluster.nodes if n is not leader)
            argv = loadgen.benchmark_argv(
                leader, test, 100_000_000, throughput.CLIENTS, pipeline, throughput.KEYSPACE
            )
            print(f"  load: {shlex.join(argv)}", flush=True)
            outputs = {
                role: os.path.join(
                    report.RESULTS_DIR, f"cluster-{test}-P{pipeline}-{role}-{stamp}.{suffix}"
                )
                for role in ("leader", "follower")
            }
            benchmark = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(hotpath.STEADY_STATE_S)  # redis-benchmark connects its clients
                pids = {"leader": leader.pid, "follower": follower.pid}
                pids["redis-benchmark"] = benchmark.pid
                cpu_before = {role: machine.cpu_seconds(pid) for role, pid in pids.items()}
                started = time.perf_counter()
                samplers = {
                    role: hotpath.profiler_argv(
                        options.profiler,
                        pids[role],
                        options.profile_seconds,
                        outputs[role],
                        native=False,
                    )
                    for role in ("leader", "follower")
                }
                print(f"  profile: {' ; '.join(shlex.join(a) for a in samplers.values())}")
                processes = {
                    role: subprocess.Popen(sampler, stdout=subprocess.DEVNULL)
                    for role, sampler in samplers.items()
                }
                for role, process in processes.items():
                    if process.wait() != 0:
                        raise RuntimeError(f"{shlex.join(samplers[role])} failed")
                wall_s = time.perf_counter() - started
                cores = {
                    role: (machine.cpu_seconds(pid) - cpu_before[role]) / wall_s
                    for role, pid in pids.items()
                }
            finally:
                benchmark.terminate()
                benchmark.wait()
            summaries = {
                role: hotpath.summarise_perf(path, options.top)
                if options.profiler == "perf"
                else summarise_busy(path, options.top)
                for role, path in outputs.items()
            }
            profiles.append(
                {
                    "test": test,
                    "pipeline": pipeline,
                    "load": shlex.join(argv),
                    "cores_used": cores,
                    "raw": outputs,
                    "summaries": summaries,
                }
            )
            busy = ", ".join(f"{role} {share:.2f}" for role, share in cores.items())
            print(f"\n{test.upper()} -P {pipeline}: cores used while sampled: {busy}")
            for role, text in summaries.items():
                print(f"\n-- {role} ({leader.host if role == 'leader' else follower.host}) --")
                print(text)
    return {"profiler": options.profiler, "seconds": options.profile_seconds, "profiles": profiles}


# -- the whole run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    rounds: int = 3
    seconds: float = 3.0
    requests: int | None = None
    only: str = ""
    phases: tuple[str, ...] = ("throughput", "failover", "catchup")
    failovers: int = 5
    catchup_keys: int = 200_000
    catchup_tail_keys: int = 50_000
    value_size: int = 100
    profiler: str = "py-spy"
    profile_seconds: int = 10
    top: int = 20


PHASE_RUNNERS: dict[str, Callable[[Options, str], dict[str, Any]]] = {
    "throughput": throughput_phase,
    "failover": failover_phase,
    "catchup": catchup_phase,
    "profile": profile_phase,
}


def run(options: Options) -> dict[str, Any]:
    """Run the chosen phases; print, save and return the results."""
    before = machine.describe()
    print("== cluster: a local 3-node NomadKV cluster / redis-server ==")
    print("\n".join(report.machine_lines(before)))
    data: dict[str, Any] = {"kind": "cluster", "machine": before, "options": vars_of(options)}
    with tempfile.TemporaryDirectory(prefix="nomadkv-bench-cluster-") as workdir:
        for phase in options.phases:
            load_before = machine.load_average()
            try:
                result = PHASE_RUNNERS[phase](options, workdir)
            except Exception:  # recorded; the other phases still run and are saved
                result = {"error": traceback.format_exc()}
                print(f"\n{phase} failed:\n{result['error']}", flush=True)
            result["load_average_before"] = load_before
            result["load_average_after"] = machine.load_average()
            data[phase] = result
    data["load_average_after"] = machine.load_average()
    data["errors"] = [phase for phase in options.phases if "error" in data[phase]]
    for phase in options.phases:
        if "table" in data[phase]:
            print(f"\n== {phase} ==\n{data[phase]['table']}")
        elif "error" in data[phase]:
            print(f"\n== {phase} ==\nfailed: {data[phase]['error'].splitlines()[-1]}")
    if "throughput" in data and "error" not in data["throughput"]:
        print(
            "req/s: median of the rounds; ratio: cluster/redis of those medians (rounds: range "
            "of the per-round ratios); CPU: CPU time per request of redis-server, the leader "
            "and each follower (busier first), all threads."
        )
        for name, outcome in data["throughput"]["cluster_mode_benchmark"].items():
            print(
                f"redis-benchmark --cluster, {name}: exit {outcome['exit_status']}, "
                f"{outcome['output'].splitlines()[-1] if outcome['output'] else ''}"
            )
    print(f"before: {before['uptime']}\nafter:  {machine.uptime_line()}")
    data["missed"] = missed_targets(data)
    data["path"] = report.write_json("cluster", data)
    print(f"targets missed: {', '.join(data['missed']) or 'none'}")
    if data["errors"]:
        print(f"phases that failed: {', '.join(data['errors'])}")
    print(f"results: {data['path']}")
    return data


def vars_of(options: Options) -> dict[str, Any]:
    return {name: getattr(options, name) for name in Options.__dataclass_fields__}


def missed_targets(data: dict[str, Any]) -> list[str]:
    """Targets missed by the phases that ran to the end."""
    missed = [
        r["scenario"] for r in data.get("throughput", {}).get("results", []) if r["passed"] is False
    ]
    if not data.get("failover", {}).get("passed", True):
        missed.append("failover")
    if not data.get("catchup", {}).get("passed", True):
        missed.append("catch-up of a wiped follower")
    return missed


def summary_lines(data: dict[str, Any]) -> list[str]:
    """The cluster block of the README summary (bench.all)."""
    lines = [
        "",
        "Local 3-node cluster (127.0.0.2-4, `appendfsync always`), `redis-benchmark` "
        "against the leader, alternating with redis-server (`python -m bench.cluster`):",
    ]
    for phase in data["errors"]:
        lines += ["", f"{phase}: **failed** ({data[phase]['error'].splitlines()[-1]})"]
    speed = data.get("throughput", {})
    if "results" in speed:
        lines += [
            "",
            "| redis-benchmark -c 50 -r 100000 | redis-server | redis-server req/s "
            "| cluster req/s | cluster/redis | target | CPU µs/req: redis / leader / followers |",
            "|---|---|---:|---:|---:|---|---:|",
        ]
        for r in speed["results"]:
            target = ""
            if r["target"] is not None:
                target = f">= {r['target']} ({'met' if r['passed'] else '**missed**'})"
            followers = " + ".join(f"{x:.2f}" for x in r["followers_cpu_us_per_request"])
            lines.append(
                f"| {r['scenario']} | {r['baseline']} | {r['redis_rps_median']:,.0f} "
                f"| {r['nomadkv_rps_median']:,.0f} | {r['ratio']:.2f} | {target} "
                f"| {r['redis_cpu_us_per_request']:.2f} / {r['nomadkv_cpu_us_per_request']:.2f} "
                f"/ {followers} |"
            )
        disk = [ms for r in speed["results"] if r["test"] == "set" for ms in r["fdatasync_ms"]]
        pressure = [
            r["cpu_contention"] for r in speed["results"] if r["cpu_contention"] is not None
        ]
        notes = []
        if disk:
            notes.append(
                f"fdatasync of a small append took {min(disk):.2f}-{max(disk):.2f} ms "
                "(median per SET round)"
            )
        if pressure:
            notes.append(
                f"some task waited for a CPU during {min(pressure):.0%}-{max(pressure):.0%} "
                "of the runs (PSI)"
            )
        if notes:
            lines += ["", "While measuring: " + "; ".join(notes) + "."]
        outcome = speed["cluster_mode_benchmark"].get("nomadkv")
        if outcome is not None:
            last = outcome["output"].splitlines()[-1] if outcome["output"] else ""
            lines += [
                "",
                f"`redis-benchmark --cluster`: exit {outcome['exit_status']} (`{last}`; "
                "redis-benchmark 7.0 requires at least 2 masters, and says the same of a "
                "one-master Redis Cluster).",
            ]
    failover = data.get("failover", {})
    if "repetitions" in failover:
        lines += [
            "",
            f"Failover, kill -9 of the leader to the first acknowledged write "
            f"({len(failover['repetitions'])} times): min {failover['min_s']:.2f} s, median "
            f"{failover['median_s']:.2f} s, max {failover['max_s']:.2f} s "
            f"(target < {failover['target_s']:.0f} s, "
            f"{'met' if failover['passed'] else '**missed**'}).",
        ]
    catchup = data.get("catchup", {})
    for a in catchup.get("attempts", []):
        if a["caught_up"]:
            lines += [
                "",
                f"Catch-up of a wiped node ({a['method']}), {catchup['keys']:,} + "
                f"{catchup['tail_keys']:,} keys: {a['bytes_sent'] / 1e6:.1f} MB in "
                f"{a['spawn_to_caught_up_s']:.2f} s from spawn "
                f"({a['mb_per_s_from_spawn']:.1f} MB/s; "
                f"{a['mb_per_s_transfer']:.1f} MB/s from the first byte).",
            ]
        else:
            lines += ["", f"Catch-up of a wiped node ({a['method']}): **failed**: {a['failure']}"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    defaults = Options()
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="rounds (3)")
    parser.add_argument(
        "--seconds", type=float, default=defaults.seconds, help="length of a redis run (3)"
    )
    parser.add_argument("--requests", type=int, help="fixed -n for every run (skips the sizing)")
    parser.add_argument("--only", default="", help='throughput scenarios matching, e.g. "GET -P 1"')
    parser.add_argument(
        "--phases",
        default=",".join(defaults.phases),
        help=f"comma-separated, of {', '.join(PHASES)} ({','.join(defaults.phases)})",
    )
    parser.add_argument("--failovers", type=int, default=defaults.failovers, help="(5)")
    parser.add_argument("--catchup-keys", type=int, default=defaults.catchup_keys)
    parser.add_argument("--catchup-tail-keys", type=int, default=defaults.catchup_tail_keys)
    parser.add_argument("--value-size", type=int, default=defaults.value_size)
    parser.add_argument("--profiler", default="py-spy", choices=("py-spy", "perf"))
    parser.add_argument("--profile-seconds", type=int, default=defaults.profile_seconds)
    parser.add_argument("--top", type=int, default=defaults.top, help="profile rows (20)")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    phases = tuple(p for p in args.phases.split(",") if p)
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    options = Options(
        rounds=args.rounds,
        seconds=args.seconds,
        requests=args.requests,
        only=args.only,
        phases=phases,
        failovers=args.failovers,
        catchup_keys=args.catchup_keys,
        catchup_tail_keys=args.catchup_tail_keys,
        value_size=args.value_size,
        profiler=args.profiler,
        profile_seconds=args.profile_seconds,
        top=args.top,
    )
    data = run(options)
    return 1 if data["errors"] or (args.check and data["missed"]) else 0


if __name__ == "__main__":
    sys.exit(main())
