"""Real server processes on loopback, for tests, benchmarks and ``nomadkv cluster up``.

Starts NomadKV nodes and reference ``redis-server`` processes on free ports
of 127.0.0.0/8, waits for them with a deadline (never a fixed sleep), and
stops only the processes it started, by PID.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PORT_RANGE = (21000, 39000)  # clear of the usual service ports and of ephemeral ports


class StartError(Exception):
    pass


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", also_free: tuple[int, ...] = ()) -> int:
    """A port free on ``host`` (and ``port + offset`` for each offset in ``also_free``)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*PORT_RANGE)
        if all(port_is_free(port + offset, host) for offset in (0, *also_free)):
            return port
    raise StartError("no free port found")


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def exchange_bytes(host: str, port: int, payload: bytes, size: int, timeout_s: float = 10) -> bytes:
    """Send ``payload`` on a new connection and read exactly ``size`` bytes back
    (a pipeline's raw replies, compared byte for byte)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        received = bytearray()
        while len(received) < size:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"closed after {len(received)} of {size} bytes")
            received += chunk
    return bytes(received)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
            return reply.startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class ServerProcess:
    """A child process serving RESP on ``host:port``."""

    def __init__(self, argv: list[str], host: str, port: int, log_path: str) -> None:
        self.argv = argv
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115  (kept open for the child's life)
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            wait_until(self._ready, timeout_s, f"{self.argv[0]} on {self.host}:{self.port}")
        except TimeoutError:
            self.kill()
            raise StartError(f"server did not start; its log:\n{self.log_tail()}") from None
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise StartError(
                f"server exited with {self.process.returncode}; its log:\n{self.log_tail()}"
            )
        return _accepts(self.host, self.port)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise StartError("not started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.process is None:
            return 0
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL (a crash), then reap."""
        if self.process is not None and self.alive():
            os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return "(no log)"

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client to this server; closed by ``close_clients``."""
        import redis

        return track_client(redis.Redis(host=self.host, port=self.port, **kwargs))


# Clients handed out since the last close_clients(): a test's fixture closes
# them when the test ends, whatever the test did with them.
_open_clients: list[Any] = []


def track_client(client: Any) -> Any:
    _open_clients.append(client)
    return client


def close_clients() -> None:
    clients = _open_clients[:]
    _open_clients.clear()
    for client in clients:
        client.close()


def nomadkv_node(
    data_dir: str, host: str = "127.0.0.1", port: int | None = None, **options: Any
) -> ServerProcess:
    """A NomadKV node (not started). ``options`` are config options with
    underscores (``appendfsync="no"``, ``http_port=0``)."""
    os.makedirs(data_dir, exist_ok=True)
    port = port or free_port(host)
    options.setdefault("http_port", 0)
    argv = [sys.executable, "-m", "nomadkv.cli", "server", "--bind", host, "--port", str(port)]
    argv += ["--dir", data_dir]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return ServerProcess(argv, host, port, os.path.join(data_dir, "server.log"))


def redis_server(
    data_dir: str, host: str = "127.0.0.1", port: int | None = None, extra: tuple[str, ...] = ()
) -> ServerProcess:
    """The reference redis-server (not started), in-memory unless ``extra`` says otherwise."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StartError("redis-server is not installed: run scripts/system-deps.sh")
    os.makedirs(data_dir, exist_ok=True)
    port = port or free_port(host)
    argv = [binary, "--bind", host, "--port", str(port), "--dir", data_dir, "--save", ""]
    argv += ["--appendonly", "no", "--daemonize", "no", *extra]
    return ServerProcess(argv, host, port, os.path.join(data_dir, "redis.log"))


class LocalCluster:
    """N cluster-mode nodes on this machine. Not started until ``start``.

    By default on 127.0.0.2, 127.0.0.3, ..., every node on the same client
    port (bus port = port + 10000) of its own loopback address, so
    per-address firewall rules can cut them apart. With ``addresses`` (a
    (host, port) per node) they go exactly there: ``nomadkv cluster up``
    puts them on consecutive ports of 127.0.0.1.
    """

    def __init__(
        self,
        base_dir: str,
        nodes: int = 3,
        port: int | None = None,
        secret: str = "nomadkv-test-secret",
        first_host: int = 2,
        addresses: list[tuple[str, int]] | None = None,
        node_options: list[dict[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        if addresses is None:
            self.hosts = [f"127.0.0.{first_host + i}" for i in range(nodes)]
            self.port = port or self._free_cluster_port()
            addresses = [(host, self.port) for host in self.hosts]
        else:
            self.hosts = [host for host, _ in addresses]
            self.port = addresses[0][1]
        self.bus_port = self.port + 10000
        self.secret = secret
        peers = ",".join(f"{i + 1}@{h}:{p + 10000}" for i, (h, p) in enumerate(addresses))
        self.nodes = [
            nomadkv_node(
                os.path.join(base_dir, f"node{i + 1}"),
                host=host,
                port=node_port,
                node_id=i + 1,
                peers=peers,
                cluster_secret=secret,
                **options,
                **(node_options[i] if node_options else {}),
            )
            for i, (host, node_port) in enumerate(addresses)
        ]

    def _free_cluster_port(self) -> int:
        rng = random.Random()
        for _ in range(1000):
            port = rng.randrange(*PORT_RANGE)
            if all(port_is_free(port, h) and port_is_free(port + 10000, h) for h in self.hosts):
                return port
        raise StartError("no free port found on every node address")

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        for node in self.nodes:
            node.start(timeout_s)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def leader(self, timeout_s: float = 10.0) -> ServerProcess:
        """The node that leads, once one does and every live node follows it."""
        found: list[ServerProcess] = []

        def agreed() -> bool:
            roles = {node: _role(node) for node in self.nodes if node.alive()}
            leaders = [node for node, role in roles.items() if role and role[0] == b"master"]
            if len(leaders) != 1:
                return False
            address = [leaders[0].host.encode(), leaders[0].port]
            followers = [role for node, role in roles.items() if node is not leaders[0]]
            if any(not role or role[1:3] != address for role in followers):
                return False
            found[:] = leaders
            return True

        wait_until(agreed, timeout_s, "a leader that every live node follows")
        return found[0]

    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self.nodes]


def _role(node: ServerProcess) -> list[Any] | None:
    """The node's ROLE reply, or None if it does not answer."""
    try:
        client = node.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            role = client.execute_command("ROLE")
        finally:
            client.close()
    except Exception:
        return None
    return list(role)
