"""Data commands in-process: WRONGTYPE paths (lists, hashes, sets and sorted
sets can only be made here until their commands exist), the logged form of
every write (absolute deadlines only), replay on a fresh replica, expiry
against a clock the test moves, and what differs from Redis on purpose."""

from __future__ import annotations

import pytest
from inprocess import InProcess

from nomadkv.keyspace import HashValue, ListValue, SetValue, ZSetValue

WRONGTYPE = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
NOT_INTEGER = b"-ERR value is not an integer or out of range\r\n"
NULL = b"$-1\r\n"


@pytest.fixture
def run() -> InProcess:
    node = InProcess()
    ks = node.keyspace
    ks.data[b"list"] = ListValue([b"a", b"b"])
    ks.data[b"hash"] = HashValue({b"f": b"v"})
    ks.data[b"set"] = SetValue({b"m"})
    ks.data[b"zset"] = ZSetValue({b"m": 1.0})
    return node


@pytest.mark.parametrize(
    "command",
    [
        ["GET", "list"],
        ["GETSET", "list", "v"],
        ["GETDEL", "list"],
        ["GETEX", "list"],
        ["GETEX", "list", "EX", "-1"],  # the type is checked before the time
        ["GETEX", "list", "PERSIST"],
        ["SET", "list", "v", "GET"],
        ["SET", "list", "v", "NX", "GET"],
        ["APPEND", "list", "x"],
        ["STRLEN", "list"],
        ["GETRANGE", "list", "0", "-1"],
        ["SETRANGE", "list", "0", "x"],
        ["SETRANGE", "list", "0", ""],  # the type before the empty-value shortcut
        ["SETRANGE", "list", "536870912", "x"],  # ... and before the size limit
        ["INCR", "hash"],
        ["DECR", "set"],
        ["INCRBY", "zset", "5"],
        ["DECRBY", "zset", "5"],
        ["INCRBYFLOAT", "list", "1.5"],
        ["INCRBYFLOAT", "list", "not-a-float"],  # Redis checks the type first
    ],
)
def test_string_commands_refuse_other_types(run: InProcess, command: list[str]) -> None:
    before = dict(run.keyspace.data)
    assert run(*command) == WRONGTYPE
    assert run.keyspace.data.keys() == before.keys()


def test_checks_on_arguments_come_before_the_type(run: InProcess) -> None:
    assert run("INCRBY", "list", "x") == NOT_INTEGER
    assert run("GETRANGE", "list", "x", "1") == NOT_INTEGER
    assert run("SETRANGE", "list", "-1", "x") == b"-ERR offset is out of range\r\n"
    assert run("SET", "list", "v", "GET", "EX", "0") == (
        b"-ERR invalid expire time in 'set' command\r\n"
    )


def test_commands_that_work_on_any_type(run: InProcess) -> None:
    assert run("TYPE", "list") == b"+list\r\n"
    assert run("TYPE", "hash") == b"+hash\r\n"
    assert run("TYPE", "set") == b"+set\r\n"
    assert run("TYPE", "zset") == b"+zset\r\n"
    assert run("MGET", "list", "hash", "nokey") == b"*3\r\n" + NULL * 3
    assert run("EXISTS", "list", "set", "nokey") == b":2\r\n"
    assert run("SETNX", "list", "v") == b":0\r\n"
    assert run("MSETNX", "new", "v", "hash", "v") == b":0\r\n"
    assert run("EXPIRE", "set", "100") == b":1\r\n"
    assert run("TTL", "set") == b":100\r\n"
    assert run("RENAME", "set", "set2") == b"+OK\r\n"
    assert run("TTL", "set2") == b":100\r\n"
    assert isinstance(run.keyspace.data[b"set2"], SetValue)
    assert run("SET", "hash", "now a string") == b"+OK\r\n"
    assert run("GET", "hash") == b"$12\r\nnow a string\r\n"


def test_copy_makes_an_independent_value(run: InProcess) -> None:
    assert run("COPY", "list", "list2") == b":1\r\n"
    copied = run.keyspace.data[b"list2"]
    assert isinstance(copied, ListValue)
    copied.append(b"c")
    assert run.keyspace.data[b"list"] == ListValue([b"a", b"b"])
    assert run("COPY", "hash", "list2") == b":0\r\n"
    assert run("COPY", "hash", "list2", "REPLACE") == b":1\r\n"
    assert run("TYPE", "list2") == b"+hash\r\n"


