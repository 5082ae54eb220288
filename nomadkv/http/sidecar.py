"""The HTTP sidecar: REST access to the keyspace, /metrics, /health, OpenAPI.

Owns the HTTP surface of a node (aiohttp, in the node's own event loop). Every
key operation runs as the command a RESP client would send, through
``gateway`` (writes are logged, fsync'd and committed before the answer);
the sidecar itself never touches the keyspace, the log or the clock beyond
reading them.

Invariants:
- Every route is described in ``openapi.DOCUMENT`` and every answer matches
  it; an error is always a JSON ``{"error": "..."}`` body, including the ones
  aiohttp raises (unknown path, wrong method, body too large).
- With ``requirepass`` set (read from ``node.config`` at every request, since
  CONFIG SET can change it), every route but /health needs the password as a
  bearer token or HTTP Basic password, compared in constant time.
- Nothing here blocks the loop: handlers do dictionary work and await the
  commit; /metrics reads counters and one /proc file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from nomadkv import __version__
from nomadkv.cluster.topology import node_name
from nomadkv.http.exposition import CONTENT_TYPE
from nomadkv.http.gateway import CommandFailed, Gateway, NodeUnavailable, ReadSession
from nomadkv.http.metrics import HttpStats, render_metrics
from nomadkv.http.openapi import DOCUMENT, MAX_BODY_BYTES
from nomadkv.server.node import TERM

if TYPE_CHECKING:
    from nomadkv.server.node import Node

log = logging.getLogger("nomadkv.http")


class _MalformedRequestFilter(logging.Filter):
    """aiohttp answers malformed HTTP (a request line over 8190 bytes, bad
    headers) with a plain-text 400 and logs a traceback at ERROR for each:
    a client's mistake, not the node's, so drop the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, (HttpProcessingError, web.RequestPayloadError))


protocol_log = logging.getLogger("nomadkv.http.protocol")
protocol_log.addFilter(_MalformedRequestFilter())

