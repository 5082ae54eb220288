"""The sidecar around a real Node in this process, for what a client cannot
bring about from outside yet: a key of another type (no list command exists
yet), a node shutting down, a password changed at run time. Also checks that
the app's routes and the OpenAPI document list the same operations."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from openapi_check import check_response

from nomadkv.commands.machine import decode_entry
from nomadkv.config import Config
from nomadkv.harness import free_port
from nomadkv.http.openapi import DOCUMENT
from nomadkv.http.sidecar import build_app, start_sidecar
from nomadkv.keyspace import ListValue
from nomadkv.server.node import Node, Waiter


class Api:
    """An aiohttp client whose every answer is checked against the document."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, path, **kwargs) as response:
            body = await response.read()
            check_response(method, path, response.status, response.content_type, body)
            return response.status, await response.json()


def run_with_node(
    tmp_path: Any,
    scenario: Callable[[Node, Api], Awaitable[None]],
    node_class: type[Node] = Node,
    **options: Any,
) -> None:
    async def main() -> None:
        config = Config(dir=str(tmp_path), http_port=free_port(), **options)
        node = node_class(config, asyncio.get_running_loop())
        node.recover()
        runner = await start_sidecar(node)
        try:
            base_url = f"http://{config.http_address}:{config.http_port}"
            async with aiohttp.ClientSession(base_url) as session:
                await scenario(node, Api(session))
        finally:
            await runner.cleanup()
            await node.shutdown()

    asyncio.run(main())


def test_a_key_of_another_type_answers_409(tmp_path) -> None:
    async def scenario(node: Node, api: Api) -> None:
        # What LPUSH will leave behind once lists exist.
        node.keyspace.data[b"list"] = ListValue([b"a"])
        status, body = await api("GET", "/api/v1/get/list")
        assert status == 409
        assert body == {
            "error": "WRONGTYPE Operation against a key holding the wrong kind of value"
        }
        # SET replaces a value of any type, as in Redis; DEL deletes any type.
        status, _ = await api("POST", "/api/v1/set", json={"key": "list", "value": "s"})
        assert status == 200
        assert node.keyspace.data[b"list"] == b"s"
        node.keyspace.data[b"list2"] = ListValue([b"a"])
        assert (await api("DELETE", "/api/v1/delete/list2"))[0] == 200
        assert b"list2" not in node.keyspace.data

    run_with_node(tmp_path, scenario)


def test_a_node_shutting_down_refuses_writes_with_503(tmp_path) -> None:
    async def scenario(node: Node, api: Api) -> None:
        assert (await api("POST", "/api/v1/set", json={"key": "k", "value": "v"}))[0] == 200
        await node.shutdown()
        status, body = await api("POST", "/api/v1/set", json={"key": "k", "value": "w"})
        assert (status, body) == (503, {"error": "the node is shutting down"})
        assert (await api("DELETE", "/api/v1/delete/k"))[0] == 503
        status, health = await api("GET", "/health")
        assert (status, health["status"]) == (503, "shutting_down")
        assert node.keyspace.data[b"k"] == b"v"

    run_with_node(tmp_path, scenario)


class HangingUpNode(Node):
    """Hangs up on every write's waiter, as a cluster member does on the waiters
    of its own entries when a snapshot replaces them (ClusterNode._install_snapshot)."""

    def propose(self, client: Waiter | None, argv: list[bytes]) -> None:
        assert client is not None
        client.flush()
        client.close()


def test_a_write_whose_fate_is_unknown_answers_503(tmp_path) -> None:
    async def scenario(node: Node, api: Api) -> None:
        status, body = await api("POST", "/api/v1/set", json={"key": "k", "value": "v"})
        assert status == 503
        assert "fate is unknown" in body["error"]
        assert (await api("GET", "/health"))[0] == 200  # the node serves on

    run_with_node(tmp_path, scenario, node_class=HangingUpNode)


def test_a_password_set_at_run_time_applies_to_the_next_request(tmp_path) -> None:
    async def scenario(node: Node, api: Api) -> None:
        assert (await api("GET", "/api/v1/cluster/info"))[0] == 200
        node.config = node.config.with_values({"requirepass": "changed"})  # as CONFIG SET does
        assert (await api("GET", "/api/v1/cluster/info"))[0] == 401
        headers = {"Authorization": "Bearer changed"}
        assert (await api("GET", "/api/v1/cluster/info", headers=headers))[0] == 200
        node.config = node.config.with_values({"requirepass": ""})
        assert (await api("GET", "/api/v1/cluster/info"))[0] == 200

    run_with_node(tmp_path, scenario)


def test_http_writes_are_logged_like_resp_writes(tmp_path) -> None:
    async def scenario(node: Node, api: Api) -> None:
        index = node.log.last_index
        await api("POST", "/api/v1/set", json={"key": "k", "value": "v", "ttl": 10})
        assert node.log.last_index == index + 1
        assert node.synced_index == node.log.last_index  # appendfsync always
        (record,) = list(node.log.read(index + 1))
        now_ms, commands = decode_entry(record.payload)
        # SET ... EX 10 was prepared into an absolute deadline, as on RESP: ten
        # seconds after the request arrived, which is at most the entry's stamp.
        ((name, key, value, option, deadline),) = commands
        assert (name, key, value, option) == (b"SET", b"k", b"v", b"PXAT")
        assert now_ms + 10_000 - 1_000 < int(deadline) <= now_ms + 10_000

    run_with_node(tmp_path, scenario)


def test_every_route_is_documented_and_every_documented_path_is_served(tmp_path) -> None:
    async def main() -> None:
        node = Node(Config(dir=str(tmp_path)), asyncio.get_running_loop())
        app = build_app(node)
        served = set()
        for resource in app.router.resources():
            path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", resource.canonical)
            served |= {(path, route.method.lower()) for route in resource}
        documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
        assert served == documented
        await node.shutdown()

    asyncio.run(main())
