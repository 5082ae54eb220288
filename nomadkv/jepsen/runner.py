"""A Jepsen-style run: concurrent clients, a nemesis, a recorded history, a verdict.

Owns: `Workload` (keys, operation mix, clients, timeouts), `Client` (one
redis-py connection that performs one operation and classifies its outcome),
`run` (workers + nemesis + final reads + check), and saving/loading histories
to files.

Never: retries an operation (a retried INCR could count twice; redis-py's own
retries are switched off), or signals a process it was not given.

Outcome rules (what the checker may assume):
- a reply -> ``ok``, with the value read, written or returned by INCR;
- an error reply the server sends only for a command it did not execute
  (``-MOVED``, ``-ASK``, ``-CLUSTERDOWN``, ``-TRYAGAIN``, ``-ERR ...``) ->
  ``fail``; ``-ERR internal error`` and unrecognized error prefixes -> ``info``,
  to be safe;
- no connection (refused, unreachable): nothing was sent, nothing recorded;
- a timeout, a reset or a closed connection after the command was sent ->
  ``info``, and the worker continues as a new process (Jepsen's convention:
  the old request may still be in flight);
- the same rules for reads, although the checker ignores unsuccessful reads
  either way (a read changes nothing).

Times are ``time.monotonic()`` seconds since the run started: invoke just
before the command is sent, complete just after the reply is parsed.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from nomadkv.harness import ServerProcess, wait_until
from nomadkv.jepsen.history import (
    History,
    Kind,
    NemesisEvent,
    Operation,
    Outcome,
    Value,
    dump_lines,
    load_lines,
)
from nomadkv.jepsen.linearizability import CheckResult, check
from nomadkv.jepsen.nemesis import FaultKind, Firewall, Nemesis, schedule

# Error replies that mean "not executed": a redirect, no leader, or a
# rejection by the gate before the command ran. Anything else is unknown.
DEFINITE_ERRORS = (
    "MOVED",
    "ASK",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "CROSSSLOT",
    "LOADING",
    "READONLY",
    "NOAUTH",
    "NOPERM",
    "WRONGTYPE",
    "ERR",
)
INDETERMINATE_ERRORS = ("ERR internal error",)
RETRY_LATER = ("CLUSTERDOWN", "TRYAGAIN", "LOADING")
WRITE_VALUE_STEP = 1000  # writes set multiples of this, so INCRs rarely meet another write's value


@dataclass(frozen=True)
class Workload:
    keys: tuple[str, ...] = tuple(f"jepsen:{i}" for i in range(5))
    mix: tuple[tuple[Kind, float], ...] = (("read", 0.5), ("write", 0.3), ("incr", 0.2))
    clients: int = 6
    timeout_s: float = 0.5  # socket timeout: a pause longer than this yields info ops
    connect_timeout_s: float = 0.5


class Recorder:
    """Thread-safe: hands out process ids and unique write values, keeps the history."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.history = History()
        self.lock = threading.Lock()
        self.next_process = 0
        self.next_write = 0
        self.unreachable = 0

    def now(self) -> float:
        return time.monotonic() - self.started_at

    def new_process(self) -> int:
        with self.lock:
            self.next_process += 1
            return self.next_process - 1

    def write_value(self) -> int:
        with self.lock:
            self.next_write += 1
            return self.next_write * WRITE_VALUE_STEP

    def count_unreachable(self) -> None:
        with self.lock:
            self.unreachable += 1

    def record(self, op: Operation) -> None:
        with self.lock:
            self.history.operations.append(op)

    def event(self, action: str, detail: str) -> None:
        with self.lock:
            self.history.nemesis.append(NemesisEvent(round(self.now(), 6), action, detail))


def parse_value(reply: Any) -> Value:
    """A GET/INCR reply as the history stores it."""
    if reply is None or isinstance(reply, int):
        return reply
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    try:
        return int(text)
    except ValueError:
        return text


# redis-py strips the error code from the message; older versions do not keep
# it in ``status_code`` either, so map its exception classes back.
CODE_OF_EXCEPTION: dict[type[redis.ResponseError], str] = {
    redis.exceptions.MovedError: "MOVED",
    redis.exceptions.AskError: "ASK",
    redis.exceptions.TryAgainError: "TRYAGAIN",
    redis.exceptions.ClusterDownError: "CLUSTERDOWN",
    redis.exceptions.ClusterCrossSlotError: "CROSSSLOT",
    redis.exceptions.BusyLoadingError: "LOADING",
    redis.exceptions.ReadOnlyError: "READONLY",
}


