"""Fixtures for the process-level cluster tests: clusters that always get cleaned up.

A test may pause (SIGSTOP) or kill nodes; teardown resumes every paused
node, stops what is alive (SIGTERM, then SIGKILL if it hangs) and, when the
test failed, prints the tail of every node's log.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nomadkv.harness import LocalCluster, ServerProcess


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


def shut_down(node: ServerProcess) -> None:
    """Resume (if paused) and stop one node; kill it if it does not stop in time."""
    if not node.alive():
        return
    node.signal(signal.SIGCONT)
    with contextlib.suppress(subprocess.TimeoutExpired):  # stop() killed it
        node.stop(timeout_s=15)


@pytest.fixture
def processes(request: pytest.FixtureRequest) -> Iterator[list[ServerProcess]]:
    """Node processes a test starts itself (a joining node): stopped at teardown."""
    started: list[ServerProcess] = []
    yield started
    for node in started:
        shut_down(node)
    if request.node.stash.get(_FAILED, False):
        for node in started:
            print(f"--- log of {node.host}:{node.port} ---\n{node.log_tail(60)}")


@pytest.fixture
def make_cluster(tmp_path, request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalCluster]]:
    """Start a LocalCluster: ``make_cluster(nodes=3, **options)``."""
    clusters: list[LocalCluster] = []

    def make(nodes: int = 3, **options: Any) -> LocalCluster:
        cluster = LocalCluster(str(tmp_path / f"cluster{len(clusters)}"), nodes=nodes, **options)
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        for node in cluster.nodes:
            shut_down(node)
    if request.node.stash.get(_FAILED, False):
        for cluster in clusters:
            for node in cluster.nodes:
                print(f"--- log of {node.host}:{node.port} ---\n{node.log_tail(60)}")


@pytest.fixture
def cluster(make_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    """A started 3-node cluster on 127.0.0.2-4 with default options."""
    return make_cluster()
