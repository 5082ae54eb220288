"""Seeded random command sequences for the differential test.

One ``Generator(seed)`` yields ``Step``s over a small set of keys, so that
commands keep meeting each other's keys: every data command of the
foundation issue, with valid and invalid arguments (wrong arity, numbers
that are not numbers or do not fit in 64 bits, options in any order and
case, repeated or conflicting options), and deadlines in the past, a few
milliseconds ahead (short), or far ahead (long).

Deadlines are chosen so the two servers cannot disagree by timing alone:
nothing lands between "a few seconds" and "a thousand seconds" ahead, and
the runner waits for short deadlines to pass on both servers before the next
command (``SETS_DEADLINE`` names the commands after which it looks).

The generator depends only on its seed and on the clock it is given (for
absolute timestamps), so a failing seed replays the same sequence.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

KEYS = [b"k1", b"k2", b"k3", b"n", b"f", b"{t}x", b"\xffbin", b""]
PATTERN_ALPHABET = [b"k", b"1", b"2", b"n", b"f", b"t", b"x", b"{", b"}", b"\xff"]
PATTERN_META = [b"*", b"?", b"[", b"]", b"^", b"-", b"\\"]

SMALL_INTS = [b"%d" % i for i in range(-5, 12)]
JUNK_INTS = [
    b"2147483648",
    b"-2147483649",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"abc",
    b"",
    b"1.5",
    b" 1",
    b"1 ",
    b"+1",
    b"01",
    b"-0",
    b"1e3",
    b"0x10",
    b"-",
    b"1\x00",
]
VALUES = [
    b"v",
    b"",
    b"hello",
    b"0",
    b"1",
    b"-5",
    b"42",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775806",
    b"3.14",
    b"-2.5",
    b"1e3",
    b"0x1p4",
    b"inf",
    b"-inf",
    b"nan",
    b" 7",
    b"abc",
    b"\x00\xff\r\n",
    b"10.5",
    b"1e-20",
    b"007",
    b"5\x00",
    b"1.5e300",
]
FLOATS = [
    b"0.1",
    b"1",
    b"-1",
    b"10.5",
    b"1e3",
    b"-0",
    b"0x10",
    b"0X1.8P3",
    b"1.5e300",
    b"1e308",
    b"-1e308",
    b"1e4932",
    b"1.18e4932",
    b"1e5000",
    b"1e-5000",
    b"inf",
    b"-Infinity",
    b"nan",
    b"abc",
    b"",
    b" 1",
    b"1.",
    b".5",
    b"5e-324",
    b"1e-4940",
    b"3.0000000000000000001",
    b"0.3",
    b"-0.30000000000000004",
    b"123456789012345678901234567890",
    b"1e",
    b"+.5e-3",
]

# Commands after which a key may hold a short deadline.
SETS_DEADLINE = {
    b"SET",
    b"SETEX",
    b"PSETEX",
    b"GETEX",
    b"EXPIRE",
    b"PEXPIRE",
    b"EXPIREAT",
    b"PEXPIREAT",
    b"RENAME",
    b"RENAMENX",
    b"COPY",
}


@dataclass
class Step:
    argv: list[bytes]
    # exact | sorted | scan | scan_once | randomkey | ttl_s | ttl_ms
    compare: str = "exact"


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.families: list[tuple[float, Callable[[int], Step]]] = [
            (14, self.set),
            (7, self.simple_read),
            (5, self.getex),
            (2, self.setnx),
            (3, self.setex),
            (3, self.mget),
            (4, self.mset),
            (3, self.append),
            (3, self.getrange),
            (3, self.setrange),
            (6, self.counter),
            (5, self.incrbyfloat),
            (4, self.delete),
            (3, self.exists),
            (3, self.keys),
            (3, self.scan),
            (4, self.rename),
            (3, self.copy),
            (0.5, self.flush),
            (1, self.randomkey),
            (10, self.expire),
            (7, self.ttl),
            (2, self.persist),
        ]
        self.weights = [w for w, _ in self.families]

    # -- helpers -------------------------------------------------------------

    def key(self) -> bytes:
        return self.rng.choice(KEYS)

    def case(self, word: bytes) -> bytes:
        """An option or command name in a random case."""
        style = self.rng.random()
        if style < 0.4:
            return word.upper()
        if style < 0.6:
            return word.lower()
        return bytes(c ^ 0x20 if chr(c).isalpha() and self.rng.random() < 0.5 else c for c in word)

    def integer(self) -> bytes:
        if self.rng.random() < 0.8:
            return self.rng.choice(SMALL_INTS)
        return self.rng.choice(JUNK_INTS)

    def value(self) -> bytes:
        if self.rng.random() < 0.3:
            return self.rng.choice(SMALL_INTS)
        return self.rng.choice(VALUES)

    def seconds(self, now_ms: int, absolute: bool) -> bytes:
        """An amount of seconds (or a Unix time): past, short, long or invalid."""
        rng = self.rng
        now_s = now_ms // 1000
        kind = rng.choices(["past", "short", "long", "bad"], [3, 1, 8, 3])[0]
        if kind == "past":
            return b"%d" % rng.choice([0, 1, now_s - 100, now_s, -5] if absolute else [0, -1, -100])
        if kind == "short":  # about a second: the runner waits it out
            return b"%d" % (now_s + 1 if absolute else 1)
        if kind == "long":
            ahead = rng.choice([10**4, 10**5, 10**7]) + rng.randrange(10**3)
            return b"%d" % (now_s + ahead if absolute else ahead)
        edges = [b"9223372036854775", b"9223372036854776", b"-9223372036854775"]
        return rng.choice([*edges, b"-9223372036854776", *JUNK_INTS])

    def milliseconds(self, now_ms: int, absolute: bool) -> bytes:
        rng = self.rng
        kind = rng.choices(["past", "short", "long", "bad"], [3, 3, 8, 3])[0]
        if kind == "past":
            return b"%d" % rng.choice([0, 1, now_ms - 1000, -7] if absolute else [0, -1, -20])
        if kind == "short":
            ahead = rng.choice([1, 2, 5, 20])
            return b"%d" % (now_ms + ahead if absolute else ahead)
        if kind == "long":
            ahead = rng.choice([10**7, 10**8, 10**10]) + rng.randrange(10**6)
            return b"%d" % (now_ms + ahead if absolute else ahead)
        return rng.choice([b"9223372036854775807", b"9223372036854775806", *JUNK_INTS])

    def expire_option(self, now_ms: int) -> list[bytes]:
        option = self.rng.choice([b"EX", b"PX", b"EXAT", b"PXAT"])
        absolute = option.endswith(b"AT")
        if option.startswith(b"E"):
            amount = self.seconds(now_ms, absolute)
        else:
            amount = self.milliseconds(now_ms, absolute)
        return [self.case(option), amount]

    def options(self, pool: list[list[bytes]], most: int) -> list[bytes]:
        chosen: list[bytes] = []
        for _ in range(self.rng.randint(0, most)):
            chosen += self.rng.choice(pool)
        return chosen

    # -- the step ------------------------------------------------------------

    def step(self, now_ms: int) -> Step:
        family = self.rng.choices(self.families, self.weights)[0][1]
        step = family(now_ms)
        roll = self.rng.random()
        if roll < 0.03 and len(step.argv) > 1:
            step.argv.pop()  # one argument short: arity or syntax
        elif roll < 0.05:
            step.argv.append(self.rng.choice([b"extra", b"1", b"EX"]))
        if self.rng.random() < 0.15:
            step.argv[0] = self.case(step.argv[0])
        return step

    # -- strings ---------------------------------------------------------------

    def set(self, now_ms: int) -> Step:
        argv = [b"SET", self.key(), self.value()]
        pool = [
            [self.case(b"NX")],
            [self.case(b"XX")],
            [self.case(b"GET")],
            [self.case(b"KEEPTTL")],
            self.expire_option(now_ms),
            self.expire_option(now_ms),
            [self.case(self.rng.choice([b"EX", b"PX", b"FOO", b"PERSIST"]))],
        ]
        return Step(argv + self.options(pool, 3))

    def simple_read(self, now_ms: int) -> Step:
        name = self.rng.choice([b"GET", b"GETSET", b"GETDEL", b"STRLEN", b"TYPE"])
        argv = [name, self.key()]
        if name == b"GETSET":
            argv.append(self.value())
        return Step(argv)

    def getex(self, now_ms: int) -> Step:
        pool = [
            [self.case(b"PERSIST")],
            self.expire_option(now_ms),
            self.expire_option(now_ms),
            [self.case(self.rng.choice([b"NX", b"KEEPTTL", b"GET", b"EX"]))],
        ]
        return Step([b"GETEX", self.key(), *self.options(pool, 2)])

    def setnx(self, now_ms: int) -> Step:
        return Step([b"SETNX", self.key(), self.value()])

    def setex(self, now_ms: int) -> Step:
        if self.rng.random() < 0.5:
            return Step([b"SETEX", self.key(), self.seconds(now_ms, False), self.value()])
        return Step([b"PSETEX", self.key(), self.milliseconds(now_ms, False), self.value()])

    def mget(self, now_ms: int) -> Step:
        return Step([b"MGET", *(self.key() for _ in range(self.rng.randint(1, 4)))])

    def mset(self, now_ms: int) -> Step:
        argv = [self.rng.choice([b"MSET", b"MSETNX"])]
        for _ in range(self.rng.randint(1, 3)):
            argv += [self.key(), self.value()]
        if self.rng.random() < 0.1:
            argv.append(self.key())  # odd number of arguments
        return Step(argv)

    def append(self, now_ms: int) -> Step:
        return Step([b"APPEND", self.key(), self.value()])

    def getrange(self, now_ms: int) -> Step:
        return Step([b"GETRANGE", self.key(), self.integer(), self.integer()])

    def setrange(self, now_ms: int) -> Step:
        offset = self.rng.choice(
            [
                self.integer(),
                b"%d" % self.rng.randrange(40),
                b"536870911",  # with a one-byte value: exactly at the limit, but created lazily
                b"536870912",
                b"4611686018427387904",
                b"9223372036854775807",
            ]
        )
        value = self.rng.choice([self.value(), b"", b"xy"])
        if offset == b"536870911":
            value = b"ab"  # one byte over the limit: an error on both, no 512 MB allocation
        return Step([b"SETRANGE", self.key(), offset, value])

    def counter(self, now_ms: int) -> Step:
        name = self.rng.choice([b"INCR", b"DECR", b"INCRBY", b"DECRBY"])
        argv = [name, self.rng.choice([b"n", b"n", self.key()])]
        if name.endswith(b"BY"):
            argv.append(self.integer())
        return Step(argv)

    def incrbyfloat(self, now_ms: int) -> Step:
        return Step([b"INCRBYFLOAT", self.rng.choice([b"f", b"f", self.key()]), self.float()])

    def float(self) -> bytes:
        if self.rng.random() < 0.3:
            return self.rng.choice(SMALL_INTS)
        return self.rng.choice(FLOATS)

    # -- keys ------------------------------------------------------------------

    def delete(self, now_ms: int) -> Step:
        name = self.rng.choice([b"DEL", b"UNLINK"])
        return Step([name, *(self.key() for _ in range(self.rng.randint(1, 3)))])

    def exists(self, now_ms: int) -> Step:
        name = self.rng.choice([b"EXISTS", b"TOUCH"])
        return Step([name, *(self.key() for _ in range(self.rng.randint(1, 4)))])

    def pattern(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.4:
            return rng.choice([b"*", b"k*", b"*1", b"k[12]", b"k[^1]", b"[a-z]?", b"?", b"\\*"])
        parts = [
            rng.choice(PATTERN_META if rng.random() < 0.4 else PATTERN_ALPHABET)
            for _ in range(rng.randint(0, 6))
        ]
        return b"".join(parts)

    def keys(self, now_ms: int) -> Step:
        return Step([b"KEYS", self.pattern()], compare="sorted")

    def scan(self, now_ms: int) -> Step:
        rng = self.rng
        options: list[bytes] = []
        for _ in range(rng.randint(0, 3)):
            option = rng.choice([b"MATCH", b"COUNT", b"TYPE"])
            if option == b"MATCH":
                options += [self.case(option), self.pattern()]
            elif option == b"COUNT":
                count = rng.choice([b"1", b"2", b"3", b"10", b"1000"])
                options += [self.case(option), count]
            else:
                kind = rng.choice([b"string", b"STRING", b"none", b"list", b"foo"])
                options += [self.case(option), kind]
        if rng.random() < 0.8:
            return Step([b"SCAN", b"0", *options], compare="scan")
        bad = rng.choice(
            [
                [b"abc"],
                [b" 1"],
                [b"-"],
                [b"18446744073709551616"],
                [b"-1"],
                [b""],
                [b"0", b"COUNT", b"0"],
                [b"0", b"COUNT", b"-1"],
                [b"0", b"COUNT", b"abc"],
                [b"0", b"MATCH"],
                [b"0", b"FOO", b"1"],
                [b"0", b"TYPE"],
            ]
        )
        return Step([b"SCAN", *bad, *options], compare="scan_once")

    def rename(self, now_ms: int) -> Step:
        name = self.rng.choice([b"RENAME", b"RENAMENX"])
        return Step([name, self.key(), self.key()])

    def copy(self, now_ms: int) -> Step:
        pool = [
            [self.case(b"REPLACE")],
            [self.case(b"DB"), b"0"],
            [self.case(b"DB"), self.rng.choice([b"abc", b"-1", b"16", b"99999999999", b""])],
            [self.case(b"FOO")],
        ]
        return Step([b"COPY", self.key(), self.key(), *self.options(pool, 2)])

    def flush(self, now_ms: int) -> Step:
        name = self.rng.choice([b"FLUSHDB", b"FLUSHALL"])
        tail = self.rng.choice([[], [b"ASYNC"], [b"sync"], [b"foo"], [b"async", b"async"]])
        return Step([name, *tail])

    def randomkey(self, now_ms: int) -> Step:
        return Step([b"RANDOMKEY"], compare="randomkey")

    # -- expiry ----------------------------------------------------------------

    def expire(self, now_ms: int) -> Step:
        name = self.rng.choice([b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT"])
        absolute = name.endswith(b"AT")
        if name.startswith(b"E"):
            amount = self.seconds(now_ms, absolute)
        else:
            amount = self.milliseconds(now_ms, absolute)
        flags = [
            self.case(self.rng.choice([b"NX", b"XX", b"GT", b"LT", b"GT", b"LT", b"foo"]))
            for _ in range(self.rng.choices([0, 1, 2], [4, 5, 1])[0])
        ]
        return Step([name, self.key(), amount, *flags])

    def ttl(self, now_ms: int) -> Step:
        name = self.rng.choice([b"TTL", b"PTTL", b"EXPIRETIME", b"PEXPIRETIME"])
        return Step([name, self.key()], compare="ttl_ms" if name.startswith(b"P") else "ttl_s")

    def persist(self, now_ms: int) -> Step:
        return Step([b"PERSIST", self.key()])
