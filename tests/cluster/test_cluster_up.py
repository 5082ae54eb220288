"""`nomadkv cluster up`: a local cluster in one command, which prints how to
connect (and those commands work) and stops every node on Ctrl-C."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys

import redis

from nomadkv.harness import free_port, port_is_free, wait_until


def listening(port: int) -> bool:
    """Whether something accepts connections on the port (a bind test would also
    fail on the TIME_WAIT of connections the node closed)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def consecutive_free_ports(count: int) -> int:
    """A base port whose ``count`` ports, and their bus ports (+ 10000), are free."""
    while True:
        base = free_port()
        wanted = [base + i for i in range(count)] + [base + 10000 + i for i in range(count)]
        if max(wanted) <= 65535 and all(port_is_free(p) for p in wanted):
            return base


def test_cluster_up_prints_commands_that_work_and_stops_on_ctrl_c(tmp_path) -> None:
    base = consecutive_free_ports(3)
    argv = [sys.executable, "-m", "nomadkv.cli", "cluster", "up", "--nodes", "3"]
    argv += ["--base-port", str(base), "--dir", str(tmp_path / "cluster")]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as up:
        try:
            _use_the_printed_commands(up, base)
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()


def _use_the_printed_commands(up: subprocess.Popen[str], base: int) -> None:
    """Run what ``cluster up`` printed, then stop it with Ctrl-C (SIGINT)."""
    assert up.stdout is not None
    printed: list[str] = []
    while not printed or not printed[-1].startswith("Ctrl-C stops every node"):
        line = up.stdout.readline()
        assert line, f"cluster up exited: {up.wait()} {up.stderr.read() if up.stderr else ''}"
        printed.append(line.rstrip("\n"))
    commands = [line.split("#")[0].strip() for line in printed if line.startswith("  ")]
    commands = [c for c in commands if c and not c.startswith("node ")]
    cli = next(c for c in commands if c.startswith("redis-cli -c"))
    reply = subprocess.run(
        [*shlex.split(cli), "set", "up-key", "v"], capture_output=True, check=False
    )
    assert reply.stdout.strip() == b"OK"
    plain = next(c for c in commands if c.startswith("redis-cli -p"))
    reply = subprocess.run([*shlex.split(plain), "get", "up-key"], capture_output=True, check=False)
    assert reply.stdout.strip() == b"v"
    python = next(c for c in commands if "RedisCluster" in c)
    program = shlex.split(python)[2]  # after the interpreter and -c
    reply = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert reply.stdout.strip() == "True", reply.stderr
    benchmark = next(c for c in commands if c.startswith("redis-benchmark"))
    leader_port = int(shlex.split(benchmark)[2])
    leader = redis.Redis(port=leader_port)
    assert leader.execute_command("ROLE")[0] == b"master"
    leader.close()

    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=60) == 0
    wait_until(lambda: not any(listening(base + i) for i in range(3)), 10, "every node to stop")


def test_cluster_up_refuses_impossible_sizes_and_ports(tmp_path) -> None:
    for args in (["--nodes", "0"], ["--nodes", "3", "--base-port", "60000"]):
        directory = tmp_path / "never"
        done = subprocess.run(
            [sys.executable, "-m", "nomadkv.cli", "cluster", "up", *args, "--dir", str(directory)],
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and "between 1 and 65535" in done.stderr
        assert not os.path.exists(directory)  # nothing created, no secret left behind