def error_reply(error: redis.ResponseError) -> str:
    """The error reply as the server sent it, code first: ``MOVED 866 127.0.0.3:7001``."""
    code = getattr(error, "status_code", None) or CODE_OF_EXCEPTION.get(type(error))
    return f"{code} {error}" if code else str(error)


def classify_error(message: str) -> Outcome:
    """``fail`` if the error reply means the command was not executed, else ``info``."""
    if message.startswith(INDETERMINATE_ERRORS):
        return "info"
    prefix = message.split(" ", 1)[0]
    return "fail" if prefix in DEFINITE_ERRORS else "info"


class Client:
    """One connection to one node at a time, and the process id it acts as."""

    def __init__(
        self,
        recorder: Recorder,
        addresses: Sequence[tuple[str, int]],
        workload: Workload,
        first_node: int,
    ) -> None:
        self.recorder = recorder
        self.addresses = list(addresses)
        self.workload = workload
        self.target = self.addresses[first_node % len(self.addresses)]
        self.process = recorder.new_process()
        self.connection: redis.Connection | None = None

    def _connect(self) -> redis.Connection | None:
        if self.connection is None:
            host, port = self.target
            connection = redis.Connection(
                host=host,
                port=port,
                socket_timeout=self.workload.timeout_s,
                socket_connect_timeout=self.workload.connect_timeout_s,
                retry=Retry(NoBackoff(), 0),
                driver_info=None,  # no CLIENT SETINFO: the handshake sends nothing
            )
            try:
                connection.connect()
            except (redis.RedisError, OSError):
                connection.disconnect()
                self.recorder.count_unreachable()
                self._next_node()
                return None
            self.connection = connection
        return self.connection

    def _next_node(self) -> None:
        i = self.addresses.index(self.target) if self.target in self.addresses else -1
        self.target = self.addresses[(i + 1) % len(self.addresses)]

    def _drop_connection(self) -> None:
        if self.connection is not None:
            self.connection.disconnect()
            self.connection = None

    def close(self) -> None:
        self._drop_connection()

    def perform(self, kind: Kind, key: str) -> Operation | None:
        """Run one operation and record it; None if no node could be reached."""
        connection = self._connect()
        if connection is None:
            return None
        value: Value = self.recorder.write_value() if kind == "write" else None
        command: tuple[Any, ...] = {"read": ("GET", key), "write": ("SET", key, value)}.get(
            kind, ("INCR", key)
        )
        invoke = self.recorder.now()
        outcome: Outcome = "ok"
        error = ""
        try:
            connection.send_command(*command)
            reply = connection.read_response()
            if kind != "write":
                value = parse_value(reply)
        except redis.ResponseError as e:
            error = error_reply(e)
            outcome = classify_error(error)
            if error.startswith(("MOVED", "ASK")):
                self._follow_redirect(error)
            elif error.startswith("CLUSTERDOWN"):
                # This node knows no leader (it may be cut off): try another.
                self._drop_connection()
                self._next_node()
        except (redis.RedisError, OSError) as e:
            error = f"{type(e).__name__}: {e}"
            outcome = "info"
            self._drop_connection()
            self._next_node()
        complete = self.recorder.now()
        if kind != "write" and outcome != "ok":
            value = None
        op = Operation(self.process, key, kind, value, invoke, complete, outcome, error)
        self.recorder.record(op)
        if outcome == "info":
            # The request may still be in flight: carry on as a new process.
            self.process = self.recorder.new_process()
        return op

    def _follow_redirect(self, error: str) -> None:
        # -MOVED <slot> <host>:<port>
        parts = error.split()
        if len(parts) >= 3 and ":" in parts[2]:
            host, _, port = parts[2].rpartition(":")
            self._drop_connection()
            self.target = (host, int(port))


@dataclass
class RunResult:
    history: History
    check: CheckResult
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return f"{len(self.history.operations)} operations ({counts}); {self.check.explain()}"


def counts(history: History) -> dict[str, int]:
    tally = Counter(f"{op.kind}:{op.outcome}" for op in history.operations)
    tally.update(f"nemesis:{e.action}" for e in history.nemesis)
    return dict(tally)


