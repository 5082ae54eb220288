"""Helpers for the HTTP sidecar tests: start a real node with the sidecar on,
and an HTTP client that checks every answer against the OpenAPI document."""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from typing import Any

import redis
from openapi_check import check_response

from nomadkv.harness import ServerProcess, free_port, nomadkv_node, wait_until


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class HttpClient:
    """Plain http.client requests, so paths go out exactly as written (%FF stays %FF)."""

    def __init__(self, host: str, port: int, auth: str | None = None) -> None:
        self.host = host
        self.port = port
        self.auth = auth  # a full Authorization header value

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        check: bool = True,
    ) -> Answer:
        sent: dict[str, str | bytes] = dict(headers or {})
        if self.auth is not None:
            # As curl does: the header's bytes are the UTF-8 of what was typed.
            sent.setdefault("Authorization", self.auth.encode())
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
        if check:
            check_response(method, path, answer.status, answer.content_type, answer.body)
        return answer

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.request("GET", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Answer:
        return self.request("DELETE", path, **kwargs)

    def post_json(self, path: str, document: Any, **kwargs: Any) -> Answer:
        headers = {"Content-Type": "application/json"}
        return self.request("POST", path, body=json.dumps(document), headers=headers, **kwargs)

    def set(self, key: str, value: str, **fields: Any) -> Answer:
        return self.post_json("/api/v1/set", {"key": key, "value": value, **fields})


def bearer(password: str) -> str:
    return f"Bearer {password}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class SidecarNode:
    server: ServerProcess
    http_port: int
    password: str | None = None

    def http(self, auth: str | None = None) -> HttpClient:
        """A client sending ``auth`` as its Authorization header, by default the
        node's password as a bearer token (if it has one)."""
        if auth is None and self.password is not None:
            auth = bearer(self.password)
        return HttpClient(self.server.host, self.http_port, auth)

    def anonymous(self) -> HttpClient:
        """A client that sends no Authorization header."""
        return HttpClient(self.server.host, self.http_port)

    def resp(self) -> redis.Redis:
        return self.server.client(password=self.password)


def health_answers(host: str, port: int) -> bool:
    """The sidecar listens and says it serves (it starts just after the RESP port)."""
    try:
        return HttpClient(host, port).get("/health", check=False).status == 200
    except OSError:
        return False


def start_sidecar_node(data_dir: str, **options: Any) -> SidecarNode:
    http_port = free_port()
    server = nomadkv_node(data_dir, http_port=http_port, **options).start()
    node = SidecarNode(server, http_port, options.get("requirepass"))

    wait_until(lambda: health_answers(server.host, http_port), 30, "the sidecar's /health")
    return node
