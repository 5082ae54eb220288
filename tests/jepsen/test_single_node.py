"""Jepsen-style runs against one real node: concurrent redis-py clients, kill -9
and SIGSTOP/SIGCONT, a recorded history, the linearizability checker.

A single node with ``appendfsync always`` acknowledges a write only once it
is fsync'd, so its history must stay linearizable across kill -9 and
restart. A redis-server without persistence must not (the negative
control: the same runner and checker do catch lost writes).

Set ``JEPSEN_SEED`` to replay a schedule (the interleaving of the clients is
up to the machine). A failing run leaves its history in the test's
tmp_path; ``python -m nomadkv.jepsen check <file>`` re-checks it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from nomadkv.harness import ServerProcess, free_port, nomadkv_node, redis_server
from nomadkv.jepsen.runner import (
    Client,
    Recorder,
    Workload,
    classify_error,
    error_reply,
    parse_value,
    run,
)

SEED = int(os.environ.get("JEPSEN_SEED", "20261127"))


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        ("MOVED 3999 127.0.0.3:7001", "fail"),
        ("ASK 3999 127.0.0.3:7001", "fail"),
        ("CLUSTERDOWN The cluster is down", "fail"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", "fail"),
        ("ERR the write was not committed: leadership changed, retry", "fail"),
        ("ERR value is not an integer or out of range", "fail"),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", "fail"),
        ("ERR internal error", "info"),
        ("SOMETHINGNEW we do not know what happened", "info"),
    ],
)
def test_error_replies_are_definite_only_when_the_command_cannot_have_run(
    error: str, outcome: str
) -> None:
    assert classify_error(error) == outcome


def test_redis_py_error_classes_map_back_to_the_reply_text() -> None:
    from redis._parsers.base import BaseParser

    for reply in ("MOVED 866 127.0.0.3:7001", "CLUSTERDOWN The cluster is down", "ERR no"):
        assert error_reply(BaseParser.parse_error(reply)) == reply


def test_client_outcomes_over_a_real_connection(node: ServerProcess) -> None:
    recorder = Recorder(time.monotonic())
    workload = Workload(timeout_s=0.3)
    client = Client(recorder, [(node.host, node.port)], workload, first_node=0)
    write = client.perform("write", "k")
    assert write is not None and (write.outcome, write.value) == ("ok", 1000)
    incr = client.perform("incr", "k")
    read = client.perform("read", "k")
    assert incr is not None and (incr.outcome, incr.value) == ("ok", 1001)
    assert read is not None and (read.outcome, read.value) == ("ok", 1001)
    node.client().set("k", "abc")
    rejected = client.perform("incr", "k")
    assert rejected is not None and rejected.outcome == "fail"
    assert rejected.error == "ERR value is not an integer or out of range"
    process = client.process
    node.signal(signal.SIGSTOP)
    try:
        unknown = client.perform("write", "k")
    finally:
        node.signal(signal.SIGCONT)
    assert unknown is not None and unknown.outcome == "info" and unknown.value == 2000
    assert "Timeout" in unknown.error
    assert client.process != process  # the old request may still land: a new process
    assert recorder.history.operations == [write, incr, read, rejected, unknown]
    client.close()
    nobody = Client(recorder, [("127.0.0.1", free_port())], workload, first_node=0)
    assert nobody.perform("write", "k") is None  # nothing sent, nothing recorded
    assert recorder.unreachable == 1
    assert len(recorder.history.operations) == 5


def test_reply_values_parse_as_the_history_stores_them() -> None:
    assert parse_value(None) is None
    assert parse_value(12) == 12
    assert parse_value(b"-4000") == -4000
    assert parse_value(b"abc") == "abc"


def test_single_node_stays_linearizable_across_kill_and_pause(tmp_path) -> None:
    node = nomadkv_node(str(tmp_path / "node"), appendfsync="always").start()
    history_path = str(tmp_path / "history.jsonl")
    try:
        result = run(
            [node],
            lambda i: node.start(),
            duration_s=16.0,
            seed=SEED,
            faults=("kill", "pause"),
            gap_s=(1.0, 2.5),
            fault_s=(0.3, 1.2),
            history_path=history_path,
        )
    finally:
        node.stop()
    context = f"seed {SEED}, history {history_path}: {result.summary()}"
    assert result.check.status == "ok", context
    # Not vacuous: the faults happened, and every kind of operation succeeded
    # before, between and after them.
    started = [e.detail.split()[0] for e in result.history.nemesis if e.action == "start"]
    assert "kill" in started and "pause" in started, context
    last_heal = max(e.time for e in result.history.nemesis if e.action == "heal")
    for kind in ("read", "write", "incr"):
        assert result.counts.get(f"{kind}:ok", 0) >= 200, context
        assert any(
            op.kind == kind and op.outcome == "ok" and op.invoke > last_heal
            for op in result.history.operations
        ), context


def test_negative_control_a_store_that_forgets_on_kill_is_caught(tmp_path) -> None:
    server = redis_server(str(tmp_path / "redis")).start()  # no AOF, no RDB
    try:
        result = run(
            [server],
            lambda i: server.start(),
            duration_s=2.5,
            seed=SEED,
            faults=("kill",),
            gap_s=(0.8, 1.0),
            fault_s=(0.2, 0.4),
            recovery_s=0.5,
            workload=Workload(clients=4),
        )
    finally:
        server.stop()
    first = result.history.nemesis[0]
    assert (first.action, first.detail.split()[0]) == ("start", "kill")
    assert result.check.status == "fail", result.summary()
    killed_at = first.time
    for failure in result.check.failures:
        assert failure.blocked is not None and failure.blocked.invoke > killed_at