def test_scan_type_filter(run: InProcess) -> None:
    run("SET", "s", "v")

    def scan(*options: str) -> list[bytes]:
        reply = run("SCAN", "0", "COUNT", "100", *options)
        return sorted(line for line in reply.split(b"\r\n")[4:] if line and line[:1] != b"$")

    assert scan("TYPE", "LIST") == [b"list"]
    assert scan("TYPE", "zset") == [b"zset"]
    assert scan("TYPE", "string") == [b"s"]
    assert scan("TYPE", "none") == []
    assert scan("TYPE", "nosuchtype") == []
    assert scan() == [b"hash", b"list", b"s", b"set", b"zset"]


def test_mget_nulls_in_resp3() -> None:
    run = InProcess(resp3=True)
    run("SET", "a", "1")
    assert run("MGET", "a", "b") == b"*2\r\n$1\r\n1\r\n_\r\n"
    assert run("GET", "b") == b"_\r\n"


# -- what the log holds ---------------------------------------------------------


def test_relative_times_are_logged_as_absolute_deadlines() -> None:
    run = InProcess()
    now = run.now_ms
    run("SET", "k", "v", "ex", "10", "nx")
    run("SETEX", "k2", "5", "v")
    run("PSETEX", "k3", "1500", "v")
    run("GETEX", "k", "PX", "2000")
    run("GETEX", "k", "persist")
    run("GETEX", "k", "EX", "0")
    run("EXPIRE", "k", "30", "gt", "XX")
    run("PEXPIRE", "k", "400")
    run("EXPIREAT", "k", "2000000000", "LT")
    run("PEXPIREAT", "k", "2000000000000")
    assert run.logged == [
        [b"SET", b"k", b"v", b"NX", b"PXAT", b"%d" % (now + 10_000)],
        [b"SET", b"k2", b"v", b"PXAT", b"%d" % (now + 5000)],
        [b"SET", b"k3", b"v", b"PXAT", b"%d" % (now + 1500)],
        [b"GETEX", b"k", b"PXAT", b"%d" % (now + 2000)],
        [b"GETEX", b"k", b"PERSIST"],
        [b"GETEX", b"k", b"EX", b"0"],  # invalid, but only an error if k holds a string
        [b"PEXPIREAT", b"k", b"%d" % (now + 30_000), b"GT", b"XX"],
        [b"PEXPIREAT", b"k", b"%d" % (now + 400)],
        [b"PEXPIREAT", b"k", b"2000000000000", b"LT"],
        [b"PEXPIREAT", b"k", b"2000000000000"],
    ]


def test_invalid_commands_are_not_logged() -> None:
    run = InProcess()
    for command in [
        ["SET", "k", "v", "EX", "abc"],
        ["SET", "k", "v", "XX", "NX"],
        ["SETEX", "k", "0", "v"],
        ["EXPIRE", "k", "10", "NX", "GT"],
        ["INCRBY", "k", "1.5"],
        ["DECRBY", "k", "-9223372036854775808"],
        ["MSET", "a", "1", "b"],
        ["COPY", "a", "b", "DB", "3"],
        ["FLUSHALL", "LAZY"],
        ["SETRANGE", "k", "-1", "v"],
    ]:
        assert run(*command).startswith(b"-ERR"), command
    assert run.logged == []


def test_a_replica_replaying_the_log_ends_up_equal() -> None:
    run = InProcess()
    steps = [
        ["SET", "a", "1", "PX", "50"],
        ["INCRBYFLOAT", "f", "10.5"],
        ["INCRBYFLOAT", "f", "0.1"],
        ["MSET", "b", "x", "c", "y"],
        ["EXPIRE", "b", "1"],
        ["APPEND", "c", "zz"],
        ["SETRANGE", "d", "3", "q"],
        ["RENAME", "c", "e"],
        ["COPY", "e", "g"],
        ["GETEX", "g", "EXAT", "1"],
        ["INCR", "n"],
        ["PERSIST", "b"],
        ["DEL", "a"],  # expired by now: the write removes it and counts nothing
    ]
    for i, step in enumerate(steps):
        run.now_ms += 20 * i
        run(*step)
    replica = run.replay()
    assert replica.data == run.keyspace.data
    assert replica.expires == run.keyspace.expires
    assert run.keyspace.data[b"f"] == b"10.6"
    assert b"a" not in run.keyspace.data
    assert b"g" not in run.keyspace.data  # EXAT in the past deletes
    assert b"b" not in run.keyspace.expires


