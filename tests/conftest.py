"""Shared fixtures: real NomadKV nodes and a reference redis-server, on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, settings

from nomadkv import native
from nomadkv.harness import ServerProcess, close_clients, nomadkv_node, redis_server


def pytest_report_header() -> str:
    return "nomadkv request path: " + ("compiled (mypyc)" if native.compiled() else "interpreted")


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = native.stale()
    if stale:
        pytest.exit(
            f"compiled modules older than their sources ({', '.join(stale)}): run make compile",
            returncode=2,
        )


@pytest.fixture(autouse=True)
def _close_clients_after_each_test() -> Iterator[None]:
    """Every client a test got from the harness is closed when the test ends."""
    yield
    close_clients()


@pytest.fixture
def node(tmp_path) -> Iterator[ServerProcess]:
    """A fresh single node with default options (appendfsync always)."""
    server = nomadkv_node(str(tmp_path / "node")).start()
    yield server
    server.stop()


@pytest.fixture
def r(node: ServerProcess) -> Iterator[redis.Redis]:
    client = node.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Iterator[ServerProcess]:
    """One reference redis-server (Debian's 7.0) for differential tests."""
    server = redis_server(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


# The test machine is shared and small: a slow draw or example is load, not a
# bug. Hypothesis still shrinks and replays failures; it just does not fail a
# test for being slow.
settings.register_profile("nomadkv", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nomadkv")
