"""Real server processes on loopback, for tests and benchmarks.

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
        import redis

        return redis.Redis(host=self.host, port=self.port, **kwargs)


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
