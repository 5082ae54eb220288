"""INFO, CONFIG and COMMAND: sections and counters, run-time configuration
(errors against redis-server), and the command table as Redis 7 shows it."""

from __future__ import annotations

import socket

import pytest
import redis
from rawresp import encode, read_replies

from nomadkv.commands.glob import matches
from nomadkv.harness import ServerProcess, nomadkv_node, wait_until


def test_info_default_sections_and_fields(nk: redis.Redis, shared_node: ServerProcess) -> None:
    text = reply_of(shared_node.port, ["INFO"]).decode()
    titles = [line for line in text.split("\r\n") if line.startswith("# ")]
    assert titles == [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Modules",
        "# Cluster",
        "# Keyspace",
    ]
    info = nk.info()
    assert info["redis_version"] == "7.0.15"
    assert info["process_id"] == shared_node.pid
    assert info["tcp_port"] == shared_node.port
    assert info["connected_clients"] >= 1
    assert info["used_memory_rss"] > info["used_memory"] > 0
    assert info["aof_enabled"] == 1
    assert info["cluster_enabled"] == 0
    assert "cmdstat_ping" not in text


def test_info_keyspace_stats_and_commandstats(shared_node: ServerProcess) -> None:
    client = shared_node.client()
    client.config_resetstat()
    for i in range(10):
        client.set(f"ks:{i}", i, ex=1000 if i < 4 else None)
    client.get("ks:1")
    client.get("ks:missing")
    keyspace = client.info("keyspace")["db0"]
    assert keyspace["keys"] >= 10
    assert keyspace["expires"] >= 4
    assert 0 < keyspace["avg_ttl"] <= 1_000_000
    stats = client.info("stats")
    assert stats["keyspace_hits"] == 1
    assert stats["keyspace_misses"] == 1
    assert stats["total_commands_processed"] >= 13
    assert stats["total_connections_received"] == 0  # reset; this connection is older
    commandstats = client.info("commandstats")
    assert commandstats["cmdstat_set"]["calls"] == 10
    assert commandstats["cmdstat_get"]["calls"] == 2
    assert commandstats["cmdstat_config|resetstat"]["calls"] == 1
    with pytest.raises(redis.ResponseError):
        client.execute_command("CLIENT", "SETNAME", "a b")
    with pytest.raises(redis.ResponseError):
        client.execute_command("CLIENT", "SETNAME")
    row = client.info("commandstats")["cmdstat_client|setname"]
    assert (row["calls"], row["failed_calls"], row["rejected_calls"]) == (1, 1, 1)
    everything = reply_of(shared_node.port, ["INFO", "everything"]).decode()
    assert "# Commandstats" in everything and "# Server" in everything
    two = reply_of(shared_node.port, ["INFO", "server", "CLIENTS"]).decode()
    assert [line for line in two.split("\r\n") if line.startswith("#")] == [
        "# Server",
        "# Clients",
    ]
    client.close()


def test_instantaneous_ops_per_sec_follows_load(shared_node: ServerProcess) -> None:
    client = shared_node.client()
    pipe = client.pipeline(transaction=False)

    def busy() -> bool:
        for _ in range(200):
            pipe.ping()
        pipe.execute()
        return client.info("stats")["instantaneous_ops_per_sec"] > 100

    wait_until(busy, 10, "instantaneous_ops_per_sec to rise")
    client.close()


