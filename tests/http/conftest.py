"""Fixtures for the HTTP sidecar tests: a real node with the sidecar on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from sidecar_client import HttpClient, SidecarNode, start_sidecar_node


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory) -> Iterator[SidecarNode]:
    """One node with the sidecar on and no password, shared by a module's tests."""
    node = start_sidecar_node(str(tmp_path_factory.mktemp("sidecar")))
    yield node
    assert node.server.stop() == 0


@pytest.fixture
def api(sidecar: SidecarNode) -> HttpClient:
    return sidecar.http()


@pytest.fixture
def resp(sidecar: SidecarNode) -> Iterator[redis.Redis]:
    client = sidecar.resp()
    yield client
    client.close()
