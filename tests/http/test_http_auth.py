"""requirepass protects every route but /health: bearer token or Basic password."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sidecar_client import SidecarNode, basic, bearer, start_sidecar_node

PASSWORD = "s3cret-\u00e9"  # non-ASCII on purpose: compared as UTF-8 bytes

PROTECTED = [
    ("POST", "/api/v1/set", '{"key": "k", "value": "v"}'),
    ("GET", "/api/v1/get/k", None),
    ("DELETE", "/api/v1/delete/k", None),
    ("GET", "/api/v1/cluster/info", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/no/such/path", None),
]


@pytest.fixture(scope="module")
def locked(tmp_path_factory) -> Iterator[SidecarNode]:
    node = start_sidecar_node(str(tmp_path_factory.mktemp("locked")), requirepass=PASSWORD)
    yield node
    assert node.server.stop() == 0


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_without_the_password_every_route_answers_401(
    locked: SidecarNode, method: str, path: str, body: str | None
) -> None:
    answer = locked.anonymous().request(method, path, body=body)
    assert answer.status == 401
    assert answer.json() == {"error": "authentication required"}
    challenges = answer.headers.get_all("WWW-Authenticate")
    assert challenges == ['Bearer realm="nomadkv"', 'Basic realm="nomadkv"']


@pytest.mark.parametrize(
    "authorization",
    [
        bearer("wrong"),
        bearer(""),
        "Bearer",
        bearer(PASSWORD + "x"),
        bearer(PASSWORD[:-1]),
        basic("default", "wrong"),
        "Basic !!!not-base64",
        "Basic " + "cGFzc3dvcmQ=",  # "password" with no colon: no user:password pair
        f"Token {PASSWORD}",
        PASSWORD,
    ],
)
def test_wrong_credentials_answer_401(locked: SidecarNode, authorization: str) -> None:
    answer = locked.http(auth=authorization).get("/api/v1/cluster/info")
    assert answer.status == 401


@pytest.mark.parametrize(
    "authorization",
    [bearer(PASSWORD), "bearer " + PASSWORD, basic("default", PASSWORD), basic("anyone", PASSWORD)],
    ids=["bearer", "bearer-lowercase", "basic-default", "basic-any-user"],
)
def test_bearer_or_basic_with_the_password_is_let_in(
    locked: SidecarNode, authorization: str
) -> None:
    api = locked.http(auth=authorization)
    assert api.set("k", "v").status == 200
    assert api.get("/api/v1/get/k").json()["value"] == "v"
    assert api.get("/metrics").status == 200
    assert api.get("/openapi.json").status == 200


def test_health_needs_no_password(locked: SidecarNode) -> None:
    answer = locked.anonymous().get("/health")
    assert answer.status == 200
    assert answer.json()["status"] == "ok"


def test_resp_needs_auth_too_and_sees_http_writes(locked: SidecarNode) -> None:
    locked.http().set("shared", "x")
    with socket.create_connection((locked.server.host, locked.server.port), timeout=10) as sock:
        sock.sendall(b"GET shared\r\n")
        assert sock.recv(100) == b"-NOAUTH Authentication required.\r\n"
    client = locked.resp()
    assert client.get("shared") == b"x"
    client.close()