def test_info_is_verbatim_in_resp3(shared_node: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", shared_node.port), timeout=10) as sock:
        sock.sendall(encode("HELLO", "3") + encode("INFO", "server"))
        sock.settimeout(10)
        data = b""
        while b"=" not in data or not data.endswith(b"\r\n\r\n"):
            data += sock.recv(65536)
        assert b"\r\n=" in data and b"txt:# Server\r\n" in data


SAME_CONFIG_REPLY = [
    ["CONFIG", "GET"],
    ["CONFIG", "GET", "nosuch"],
    ["CONFIG", "GET", "maxclients"],
    ["CONFIG", "GET", "MAXCLIENTS"],
    ["CONFIG", "GET", "timeout"],
    ["CONFIG", "GET", "proto-max-bulk-len"],
    ["CONFIG", "SET", "timeout"],
    ["CONFIG", "SET", "nosuch", "1"],
    ["CONFIG", "SET", "timeout", "1", "nosuch", "2"],
    ["CONFIG", "SET", "timeout", "1", "timeout", "2"],
    ["CONFIG", "SET", "daemonize", "yes"],
    ["CONFIG", "SET", "maxclients", "abc"],
    ["CONFIG", "SET", "timeout", "-1"],
    ["CONFIG", "SET", "proto-max-bulk-len", "10"],
    ["CONFIG", "SET", "maxclients", "0"],
    ["CONFIG", "SET", "maxclients", "1_000"],
    ["CONFIG", "SET", "maxclients", "+1000"],
    ["CONFIG", "SET", "maxclients", " 1000"],
    ["CONFIG", "SET", "timeout", "0", "maxclients"],
    ["CONFIG", "SET", "appendfsync", "sometimes"],
    # Memory values, as config.c's memtoull reads them; each set to its default.
    ["CONFIG", "SET", "proto-max-bulk-len", "512mb"],
    ["CONFIG", "SET", "proto-max-bulk-len", "512MB"],
    ["CONFIG", "SET", "client-query-buffer-limit", "1gb"],
    ["CONFIG", "SET", "proto-max-bulk-len", "1k"],
    ["CONFIG", "SET", "proto-max-bulk-len", "1m"],
    ["CONFIG", "SET", "proto-max-bulk-len", "-1"],
    ["CONFIG", "SET", "proto-max-bulk-len", "1.5mb"],
    ["CONFIG", "SET", "proto-max-bulk-len", " 1mb"],
    ["CONFIG", "REWRITE", "x"],
    ["CONFIG", "RESETSTAT", "x"],
    ["CONFIG", "NOSUCH"],
    ["CONFIG", "HELP"],
    ["COMMAND", "NOSUCH"],
    ["COMMAND", "COUNT", "x"],
    ["COMMAND", "GETKEYS"],
    ["COMMAND", "GETKEYS", "nosuch", "a"],
    ["COMMAND", "GETKEYS", "ping", "a"],
    ["COMMAND", "GETKEYS", "set", "a"],
    ["COMMAND", "GETKEYS", "get", "a"],
    ["COMMAND", "GETKEYS", "set", "a", "b", "EX", "10"],
    ["COMMAND", "GETKEYS", "config", "get", "x"],
    ["COMMAND", "GETKEYSANDFLAGS", "get", "a"],
    ["COMMAND", "LIST", "x"],
    ["COMMAND", "LIST", "FILTERBY", "foo", "x"],
    ["COMMAND", "LIST", "FILTERBY", "MODULE", "x"],
    ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "nosuch"],
    ["COMMAND", "INFO", "nosuch"],
    ["COMMAND", "DOCS", "nosuch"],
    ["COMMAND", "HELP"],
]


def reply_of(port: int, argv: list[str]) -> object:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode(*argv))
        return read_replies(sock, 1)[0]


@pytest.mark.parametrize("argv", SAME_CONFIG_REPLY, ids=[" ".join(a) for a in SAME_CONFIG_REPLY])
def test_reply_matches_redis(
    argv: list[str], shared_node: ServerProcess, reference: ServerProcess
) -> None:
    assert reply_of(shared_node.port, argv) == reply_of(reference.port, argv)


def test_config_get_patterns(nk: redis.Redis, ref: redis.Redis, shared_node: ServerProcess) -> None:
    ours = nk.config_get("*max*")
    assert ours["maxclients"] == "10000"
    assert ours["proto-max-bulk-len"] == str(512 * 1024 * 1024)
    assert "timeout" not in ours
    both = reply_of(shared_node.port, ["CONFIG", "GET", "timeout", "append*", "timeout"])
    assert dict(zip(both[::2], both[1::2], strict=True)) == {
        b"timeout": b"0",
        b"appendfsync": b"no",
        b"appendonly": b"yes",
    }
    shared = ["maxclients", "timeout", "proto-max-bulk-len", "client-query-buffer-limit"]
    for name in shared:
        assert nk.config_get(name) == ref.config_get(name)


def test_config_set_is_atomic_and_takes_effect(shared_node: ServerProcess) -> None:
    client = shared_node.client()
    with pytest.raises(redis.ResponseError, match="argument 'maxclients'"):
        client.execute_command("CONFIG", "SET", "timeout", "7", "maxclients", "abc")
    assert client.config_get("timeout") == {"timeout": "0"}
    assert client.execute_command("CONFIG", "SET", "timeout", "7", "LOGLEVEL", "warning")
    assert client.config_get("timeout") == {"timeout": "7"}
    assert client.config_get("loglevel") == {"loglevel": "warning"}
    client.config_set("timeout", "0")
    client.config_set("loglevel", "notice")
    client.config_set("appendfsync", "always")
    client.set("durable", "1")
    assert client.config_get("appendfsync") == {"appendfsync": "always"}
    client.config_set("appendfsync", "no")
    client.close()


def test_a_password_that_is_not_utf8_is_refused(shared_node: ServerProcess) -> None:
    """Stored with replacement characters, it would have locked out every client."""
    client = shared_node.client()
    with pytest.raises(redis.ResponseError, match="argument must be UTF-8 text"):
        client.execute_command("CONFIG", "SET", "requirepass", b"\xff\xfesecret")
    assert client.config_get("requirepass") == {"requirepass": ""}
    assert shared_node.client().ping()  # a new connection needs no password
    client.close()


def test_maxclients_rejects_extra_connections(tmp_path) -> None:
    server = nomadkv_node(str(tmp_path / "n"), maxclients=3, appendfsync="no").start()
    try:
        held = [server.client() for _ in range(3)]
        for client in held:
            client.ping()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
            extra.sendall(encode("PING"))
            assert extra.recv(100) == b"-ERR max number of clients reached\r\n"
        held[0].close()
        wait_until(lambda: held[1].info("clients")["connected_clients"] == 2, 10, "a free slot")
        assert server.client().ping() is True
        assert held[1].info("stats")["rejected_connections"] >= 1
        held[1].config_set("maxclients", "100")
        more = [server.client() for _ in range(5)]
        assert all(c.ping() for c in more)
    finally:
        server.stop()


