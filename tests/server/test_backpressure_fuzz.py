"""Safety under hostile clients: a client that never reads its replies, and
a seeded fuzz of random, truncated and oversized requests from many
connections at once, after which the node still serves and still has the
data written before.

The fuzz seed comes from NOMADKV_FUZZ_SEED (default: a fixed one); a failure
prints it so the run replays exactly."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time

import redis
from rawresp import encode

from nomadkv.harness import ServerProcess, exchange_bytes, nomadkv_node, wait_until

FUZZ_SECONDS = float(os.environ.get("NOMADKV_FUZZ_SECONDS", "20"))
FUZZ_SEED = int(os.environ.get("NOMADKV_FUZZ_SEED", "0x5eed"), 0)
FUZZ_CONNECTIONS = 8


def rss_bytes(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory_rss"])


def test_client_that_never_reads_is_cut_off(tmp_path) -> None:
    server = nomadkv_node(
        str(tmp_path / "n"), appendfsync="no", client_output_buffer_limit_bytes="16mb"
    ).start()
    try:
        client = server.client()
        client.set("big", b"x" * (1024 * 1024))
        baseline = rss_bytes(client)
        hog = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = encode("GET", "big") * 500  # 500 MiB of replies if all were kept
        with contextlib.suppress(OSError):  # the node may close it while we send
            hog.sendall(request * 4)
        # The node stays responsive to others while it deals with the hog.
        started = time.monotonic()
        assert client.ping() is True
        assert time.monotonic() - started < 5
        wait_until(
            lambda: client.info("clients")["connected_clients"] == 1,
            30,
            "the node to disconnect the client past its output limit",
        )
        assert rss_bytes(client) < baseline + 200 * 1024 * 1024
        hog.close()
        assert client.get("big") == b"x" * (1024 * 1024)
    finally:
        server.stop()


def test_slow_reader_below_the_limit_gets_every_reply(tmp_path) -> None:
    server = nomadkv_node(str(tmp_path / "n"), appendfsync="no").start()
    try:
        client = server.client()
        client.set("mid", b"y" * 100_000)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(encode("GET", "mid") * 300)  # 30 MB: paused, then resumed
            expected = (b"$100000\r\n" + b"y" * 100_000 + b"\r\n") * 300
            received = 0
            while received < len(expected):
                chunk = sock.recv(1 << 20)
                assert chunk, "closed early"
                received += len(chunk)
            assert received == len(expected)
        assert client.ping() is True
    finally:
        server.stop()


def test_large_replies_keep_their_place_in_a_pipeline(tmp_path) -> None:
    """Values from 64 kB up are written as references to the stored value (LargeBulk),
    not copied into one reply: each must still come out whole and in order between
    the small replies around it."""
    server = nomadkv_node(str(tmp_path / "n"), appendfsync="no").start()
    try:
        client = server.client()
        values = {b"small": b"s" * 10, b"edge": b"e" * 65536, b"huge": bytes(range(256)) * 4096}
        client.mset(values)
        keys = [b"small", b"edge", b"nothing", b"huge", b"small", b"huge"]
        payload = b"".join(encode("GET", key) for key in keys) + encode("PING")
        expected = b"".join(
            b"$%d\r\n%b\r\n" % (len(values[key]), values[key]) if key in values else b"$-1\r\n"
            for key in keys
        )
        expected += b"+PONG\r\n"
        received = exchange_bytes("127.0.0.1", server.port, payload * 3, 3 * len(expected))
        assert received == expected * 3
    finally:
        server.stop()


def fuzz_payload(rng: random.Random) -> bytes:
    """One hostile message: valid, truncated, garbled, oversized or random."""
    kind = rng.randrange(10)
    name = rng.choice([b"SET", b"GET", b"PING", b"ECHO", b"DEL", b"INFO", b"CLIENT", b"CONFIG"])
    args = [rng.randbytes(rng.randrange(0, 20)) for _ in range(rng.randrange(0, 4))]
    valid = encode(name, *args)
    if kind == 0:
        return valid
    if kind == 1:
        return valid[: rng.randrange(len(valid))]  # truncated
    if kind == 2:
        data = bytearray(valid)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 3:
        return rng.randbytes(rng.randrange(1, 200))
    if kind == 4:
        return b"*%d\r\n" % rng.choice([-5, -1, 0, 2**31, 2**62, 10**7])
    if kind == 5:
        return b"*1\r\n$%d\r\n" % rng.choice([-2, 2**40, 536870913, 10**18])
    if kind == 6:
        return rng.choice([b"PING", b"ECHO", b"SET k"]) + b' "' + rng.randbytes(10) + b"\r\n"
    if kind == 7:
        return rng.choice([b":", b"+", b"-", b"_", b",", b"#", b"%", b"~", b">", b"|"]) + b"1\r\n"
    if kind == 8:
        return b"*2\r\n$3\r\nGET\r\n" + rng.choice([b":1\r\n", b"*1\r\n$1\r\na\r\n", b"$-1\r\n"])
    return b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$" + b"9" * rng.randrange(1, 30)


def fuzz_connection(port: int, rng: random.Random, deadline: float, errors: list[str]) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.settimeout(0.2)
                for _ in range(rng.randrange(1, 20)):
                    payload = fuzz_payload(rng)
                    if rng.random() < 0.2:  # slowloris: a byte at a time
                        for i in range(min(len(payload), 30)):
                            sock.sendall(payload[i : i + 1])
                    else:
                        sock.sendall(payload)
                    if rng.random() < 0.5:
                        with contextlib.suppress(TimeoutError):
                            sock.recv(65536)
                # Vanish mid-frame half of the time, with a reset the other half.
                if rng.random() < 0.5:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        except OSError:
            continue  # the node closed us after a protocol error: expected
        except Exception as exc:
            errors.append(repr(exc))
            return


def test_fuzzed_requests_leave_the_node_serving_its_data(tmp_path) -> None:
    server: ServerProcess = nomadkv_node(str(tmp_path / "n")).start()
    try:
        client = server.client()
        written = {f"keep:{i}": os.urandom(16) for i in range(200)}
        for key, value in written.items():
            client.set(key, value)
        deadline = time.monotonic() + FUZZ_SECONDS
        errors: list[str] = []
        threads = [
            threading.Thread(
                target=fuzz_connection,
                args=(server.port, random.Random(FUZZ_SEED * 1000 + i), deadline, errors),
            )
            for i in range(FUZZ_CONNECTIONS)
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            assert client.ping() is True, f"seed {FUZZ_SEED:#x}"
            threads[0].join(0.5)
        for thread in threads:
            thread.join()
        assert not errors, f"seed {FUZZ_SEED:#x}: {errors}"
        assert server.alive(), f"seed {FUZZ_SEED:#x}"
        for key, value in written.items():
            assert client.get(key) == value, f"seed {FUZZ_SEED:#x}: {key}"
        stats = client.info("stats")
        assert stats["unexpected_error_replies"] == 0, f"seed {FUZZ_SEED:#x}"
        assert "Traceback" not in server.log_tail(1000), f"seed {FUZZ_SEED:#x}"
    finally:
        assert server.stop() == 0
    server.start()  # and every fuzzed write that reached the log replays
    try:
        client = server.client()
        for key, value in written.items():
            assert client.get(key) == value, f"seed {FUZZ_SEED:#x}: {key} after restart"
    finally:
        server.stop()
