"""PING, ECHO, QUIT, RESET, HELLO, AUTH, SELECT, CLIENT: replies and error
texts against the reference redis-server, and the connection state they set."""

from __future__ import annotations

import socket

import pytest
import redis
from rawresp import encode, read_replies

from nomadkv.harness import ServerProcess

# Commands whose reply (value or error text) is the same on both servers.
SAME_REPLY = [
    ["PING"],
    ["PING", "hello"],
    ["PING", "a", "b"],
    ["ECHO"],
    ["ECHO", "x y"],
    ["SELECT", "0"],
    ["SELECT", "16"],
    ["SELECT", "-1"],
    ["SELECT", "x"],
    # Integers are parsed as Redis's string2ll does: no sign, padding or underscores.
    ["SELECT", "+0"],
    ["SELECT", "00"],
    ["SELECT", "-0"],
    ["SELECT", "0_0"],
    ["SELECT", "2147483648"],
    ["HELLO", "+3"],
    ["HELLO", "03"],
    ["HELLO", " 3"],
    ["CLIENT", "KILL", "ID", "+1"],
    ["CLIENT", "KILL", "ID", "1_0"],
    ["CLIENT", "KILL", "ID", "18446744073709551615"],
    ["CLIENT", "LIST", "ID", "+1"],
    ["AUTH", "x"],
    ["AUTH", "default", "anything"],
    ["AUTH", "bob", "x"],
    ["AUTH", "a", "b", "c"],
    ["HELLO", "4"],
    ["HELLO", "x"],
    ["HELLO", "3", "SETNAME"],
    ["HELLO", "2", "SETNAME", "a", "b"],
    ["HELLO", "2", "AUTH", "bob", "x"],
    ["CLIENT"],
    ["CLIENT", "NOSUCH"],
    ["CLIENT", "SETNAME"],
    ["CLIENT", "SETNAME", "a b"],
    ["CLIENT", "SETNAME", "name"],
    ["CLIENT", "ID", "x"],
    ["CLIENT", "KILL", "1.2.3.4:5"],
    ["CLIENT", "KILL", "ID", "x"],
    ["CLIENT", "KILL", "ID", "0"],
    ["CLIENT", "KILL", "ID", "999999"],
    ["CLIENT", "KILL", "TYPE", "foo"],
    ["CLIENT", "KILL", "TYPE", "master"],
    ["CLIENT", "KILL", "USER", "bob"],
    ["CLIENT", "KILL", "SKIPME", "maybe"],
    ["CLIENT", "KILL", "MAXAGE", "5"],
    ["CLIENT", "KILL", "ID", "999999", "ADDR"],
    ["CLIENT", "KILL", "LADDR", "1.2.3.4:5"],
    ["CLIENT", "LIST", "TYPE", "foo"],
    ["CLIENT", "LIST", "TYPE", "pubsub"],
    ["CLIENT", "LIST", "ID", "x"],
    ["CLIENT", "LIST", "ID", "999999"],
    ["CLIENT", "LIST", "foo"],
    ["CLIENT", "LIST", "TYPE", "normal", "ID", "1"],
    ["CLIENT", "NO-EVICT", "maybe"],
    ["CLIENT", "NO-EVICT", "on"],
    ["CLIENT", "GETNAME", "x"],
    ["RESET", "x"],
    ["TIME", "x"],
    ["DBSIZE", "x"],
    ["LASTSAVE", "x"],
    ["BGSAVE", "x"],
    ["BGSAVE", "SCHEDULE", "x"],
    ["SHUTDOWN", "foo"],
    ["SHUTDOWN", "ABORT"],
    ["SHUTDOWN", "SAVE", "NOSAVE"],
    ["SHUTDOWN", "ABORT", "NOW"],
    ["INFO", "nosuchsection"],
]


def reply_of(port: int, argv: list[str]) -> object:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode(*argv))
        return read_replies(sock, 1)[0]


@pytest.mark.parametrize("argv", SAME_REPLY, ids=[" ".join(a) for a in SAME_REPLY])
def test_reply_matches_redis(
    argv: list[str], shared_node: ServerProcess, reference: ServerProcess
) -> None:
    assert reply_of(shared_node.port, argv) == reply_of(reference.port, argv)


