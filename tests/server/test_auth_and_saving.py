"""requirepass (NOAUTH for every command but AUTH, HELLO, QUIT and RESET;
WRONGPASS; run-time changes), and SAVE, BGSAVE, LASTSAVE, SHUTDOWN."""

from __future__ import annotations

import socket

import pytest
import redis
from rawresp import encode, read_replies

from nomadkv.commands.table import all_commands
from nomadkv.harness import ServerProcess, nomadkv_node, wait_until
from nomadkv.server import admin  # noqa: F401  (registers the server commands)

NO_AUTH_NEEDED = {"auth", "hello", "quit", "reset"}


@pytest.fixture(scope="module")
def locked(tmp_path_factory) -> ServerProcess:
    server = nomadkv_node(
        str(tmp_path_factory.mktemp("locked")), requirepass="s3cret", appendfsync="no"
    ).start()
    yield server
    server.stop()


def test_every_command_but_the_handshake_needs_auth(locked: ServerProcess) -> None:
    specs = all_commands()
    names = {spec.name for spec in specs}
    assert names >= NO_AUTH_NEEDED | {"get", "set", "client", "config", "info", "command"}
    with socket.create_connection(("127.0.0.1", locked.port), timeout=10) as sock:
        for spec in specs:
            if spec.name in NO_AUTH_NEEDED:
                continue
            # Redis checks the arity first, so give each command a valid count.
            sock.sendall(encode(spec.name, *["a"] * (abs(spec.arity) - 1)))
            reply = read_replies(sock, 1)
            assert reply == [("ERROR", "NOAUTH Authentication required.")], spec.name


def test_auth_and_hello_errors(locked: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", locked.port), timeout=10) as sock:
        sock.sendall(
            encode("AUTH", "wrong")
            + encode("AUTH", "bob", "s3cret")
            + encode("HELLO", "3")
            + encode("HELLO", "3", "AUTH", "default", "wrong")
            + encode("GET", "k")
        )
        wrongpass = ("ERROR", "WRONGPASS invalid username-password pair or user is disabled.")
        replies = read_replies(sock, 5)
        assert replies[0] == replies[1] == replies[3] == wrongpass
        assert replies[2] == (  # Redis 7.0's text (7.2 added "<proto>" after HELLO)
            "ERROR",
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
            "the RESP protocol version at the same time",
        )
        assert replies[4] == ("ERROR", "NOAUTH Authentication required.")
        sock.sendall(encode("HELLO", "2", "AUTH", "default", "s3cret") + encode("PING"))
        hello, pong = read_replies(sock, 2)
        assert hello[hello.index(b"proto") + 1] == 2
        assert pong == b"PONG"
        sock.sendall(encode("RESET") + encode("PING"))
        assert read_replies(sock, 2) == [b"RESET", ("ERROR", "NOAUTH Authentication required.")]


def test_redis_py_with_password(locked: ServerProcess) -> None:
    client = locked.client(password="s3cret")
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    with pytest.raises(redis.AuthenticationError):
        locked.client(password="nope").ping()
    with pytest.raises(redis.AuthenticationError):
        locked.client().ping()


def test_requirepass_changes_at_run_time(tmp_path) -> None:
    server = nomadkv_node(str(tmp_path / "n"), appendfsync="no").start()
    try:
        admin_client = server.client()
        waiting = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        admin_client.config_set("requirepass", "later")
        # Connections made before keep their state; new ones must authenticate.
        assert admin_client.ping() is True
        with pytest.raises(redis.AuthenticationError):
            server.client().ping()
        fresh = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        fresh.sendall(encode("PING"))
        assert read_replies(fresh, 1) == [("ERROR", "NOAUTH Authentication required.")]
        admin_client.config_set("requirepass", "")
        fresh.sendall(encode("PING"))
        assert read_replies(fresh, 1) == [b"PONG"]
        waiting.sendall(encode("PING"))
        assert read_replies(waiting, 1) == [b"PONG"]
        fresh.close()
        waiting.close()
    finally:
        server.stop()


def test_save_bgsave_lastsave(tmp_path) -> None:
    server = nomadkv_node(str(tmp_path / "n"), appendfsync="no").start()
    try:
        client = server.client()
        for i in range(1000):
            client.set(f"k{i}", i)
        before = client.lastsave()
        assert client.save() is True
        persistence = client.info("persistence")
        assert persistence["rdb_changes_since_last_save"] == 0
        assert persistence["rdb_last_bgsave_status"] == "ok"
        assert client.lastsave() >= before
        client.set("after", "1")
        assert client.bgsave() is True
        wait_until(
            lambda: client.info("persistence")["rdb_bgsave_in_progress"] == 0,
            30,
            "the background save to finish",
        )
        assert client.info("persistence")["rdb_changes_since_last_save"] == 0
        assert client.dbsize() == 1001
    finally:
        server.stop()
    server.start()
    try:
        assert server.client().dbsize() == 1001
    finally:
        server.stop()


def test_shutdown_closes_and_keeps_data(tmp_path) -> None:
    server = nomadkv_node(str(tmp_path / "n")).start()
    client = server.client()
    client.set("kept", "yes")
    client.shutdown()  # redis-py expects the connection to close, as Redis does
    assert server.process is not None
    assert server.process.wait(30) == 0
    server.start()
    client = server.client()
    assert client.get("kept") == b"yes"
    client.shutdown(save=True)
    assert server.process.wait(30) == 0
    assert any((tmp_path / "n" / "snapshots").iterdir())
    server.start()
    assert server.client().get("kept") == b"yes"
    server.stop()