def run(
    nodes: Sequence[ServerProcess],
    restart_node: Callable[[int], None],
    *,
    duration_s: float,
    seed: int,
    faults: Sequence[FaultKind],
    workload: Workload | None = None,
    firewall: Firewall | None = None,
    recovery_s: float = 2.0,
    check_timeout_s: float = 120.0,
    fault_s: tuple[float, float] = (0.3, 1.5),
    gap_s: tuple[float, float] = (1.0, 3.0),
    history_path: str | None = None,
) -> RunResult:
    """Load ``nodes`` for ``duration_s`` while a nemesis plays a seeded
    schedule of ``faults``; then heal, keep the load on for ``recovery_s``,
    read every key once more, and check the history.

    ``history_path``: also save the history there (JSON lines), before the
    check, so a failing run can be re-checked; also when the run itself
    breaks (with the reason in ``meta["aborted"]``), before the error
    propagates.
    """
    workload = workload or Workload()
    rng = random.Random(seed)
    plan = schedule(rng, faults, len(nodes), duration_s, gap_s=gap_s, fault_s=fault_s)
    addresses = [(node.host, node.port) for node in nodes]
    started_at = time.monotonic()
    recorder = Recorder(started_at)
    recorder.history.meta = {
        "seed": seed,
        "duration_s": duration_s,
        "faults": list(faults),
        "schedule": [asdict(f) for f in plan],
        "nodes": [f"{host}:{port}" for host, port in addresses],
        "workload": asdict(workload),
    }
    stop_load = threading.Event()
    stop_nemesis = threading.Event()
    errors: list[BaseException] = []

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                body()
            except BaseException as e:
                errors.append(e)
                stop_load.set()
                stop_nemesis.set()

        return target

    workers = [
        threading.Thread(
            target=guarded(_worker(recorder, addresses, workload, i, seed, stop_load)),
            name=f"jepsen-client-{i}",
            daemon=True,
        )
        for i in range(workload.clients)
    ]
    nemesis = Nemesis(nodes, restart_node, recorder.event, firewall)
    nemesis_thread = threading.Thread(
        target=guarded(lambda: nemesis.run(plan, started_at, stop_nemesis)),
        name="jepsen-nemesis",
        daemon=True,
    )
    for worker in workers:
        worker.start()
    nemesis_thread.start()
    try:
        try:
            stop_load.wait(duration_s)
            stop_nemesis.set()
            nemesis_thread.join()
            if not errors:
                for node in nodes:
                    wait_until(node.alive, 30.0, f"node {node.host}:{node.port} running")
                stop_load.wait(recovery_s)
        finally:
            stop_nemesis.set()
            stop_load.set()
            for worker in workers:
                worker.join()
            nemesis_thread.join()
            nemesis.heal_all()
        if errors:
            raise errors[0]
        final_reads(recorder, addresses, workload)
    except BaseException as e:
        recorder.history.meta["aborted"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        # Saved even when the run breaks (a node that cannot restart, say), so
        # what happened up to then can be read and re-checked.
        if history_path is not None:
            save(recorder.history, history_path)
    deadline = time.monotonic() + check_timeout_s
    verdict = check(recorder.history, should_stop=lambda: time.monotonic() > deadline)
    return RunResult(recorder.history, verdict, counts(recorder.history))


def _worker(
    recorder: Recorder,
    addresses: Sequence[tuple[str, int]],
    workload: Workload,
    index: int,
    seed: int,
    stop: threading.Event,
) -> Callable[[], None]:
    def body() -> None:
        rng = random.Random(f"{seed}:{index}")
        client = Client(recorder, addresses, workload, first_node=index)
        kinds = [kind for kind, _ in workload.mix]
        weights = [weight for _, weight in workload.mix]
        try:
            while not stop.is_set():
                kind = rng.choices(kinds, weights)[0]
                op = client.perform(kind, rng.choice(workload.keys))
                if op is None:
                    stop.wait(0.05)  # no node reachable: back off, try the next one
                elif op.error.startswith(RETRY_LATER):
                    stop.wait(0.01)  # no leader yet: do not spin
        finally:
            client.close()

    return body


def final_reads(
    recorder: Recorder,
    addresses: Sequence[tuple[str, int]],
    workload: Workload,
    timeout_s: float = 30.0,
) -> None:
    """After healing: read every key until one read succeeds (each attempt is
    recorded), so the history ends with what the store kept."""
    client = Client(recorder, addresses, workload, first_node=0)
    try:
        for key in workload.keys:

            def read_ok(key: str = key) -> bool:
                op = client.perform("read", key)
                return op is not None and op.outcome == "ok"

            wait_until(read_ok, timeout_s, f"a successful final read of {key}", interval_s=0.1)
    finally:
        client.close()


def save(history: History, path: str) -> None:
    with open(path, "w") as f:
        f.writelines(dump_lines(history))


def load(path: str) -> History:
    with open(path) as f:
        return load_lines(f)
