"""The command layer against a plain dict model: random string and expiry
commands with a clock that jumps, every reply checked against the model, the
live keyspace equal to the model after each step, and a replica replaying
the log equal to the keyspace at the end."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from inprocess import InProcess

from nomadkv.resp.reply import bulk

KEYS = st.sampled_from([b"a", b"b", b"c"])
VALUES = st.sampled_from([b"", b"x", b"7", b"-3", b"yy"])
NULL = b"$-1\r\n"
OK = b"+OK\r\n"


def integer(value: int) -> bytes:
    return b":%d\r\n" % value


class CommandsAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.node = InProcess()
        self.model: dict[bytes, tuple[bytes, int | None]] = {}

    @property
    def now(self) -> int:
        return self.node.now_ms

    def live(self, key: bytes) -> tuple[bytes, int | None] | None:
        entry = self.model.get(key)
        if entry is None or (entry[1] is not None and entry[1] <= self.now):
            self.model.pop(key, None)
            return None
        return entry

    @rule(ms=st.sampled_from([0, 1, 499, 500, 1000, 2500]))
    def time_passes(self, ms: int) -> None:
        self.node.now_ms += ms

    @rule(
        key=KEYS,
        value=VALUES,
        condition=st.sampled_from([None, "NX", "XX"]),
        get=st.booleans(),
        ttl=st.sampled_from([None, ("PX", 500), ("EX", 2), ("KEEPTTL", None)]),
    )
    def set(self, key, value, condition, get, ttl) -> None:  # type: ignore[no-untyped-def]
        argv = [b"SET", key, value]
        argv += [condition.encode()] if condition else []
        argv += [b"GET"] if get else []
        if ttl is not None:
            argv += [ttl[0].encode()] + ([b"%d" % ttl[1]] if ttl[1] else [])
        old = self.live(key)
        blocked = (condition == "NX" and old) or (condition == "XX" and not old)
        if get:
            expected = NULL if old is None else bulk(old[0])
        else:
            expected = NULL if blocked else OK
        assert self.node(*argv) == expected
        if blocked:
            return
        if ttl is None:
            deadline = None
        elif ttl[0] == "KEEPTTL":
            deadline = old[1] if old else None
        else:
            deadline = self.now + ttl[1] * (1000 if ttl[0] == "EX" else 1)
        self.model[key] = (value, deadline)

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        entry = self.live(key)
        assert self.node(b"GET", key) == (NULL if entry is None else bulk(entry[0]))

    @rule(key=KEYS, by=st.integers(-5, 5))
    def incrby(self, key: bytes, by: int) -> None:
        entry = self.live(key)
        reply = self.node(b"INCRBY", key, b"%d" % by)
        value = entry[0] if entry else b"0"
        try:
            number = int(value)
        except ValueError:
            assert reply == b"-ERR value is not an integer or out of range\r\n"
            return
        if value != b"%d" % number:
            assert reply.startswith(b"-ERR")
            return
        assert reply == integer(number + by)
        self.model[key] = (b"%d" % (number + by), entry[1] if entry else None)

    @rule(key=KEYS, suffix=VALUES)
    def append(self, key: bytes, suffix: bytes) -> None:
        entry = self.live(key)
        value = (entry[0] if entry else b"") + suffix
        assert self.node(b"APPEND", key, suffix) == integer(len(value))
        self.model[key] = (value, entry[1] if entry else None)

    @rule(keys=st.lists(KEYS, min_size=1, max_size=3))
    def delete(self, keys: list[bytes]) -> None:
        deleted = 0
        for key in keys:
            if self.live(key):
                del self.model[key]
                deleted += 1
        assert self.node(b"DEL", *keys) == integer(deleted)

    @rule(
        key=KEYS,
        seconds=st.integers(-2, 5),
        flag=st.sampled_from([None, "NX", "XX", "GT", "LT"]),
    )
    def expire(self, key: bytes, seconds: int, flag: str | None) -> None:
        argv = [b"EXPIRE", key, b"%d" % seconds] + ([flag.encode()] if flag else [])
        entry = self.live(key)
        when = self.now + seconds * 1000
        current = entry[1] if entry else None
        refused = entry is None or (
            (flag == "NX" and current is not None)
            or (flag == "XX" and current is None)
            or (flag == "GT" and (current is None or when <= current))
            or (flag == "LT" and current is not None and when >= current)
        )
        assert self.node(*argv) == integer(0 if refused else 1)
        if refused or entry is None:
            return
        if when <= self.now:
            del self.model[key]
        else:
            self.model[key] = (entry[0], when)

    @rule(key=KEYS)
    def persist(self, key: bytes) -> None:
        entry = self.live(key)
        had = entry is not None and entry[1] is not None
        assert self.node(b"PERSIST", key) == integer(1 if had else 0)
        if entry:
            self.model[key] = (entry[0], None)

    @rule(key=KEYS)
    def pttl(self, key: bytes) -> None:
        entry = self.live(key)
        if entry is None:
            expected = -2
        else:
            expected = -1 if entry[1] is None else entry[1] - self.now
        assert self.node(b"PTTL", key) == integer(expected)

    @rule(source=KEYS, destination=KEYS, nx=st.booleans())
    def rename(self, source: bytes, destination: bytes, nx: bool) -> None:
        entry = self.live(source)
        reply = self.node(b"RENAMENX" if nx else b"RENAME", source, destination)
        if entry is None:
            assert reply == b"-ERR no such key\r\n"
            return
        if source == destination:
            assert reply == (integer(0) if nx else OK)
            return
        if nx and self.live(destination):
            assert reply == integer(0)
            return
        assert reply == (integer(1) if nx else OK)
        del self.model[source]
        self.model[destination] = entry

    @rule(key=KEYS, option=st.sampled_from([None, "PERSIST", "PX"]))
    def getex(self, key: bytes, option: str | None) -> None:
        entry = self.live(key)
        argv = [b"GETEX", key] + ([option.encode()] if option else [])
        if option == "PX":
            argv.append(b"700")
        assert self.node(*argv) == (NULL if entry is None else bulk(entry[0]))
        if entry and option:
            self.model[key] = (entry[0], None if option == "PERSIST" else self.now + 700)

    @invariant()
    def keyspace_matches_model(self) -> None:
        for key in (b"a", b"b", b"c"):
            entry = self.live(key)
            assert self.node.keyspace.peek(key, self.now) == (entry[0] if entry else None)
            if entry:
                assert self.node.keyspace.deadline(key) == entry[1]

    def teardown(self) -> None:
        replica = self.node.replay()
        assert replica.data == self.node.keyspace.data
        assert replica.expires == self.node.keyspace.expires


CommandsAgainstModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_commands_against_model = CommandsAgainstModel.TestCase