# -- expiry with a clock the test moves ------------------------------------------


def test_deadlines_follow_the_clock() -> None:
    run = InProcess()
    run("SET", "k", "v", "PX", "100")
    assert run("PTTL", "k") == b":100\r\n"
    assert run("TTL", "k") == b":0\r\n"  # (100 + 500) // 1000
    assert run("PEXPIRETIME", "k") == b":%d\r\n" % (run.now_ms + 100)
    assert run("EXPIRETIME", "k") == b":%d\r\n" % ((run.now_ms + 100 + 500) // 1000)
    run.now_ms += 99
    assert run("GET", "k") == b"$1\r\nv\r\n"
    run.now_ms += 1
    assert run("GET", "k") == NULL
    assert run("TTL", "k") == b":-2\r\n"
    assert run.keyspace.expired_seen == {b"k"}  # a read hides it; the node deletes it via the log
    assert b"k" in run.keyspace.data
    assert run("EXISTS", "k") == b":0\r\n"
    assert run("SET", "k", "w", "XX") == NULL  # a write sees it gone, and deletes it
    assert b"k" not in run.keyspace.data


def test_gt_lt_treat_no_deadline_as_infinite() -> None:
    run = InProcess()
    run("SET", "k", "v")
    assert run("EXPIRE", "k", "100", "GT") == b":0\r\n"
    assert run("EXPIRE", "k", "100", "LT") == b":1\r\n"
    assert run("EXPIRE", "k", "100", "LT") == b":0\r\n"  # equal is not less
    assert run("EXPIRE", "k", "200", "GT") == b":1\r\n"
    assert run("EXPIRE", "k", "200", "GT") == b":0\r\n"  # equal is not greater
    assert run("EXPIRE", "k", "300", "NX") == b":0\r\n"
    assert run("EXPIRE", "k", "300", "XX") == b":1\r\n"
    assert run("EXPIRE", "k", "-1", "XX", "LT") == b":1\r\n"
    assert run("EXISTS", "k") == b":0\r\n"
    assert run("EXPIRE", "k", "10") == b":0\r\n"


def test_expire_time_limits() -> None:
    run = InProcess()
    run("SET", "k", "v")
    limit = 9223372036854775807
    assert run("PEXPIREAT", "k", limit) == b":1\r\n"
    assert run("PEXPIRE", "k", limit) == b"-ERR invalid expire time in 'pexpire' command\r\n"
    assert run("EXPIREAT", "k", limit // 1000) == b":1\r\n"
    assert run("EXPIREAT", "k", limit // 1000 + 1) == (
        b"-ERR invalid expire time in 'expireat' command\r\n"
    )
    # C divides LLONG_MIN by 1000 towards zero: -9223372036854775 is the last accepted.
    assert run("EXPIREAT", "k", "-9223372036854775") == b":1\r\n"
    run("SET", "k", "v")
    assert run("EXPIREAT", "k", "-9223372036854776") == (
        b"-ERR invalid expire time in 'expireat' command\r\n"
    )
    assert run("EXPIRE", "k", "10", "fo\x00o", "x") == b"-ERR Unsupported option fo\r\n"


# -- deliberate differences (docs/compatibility.md) -------------------------------


def test_copy_to_another_database_as_in_cluster_mode() -> None:
    run = InProcess()
    run("SET", "a", "v")
    assert run("COPY", "a", "b", "DB", "0") == b":1\r\n"
    assert run("COPY", "a", "c", "DB", "1") == (
        b"-ERR Copying to another database is not allowed in cluster mode\r\n"
    )
    assert run("COPY", "a", "c", "DB", "16") == b"-ERR DB index is out of range\r\n"
    assert run("COPY", "a", "a", "DB", "0") == (
        b"-ERR source and destination objects are the same\r\n"
    )