GET_PREFIX = "/api/v1/get/"
DELETE_PREFIX = "/api/v1/delete/"
OPEN_PATHS = frozenset({"/health"})
SLOTS = 16384
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
SET_FIELDS = frozenset({"key", "value", "ttl", "encoding"})
CHALLENGES = (
    ("WWW-Authenticate", 'Bearer realm="nomadkv"'),
    ("WWW-Authenticate", 'Basic realm="nomadkv"'),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    """Input the sidecar refuses; ``status`` is 400 or 413."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def json_error(status: int, message: str, headers: Any = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def presented_password(authorization: str) -> bytes | None:
    """The password in an ``Authorization`` header: a bearer token, or the
    password part of HTTP Basic credentials (any user name)."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials.encode("utf-8", "surrogateescape")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return None
        _, colon, password = decoded.partition(b":")
        return password if colon else None
    return None


def password_matches(authorization: str, requirepass: str) -> bool:
    given = presented_password(authorization)
    expected = requirepass.encode()
    # compare_digest takes time independent of where the two differ.
    return given is not None and hmac.compare_digest(given, expected)


def key_from_path(request: web.Request, prefix: str) -> bytes:
    """The key in a path, percent-decoded to bytes (so %FF is the byte 0xFF)."""
    # The router matched the percent-decoded path (/api/v1/%67et/k routes to get/), so
    # the raw prefix may be longer than ``prefix``: the key is what follows its slashes.
    return unquote_to_bytes(request.rel_url.raw_path.split("/", prefix.count("/"))[-1])


def key_text(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


def encoded_value(value: bytes) -> tuple[str, str]:
    """(text, encoding): the value as UTF-8 text, or base64 when it is not UTF-8."""
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"


def parse_set_body(body: bytes, max_bulk_len: int) -> tuple[bytes, bytes, int | None]:
    """(key, value, ttl seconds or None) from a /api/v1/set body, or BadRequest."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(document) - SET_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'")
    for field in ("key", "value"):
        if field not in document:
            raise BadRequest(f"missing field '{field}'")
        if not isinstance(document[field], str):
            raise BadRequest(f"'{field}' must be a string")
    if not document["key"]:
        raise BadRequest("'key' must not be empty")
    encoding = document.get("encoding", "utf-8")
    if encoding not in ("utf-8", "base64"):
        raise BadRequest("'encoding' must be 'utf-8' or 'base64'")
    ttl = document.get("ttl")
    if ttl is not None and (type(ttl) is not int or ttl <= 0):
        raise BadRequest("'ttl' must be a positive integer number of seconds, or null")
    try:
        key = document["key"].encode("utf-8")
        text = document["value"]
        value = base64.b64decode(text, validate=True) if encoding == "base64" else text.encode()
    except UnicodeEncodeError:
        raise BadRequest("'key' and 'value' must be valid Unicode (no lone surrogates)") from None
    except (binascii.Error, ValueError):
        raise BadRequest("'value' is not valid base64") from None
    if len(key) > max_bulk_len or len(value) > max_bulk_len:
        raise BadRequest("the key or value is larger than proto-max-bulk-len", 413)
    return key, value, ttl


def route_name(request: web.Request) -> str:
    """The route template (bounded label values for metrics), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class Sidecar:
    """The handlers of one node's sidecar."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.gateway = Gateway(node)
        self.stats = HttpStats()
        # Redis's run_id: random per process, until the cluster gives nodes lasting ids.
        self.run_id = secrets.token_hex(20)
        self.openapi_body = json.dumps(DOCUMENT).encode()

    # -- middleware ------------------------------------------------------------

    @web.middleware
    async def observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count and time every request (outermost, so it sees every status)."""
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            method = request.method if request.method in KNOWN_METHODS else "other"
            self.stats.observe(route_name(request), method, status, time.perf_counter() - started)

    @web.middleware
    async def errors_as_json(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp's own errors (404, 405, 413) and crashes answered as JSON."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
            return json_error(exc.status, (exc.reason or "error").lower(), headers)
        except BadRequest as exc:
            return json_error(exc.status, exc.message)
        except NodeUnavailable as exc:
            return json_error(503, str(exc))
        except Exception:
            self.node.stats.unexpected_errors += 1
            log.exception("internal error answering %s %s", request.method, request.path)
            return json_error(500, "internal error")

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        requirepass = self.node.config.requirepass
        if (
            requirepass
            and request.path not in OPEN_PATHS
            and not password_matches(request.headers.get("Authorization", ""), requirepass)
        ):
            return json_error(401, "authentication required", CIMultiDict(CHALLENGES))
        return await handler(request)

    # -- key operations ----------------------------------------------------------

    async def set(self, request: web.Request) -> web.Response:
        """POST /api/v1/set {"key", "value", "ttl"?, "encoding"?}"""
        try:
            body = await request.read()
        except web.HTTPException:
            raise
        except (web.RequestPayloadError, ConnectionResetError) as exc:
            # A bad Content-Encoding, a broken chunk, a client gone mid-body.
            raise BadRequest(f"the body could not be read: {exc}") from None
        key, value, ttl = parse_set_body(body, self.node.config.proto_max_bulk_len)
        argv = [b"SET", key, value]
        if ttl is not None:
            argv += [b"EX", b"%d" % ttl]
        try:
            reply = await self.gateway.write(argv)
        except CommandFailed as exc:
            return json_error(400, exc.message)
        return web.json_response({"key": key_text(key), "result": reply.decode(), "ttl": ttl})

    async def get(self, request: web.Request) -> web.Response:
        """GET /api/v1/get/{key}"""
        key = key_from_path(request, GET_PREFIX)

        def deadline_then(session: ReadSession) -> tuple[int | None, int]:
            return session.keyspace.deadline(key), session.now_ms

        try:
            value, (deadline, now_ms) = await self.gateway.read([b"GET", key], deadline_then)
        except CommandFailed as exc:
            return json_error(409 if exc.code == "WRONGTYPE" else 400, exc.message)
        if value is None:
            return json_error(404, "no such key")
        ttl_ms = None if deadline is None else max(deadline - now_ms, 0)
        text, encoding = encoded_value(value)
        return web.json_response(
            {
                "key": key_text(key),
                "value": text,
                "encoding": encoding,
                # Redis's TTL rounds the milliseconds left to the nearest second.
                "ttl": None if ttl_ms is None else (ttl_ms + 500) // 1000,
                "ttl_ms": ttl_ms,
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        """DELETE /api/v1/delete/{key}"""
        key = key_from_path(request, DELETE_PREFIX)
        try:
            deleted = await self.gateway.write([b"DEL", key])
        except CommandFailed as exc:
            return json_error(400, exc.message)
        if not deleted:
            return json_error(404, "no such key")
        return web.json_response({"key": key_text(key), "deleted": deleted})

    # -- the node ----------------------------------------------------------------

    def _node_view(self, node_id: str, address: str, role: str) -> dict[str, Any]:
        node = self.node
        config = node.config
        return {
            "id": node_id,
            "address": address,
            "http_address": f"{config.http_address.split()[0]}:{config.http_port}",
            "role": role,
            "version": __version__,
            "uptime_seconds": round(time.time() - node.started_at, 3),
            "keys": len(node.keyspace),
            "applied_index": node.machine.applied_index,
            "synced_index": node.synced_index,
            "snapshot_index": node.snapshot_index,
            "connected_clients": len(node.clients),
        }

    def _standalone_view(self) -> dict[str, Any]:
        config = self.node.config
        address = f"{config.bind.split()[0]}:{config.port}"
        # A single member commits alone: it is the leader of its one group.
        me = self._node_view(self.run_id, address, "leader")
        member = {"id": me["id"], "raft_id": None, "address": address, "role": "leader"}
        group = {
            "id": 0,
            "slots": [[0, SLOTS - 1]],
            "leader": me["id"],
            "members": [me["id"]],
            "term": TERM,
            "commit_index": self.node.machine.applied_index,
        }
        return {
            "cluster_enabled": False,
            "state": "ok",
            "slots": SLOTS,
            "node": me,
            "members": [member],
            "shard_groups": [group],
        }

    def _cluster_view(self) -> dict[str, Any]:
        node: Any = self.node
        topology = node.topology()
        raft = node.info_raft()
        me = self._node_view(
            node_name(node.raft_id), f"{node.host}:{node.config.port}", raft.get("role", "follower")
        )
        members = []
        for member in topology.members:
            if member.raft_id == topology.leader_id:
                role = "leader"
            elif member.raft_id in topology.learners:
                role = "learner"
            else:
                role = "follower"
            members.append(
                {
                    "id": member.name,
                    "raft_id": member.raft_id,
                    "address": member.address,
                    "role": role,
                }
            )
        leader = topology.leader
        group = {
            "id": 0,
            "slots": [[0, SLOTS - 1]],
            "leader": leader.name if leader is not None else None,
            "members": [m["id"] for m in members],
            "term": topology.epoch,
            "commit_index": raft.get("commit_index", 0),
        }
        return {
            "cluster_enabled": True,
            "state": "ok" if leader is not None else "fail",
            "slots": SLOTS,
            "node": me,
            "members": members,
            "shard_groups": [group],
        }

    async def cluster_info(self, request: web.Request) -> web.Response:
        """GET /api/v1/cluster/info"""
        if self.node.config.cluster_enabled:
            return web.json_response(self._cluster_view())
        return web.json_response(self._standalone_view())

    async def health(self, request: web.Request) -> web.Response:
        """GET /health"""
        node = self.node
        serving = not node.shutting_down
        return web.json_response(
            {
                "status": "ok" if serving else "shutting_down",
                "applied_index": node.machine.applied_index,
                "synced_index": node.synced_index,
                "uptime_seconds": round(time.time() - node.started_at, 3),
            },
            status=200 if serving else 503,
        )

    async def metrics(self, request: web.Request) -> web.Response:
        """GET /metrics"""
        text = render_metrics(self.node, self.stats)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def openapi(self, request: web.Request) -> web.Response:
        """GET /openapi.json"""
        return web.Response(body=self.openapi_body, content_type="application/json")


def build_app(node: Node, sidecar: Sidecar | None = None) -> web.Application:
    sidecar = sidecar or Sidecar(node)
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[sidecar.observe, sidecar.errors_as_json, sidecar.authenticate],
    )
    router = app.router
    router.add_post("/api/v1/set", sidecar.set)
    router.add_get(GET_PREFIX + "{key:.+}", sidecar.get, allow_head=False)
    router.add_delete(DELETE_PREFIX + "{key:.+}", sidecar.delete)
    router.add_get("/api/v1/cluster/info", sidecar.cluster_info, allow_head=False)
    router.add_get("/health", sidecar.health, allow_head=False)
    router.add_get("/metrics", sidecar.metrics, allow_head=False)
    router.add_get("/openapi.json", sidecar.openapi, allow_head=False)
    return app


BUSY_LINGER_S = 2.0
BUSY_BODY = b'{"error": "max number of clients reached (http-maxclients)"}\n'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(BUSY_BODY), BUSY_BODY)
)


class _Busy(asyncio.Protocol):
    """A connection past http-maxclients: answered 503 and closed. What the client
    sent is read and dropped, and the close waits for the client's own (or
    BUSY_LINGER_S): closing with its request unread would reset the connection,
    and a reset can destroy the 503 before the client reads it."""

    def __init__(self) -> None:
        self.linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # uvloop's: no asyncio base class
        transport.write(BUSY)
        transport.write_eof()
        self.linger = asyncio.get_running_loop().call_later(BUSY_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # dropped: the answer is 503 whatever was asked

    def eof_received(self) -> bool:
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.linger is not None:
            self.linger.cancel()


class CappedSite(web.BaseSite):
    """A TCP site serving at most http-maxclients connections at once, as
    maxclients caps RESP connections: one client's idle keep-alives or half-sent
    requests must not use up the descriptors the node needs for everything else."""

    def __init__(self, runner: web.AppRunner, sidecar: Sidecar, host: str, port: int) -> None:
        super().__init__(runner, backlog=sidecar.node.config.tcp_backlog)
        self._sidecar = sidecar
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        sidecar = self._sidecar

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) >= sidecar.node.config.http_maxclients:
                sidecar.stats.connections_rejected += 1
                return _Busy()
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


async def start_sidecar(node: Node) -> web.AppRunner:
    """Serve the sidecar on every address of ``http_address`` at ``http_port``;
    the caller awaits ``cleanup()`` on the runner at shutdown."""
    config = node.config
    sidecar = Sidecar(node)
    runner = web.AppRunner(
        build_app(node, sidecar),
        access_log=None,
        logger=protocol_log,
        shutdown_timeout=5.0,
        # aiohttp's default (3630 s) also bounds a connection that never sends its
        # request line and headers: slow clients could hold descriptors for an hour.
        keepalive_timeout=15.0,
    )
    await runner.setup()
    for address in config.http_address.split():
        site = CappedSite(runner, sidecar, address, config.http_port)
        await site.start()
    return runner
