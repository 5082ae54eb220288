"""The data commands answer like Redis on keys holding lists, hashes, sets and
sorted sets: Redis makes them with LPUSH/HSET/SADD/ZADD, NomadKV's keyspace
gets the same values in-process (those commands do not exist yet), and the
raw reply bytes of every command must be equal."""

from __future__ import annotations

import socket

import hiredis
from inprocess import InProcess

from nomadkv.harness import ServerProcess
from nomadkv.keyspace import HashValue, ListValue, SetValue, ZSetValue

COMMANDS = [
    ["GET", "list"],
    ["GETSET", "list", "v"],
    ["GETDEL", "hash"],
    ["GETEX", "set"],
    ["GETEX", "list", "EX", "-1"],
    ["GETEX", "list", "EX", "abc"],
    ["GETEX", "list", "PERSIST"],
    ["GETEX", "list", "KEEPTTL"],
    ["SET", "list", "v", "GET"],
    ["SET", "list", "v", "NX", "GET"],
    ["SET", "list", "v", "GET", "EX", "0"],
    ["APPEND", "list", "x"],
    ["STRLEN", "zset"],
    ["GETRANGE", "list", "0", "-1"],
    ["GETRANGE", "list", "x", "-1"],
    ["SETRANGE", "list", "0", "x"],
    ["SETRANGE", "list", "0", ""],
    ["SETRANGE", "list", "536870912", "x"],
    ["SETRANGE", "list", "-1", "x"],
    ["INCR", "hash"],
    ["DECR", "set"],
    ["INCRBY", "zset", "5"],
    ["INCRBY", "zset", "x"],
    ["DECRBY", "zset", "-9223372036854775808"],
    ["INCRBYFLOAT", "list", "1.5"],
    ["INCRBYFLOAT", "list", "x"],
    ["TYPE", "list"],
    ["TYPE", "hash"],
    ["TYPE", "set"],
    ["TYPE", "zset"],
    ["MGET", "list", "hash", "string", "nokey"],
    ["EXISTS", "list", "set", "nokey", "list"],
    ["TOUCH", "hash", "zset"],
    ["SETNX", "list", "v"],
    ["MSETNX", "new", "v", "hash", "v"],
    ["SCAN", "0", "TYPE", "list"],
    ["SCAN", "0", "TYPE", "ZSET", "MATCH", "z*"],
    ["SCAN", "0", "TYPE", "hash", "COUNT", "100"],
    ["KEYS", "[lh]*"],
    ["EXPIRE", "set", "100"],
    ["TTL", "set"],
    ["PERSIST", "set"],
    ["RENAME", "set", "set2"],
    ["TYPE", "set2"],
    ["RENAMENX", "set2", "list"],
    ["COPY", "hash", "hash2"],
    ["TYPE", "hash2"],
    ["COPY", "zset", "hash2", "REPLACE"],
    ["TYPE", "hash2"],
    ["SET", "hash", "now a string"],
    ["GET", "hash"],
    ["DEL", "list", "zset", "nokey"],
    ["UNLINK", "set2"],
    ["KEYS", "*"],
]


def raw_reply(sock: socket.socket, argv: list[bytes]) -> bytes:
    """The exact bytes of one reply, framed by hiredis."""
    sock.sendall(b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in argv))
    reader, raw = hiredis.Reader(), b""
    while True:
        data = sock.recv(65536)
        raw += data
        reader.feed(data)
        if reader.gets() is not False:
            return raw


def test_other_types_answer_like_redis(reference: ServerProcess) -> None:
    node = InProcess()
    ks = node.keyspace
    ks.data[b"list"] = ListValue([b"a"])
    ks.data[b"hash"] = HashValue({b"f": b"v"})
    ks.data[b"set"] = SetValue({b"m"})
    ks.data[b"zset"] = ZSetValue({b"m": 1.0})
    ks.data[b"string"] = b"s"
    with socket.create_connection((reference.host, reference.port)) as sock:
        for setup in (
            [b"FLUSHALL"],
            [b"RPUSH", b"list", b"a"],
            [b"HSET", b"hash", b"f", b"v"],
            [b"SADD", b"set", b"m"],
            [b"ZADD", b"zset", b"1", b"m"],
            [b"SET", b"string", b"s"],
        ):
            assert not raw_reply(sock, setup).startswith(b"-")
        for command in COMMANDS:
            argv = [part.encode() for part in command]
            expected = raw_reply(sock, argv)
            got = node(*argv)
            if command[0] in ("KEYS", "SCAN"):  # same keys, maybe in another order
                expected, got = sorted(expected.split(b"\r\n")), sorted(got.split(b"\r\n"))
            assert got == expected, command