def command_field(port: int, commands: list[list[str]]) -> str:
    """The ``cmd=`` field of the last command's reply (CLIENT INFO or LIST) on a
    new connection, for the line of that connection itself."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode("CLIENT", "ID") + b"".join(encode(*c) for c in commands))
        replies = read_replies(sock, len(commands) + 1)
    own = next(
        line for line in replies[-1].decode().splitlines() if line.startswith(f"id={replies[0]} ")
    )
    return next(field for field in own.split(" ") if field.startswith("cmd="))


@pytest.mark.parametrize(
    "commands",
    [
        [["CLIENT", "INFO"]],
        [["GET", "a"], ["CLIENT", "INFO"]],
        [["SET", "cmd-field", "1"], ["CLIENT", "LIST"]],
        [["CLIENT", "ID"], ["CLIENT", "LIST", "TYPE", "normal"]],
    ],
    ids=["info first", "info after get", "list after set", "list after client id"],
)
def test_client_info_and_list_show_the_running_command(
    commands: list[list[str]], shared_node: ServerProcess, reference: ServerProcess
) -> None:
    ours = command_field(shared_node.port, commands)
    assert ours == command_field(reference.port, commands)
    assert ours == f"cmd=client|{commands[-1][1].lower()}"


def test_quit_replies_ok_then_closes(shared_node: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", shared_node.port), timeout=10) as sock:
        sock.sendall(encode("QUIT") + encode("PING"))
        assert read_replies(sock, 1) == [b"OK"]
        assert sock.recv(100) == b""


def test_hello_switches_protocol_and_names_the_connection(nk: redis.Redis) -> None:
    reply = nk.execute_command("HELLO", "3", "SETNAME", "worker-1")
    fields = dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else reply
    fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
    assert fields["server"] == b"redis"
    assert fields["version"] == b"7.0.15"
    assert fields["proto"] == 3
    assert fields["mode"] == b"standalone"
    assert nk.client_getname() in (b"worker-1", "worker-1")
    assert fields["id"] == nk.client_id()


def test_resp3_client_works(shared_node: ServerProcess) -> None:
    client = redis.Redis(port=shared_node.port, protocol=3)
    client.set("r3", "v")
    assert client.get("r3") == b"v"
    assert "redis_version" in client.info("server")
    assert client.config_get("maxclients") == {b"maxclients": b"10000"} or client.config_get(
        "maxclients"
    ) == {"maxclients": "10000"}
    client.close()


def test_reset_restores_connection_state(nk: redis.Redis) -> None:
    nk.client_setname("before")
    nk.execute_command("HELLO", "3")
    assert nk.execute_command("RESET") in (b"RESET", "RESET")
    assert nk.client_getname() is None
    info = nk.client_info()
    assert str(info["resp"]) == "2"


def test_client_id_list_info_and_setinfo(nk: redis.Redis, shared_node: ServerProcess) -> None:
    other = shared_node.client()
    other.client_setname("other-conn")
    other_id = other.client_id()
    assert nk.client_setinfo("LIB-NAME", "nomad-test") is True
    assert nk.client_setinfo("lib-ver", "1.2.3") is True
    me = nk.client_info()
    assert str(me["id"]) == str(nk.client_id())
    assert me["lib-name"] == "nomad-test"
    assert me["lib-ver"] == "1.2.3"
    assert me["cmd"] == "client|info"
    listed = {str(c["id"]): c for c in nk.client_list()}
    assert listed[str(other_id)]["name"] == "other-conn"
    assert [str(c["id"]) for c in nk.client_list(client_id=[other_id])] == [str(other_id)]
    assert nk.client_list(_type="replica") == []
    with pytest.raises(redis.ResponseError, match="Unrecognized option 'foo'"):
        nk.execute_command("CLIENT", "SETINFO", "foo", "x")
    with pytest.raises(redis.ResponseError, match="lib-name cannot contain spaces"):
        nk.execute_command("CLIENT", "SETINFO", "lib-name", "a b")
    other.close()


def test_client_list_line_has_redis_fields_in_order(
    nk: redis.Redis, reference: ServerProcess
) -> None:
    ours = nk.execute_command("CLIENT", "LIST").decode().strip()
    theirs = reference.client().execute_command("CLIENT", "LIST").decode().strip()
    our_fields = [item.split("=", 1)[0] for item in ours.splitlines()[0].split(" ")]
    their_fields = [item.split("=", 1)[0] for item in theirs.splitlines()[0].split(" ")]
    # Redis 7.2 added lib-name and lib-ver at the end (CLIENT SETINFO is 7.2's).
    assert our_fields == [*their_fields, "lib-name", "lib-ver"]


def test_client_kill_by_id_addr_and_self(shared_node: ServerProcess, nk: redis.Redis) -> None:
    victim = socket.create_connection(("127.0.0.1", shared_node.port), timeout=10)
    victim.sendall(encode("CLIENT", "ID"))
    victim_id = read_replies(victim, 1)[0]
    assert nk.client_kill_filter(_id=victim_id) == 1
    assert victim.recv(100) == b""
    victim.close()
    second = shared_node.client()
    address = second.client_info()["addr"]
    assert nk.execute_command("CLIENT", "KILL", address) in (b"OK", True, "OK")
    with pytest.raises(redis.ResponseError, match="No such client"):
        nk.execute_command("CLIENT", "KILL", address)
    # SKIPME no kills the caller after its reply.
    with socket.create_connection(("127.0.0.1", shared_node.port), timeout=10) as me:
        me.sendall(encode("CLIENT", "INFO"))
        my_address = read_replies(me, 1)[0].split(b" ")[1].split(b"=")[1]
        me.sendall(encode("CLIENT", "KILL", "ADDR", my_address, "SKIPME", "no"))
        assert read_replies(me, 1) == [1]
        assert me.recv(100) == b""


def test_client_help_and_no_touch(nk: redis.Redis) -> None:
    lines = nk.execute_command("CLIENT", "HELP")
    assert lines[0].startswith(b"CLIENT <subcommand>")
    assert b"HELP" in lines
    assert nk.execute_command("CLIENT", "NO-TOUCH", "on") in (b"OK", True, "OK")