def test_idle_timeout_closes_connections(tmp_path) -> None:
    server = nomadkv_node(str(tmp_path / "n"), appendfsync="no").start()
    try:
        admin = server.client()
        admin.config_set("timeout", "1")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            idle.sendall(encode("PING"))
            assert read_replies(idle, 1) == [b"PONG"]
            idle.settimeout(10)
            assert idle.recv(100) == b""  # closed by the node after about a second idle
        admin.config_set("timeout", "0")
    finally:
        server.stop()


def test_config_rewrite(tmp_path) -> None:
    conf = tmp_path / "node.toml"
    conf.write_text('# my settings\ntimeout = 5\nloglevel = "notice"\n')
    data = tmp_path / "n"
    data.mkdir()
    from nomadkv.harness import ServerProcess as Process
    from nomadkv.harness import free_port

    port = free_port()
    import sys

    argv = [sys.executable, "-m", "nomadkv.cli", "server", "--config", str(conf)]
    argv += ["--port", str(port), "--dir", str(data), "--http-port", "0"]
    server = Process(argv, "127.0.0.1", port, str(data / "server.log")).start()
    try:
        client = server.client()
        assert client.info("server")["config_file"] == str(conf)
        client.config_set("timeout", "9")
        client.config_set("maxclients", "77")
        assert client.config_rewrite()
        text = conf.read_text()
        assert text.startswith("# my settings\ntimeout = 9\n")
        assert "maxclients = 77" in text
        assert 'loglevel = "notice"' in text
    finally:
        server.stop()
    server.start()
    try:
        assert server.client().config_get("maxclients") == {"maxclients": "77"}
    finally:
        server.stop()


def test_command_info_shape_matches_redis(
    shared_node: ServerProcess, reference: ServerProcess
) -> None:
    names = ["get", "set", "del", "exists", "ping", "echo", "info", "shutdown", "save", "bgsave"]
    names += ["lastsave", "auth", "hello", "quit", "reset", "select", "time", "dbsize", "command"]
    names += ["client|list", "client|kill", "client|id", "config|set", "config|get"]
    names += ["command|getkeys", "command|info", "command|list", "command|count"]
    ours = reply_of(shared_node.port, ["COMMAND", "INFO", *names])
    theirs = reply_of(reference.port, ["COMMAND", "INFO", *names])
    for mine, redis_entry in zip(ours, theirs, strict=True):
        assert len(mine) == len(redis_entry) == 10
        # name, arity, flags, first, last, step and ACL categories come from the table.
        assert mine[:7] == redis_entry[:7], mine[0]
        assert [[k for k in spec[0::2] if k != b"notes"] for spec in mine[8]] == [
            [k for k in spec[0::2] if k != b"notes"] for spec in redis_entry[8]
        ]
    container = reply_of(shared_node.port, ["COMMAND", "INFO", "config"])[0]
    redis_container = reply_of(reference.port, ["COMMAND", "INFO", "config"])[0]
    assert container[:7] == redis_container[:7]
    ours_subs = {entry[0] for entry in container[9]}
    assert ours_subs <= {entry[0] for entry in redis_container[9]}


def test_command_lists_the_table(nk: redis.Redis, shared_node: ServerProcess) -> None:
    everything = reply_of(shared_node.port, ["COMMAND"])
    assert len(everything) == reply_of(shared_node.port, ["COMMAND", "COUNT"])
    names = {entry[0] for entry in everything}
    assert {b"get", b"set", b"client", b"config", b"command", b"info"} <= names
    listed = set(reply_of(shared_node.port, ["COMMAND", "LIST"]))
    assert b"client|kill" in listed and b"get" in listed
    pattern = set(reply_of(shared_node.port, ["COMMAND", "LIST", "FILTERBY", "PATTERN", "con*"]))
    assert pattern == {name for name in listed if matches(b"con*", name)}
    connection = set(
        reply_of(shared_node.port, ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "connection"])
    )
    assert {b"ping", b"auth", b"client|list"} <= connection
    assert b"get" not in connection
    docs = reply_of(shared_node.port, ["COMMAND", "DOCS", "get", "client"])
    assert docs[0] == b"get" and b"summary" in docs[1]
    client_docs = dict(zip(docs[3][::2], docs[3][1::2], strict=True))
    assert b"client|list" in client_docs[b"subcommands"]
    assert reply_of(shared_node.port, ["COMMAND", "GETKEYS", "SET", "k", "v"]) == [b"k"]


def test_redis_py_commands_parser_accepts_command(shared_node: ServerProcess) -> None:
    from redis._parsers import CommandsParser

    for protocol in (2, 3):
        client = redis.Redis(port=shared_node.port, protocol=protocol)
        parser = CommandsParser(client)
        assert "get" in parser.commands
        assert parser.get_keys(client, "GET", "somekey") == ["somekey"]
        assert parser.get_keys(client, "DEL", "a", "b") == ["a", "b"]
        client.close()
