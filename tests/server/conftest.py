"""Fixtures for the server command tests: one node per module where tests
do not disturb each other, plus the session's reference redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from nomadkv.harness import ServerProcess, nomadkv_node


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory) -> Iterator[ServerProcess]:
    """One node (appendfsync no, for speed) shared by a module's tests."""
    server = nomadkv_node(str(tmp_path_factory.mktemp("node")), appendfsync="no").start()
    yield server
    assert server.stop() == 0


@pytest.fixture
def nk(shared_node: ServerProcess) -> Iterator[redis.Redis]:
    client = shared_node.client()
    yield client
    client.close()


@pytest.fixture
def ref(reference: ServerProcess) -> Iterator[redis.Redis]:
    client = reference.client()
    yield client
    client.close()
