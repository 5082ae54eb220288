"""NomadKV answers like Redis 7.0: the same random command sequences go to the
reference redis-server and to a NomadKV node, and every reply must match,
error text included.

Each seed drives a ``Generator`` (see diff_generator.py) for STEPS commands;
odd seeds speak RESP3 (HELLO 3). Replies are compared exactly, except where
time or order legitimately differ:

- TTL/EXPIRETIME within 2 s and PTTL/PEXPIRETIME within 2000 ms (the two
  servers compute relative deadlines a few milliseconds apart); -1 and -2
  exactly;
- KEYS as sorted lists; SCAN by running the whole iteration on both and
  comparing the sets of keys (cursors are implementation details), and for
  odd cursors only the shape of the reply or the exact error;
- RANDOMKEY: both nil, or each a key that exists on its own server.

After a command that can set a deadline, keys whose deadline is a few seconds
away or less are waited for (with a deadline) until they are gone on both
servers, so no later reply depends on which server ran first. Before an
EXPIRE with GT or LT, a new deadline within 5 s of the current one is moved
further away for the same reason. Every 25 steps and at the end the whole
state (type, value, deadline of every key) is compared too.

Replay one seed: ``NOMADKV_DIFF_SEED=7 pytest tests/differential``
(``NOMADKV_DIFF_STEPS`` changes the length).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from diff_client import RawClient, Reply
from diff_generator import KEYS, SETS_DEADLINE, Generator, Step

from nomadkv.harness import ServerProcess, nomadkv_node, wait_until

SEED_COUNT = 24
STEPS = int(os.environ.get("NOMADKV_DIFF_STEPS", "250"))
STATE_CHECK_EVERY = 25
SHORT_DEADLINE_MS = 5000  # deadlines closer than this are waited for
NEAR_DEADLINE_MS = 5000  # GT/LT against a deadline this close could go either way
TTL_TOLERANCE = {"ttl_s": 2, "ttl_ms": 2000}
EXPIRE_COMMANDS = {b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT"}


def seeds() -> list[int]:
    chosen = os.environ.get("NOMADKV_DIFF_SEED")
    return [int(chosen, 0)] if chosen else list(range(SEED_COUNT))


@pytest.fixture(scope="module")
def nomad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One NomadKV node for the module, flushed before each seed."""
    server = nomadkv_node(str(tmp_path_factory.mktemp("differential")), appendfsync="no")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("seed", seeds())
def test_same_replies_as_redis(seed: int, reference: ServerProcess, nomad: ServerProcess) -> None:
    redis_client = RawClient(reference.host, reference.port)
    nomad_client = RawClient(nomad.host, nomad.port)
    try:
        Run(seed, redis_client, nomad_client).run(STEPS)
    finally:
        redis_client.close()
        nomad_client.close()


class Run:
    def __init__(self, seed: int, redis_client: RawClient, nomad_client: RawClient) -> None:
        self.seed = seed
        self.redis = redis_client
        self.nomad = nomad_client
        self.history: list[list[bytes]] = []

    def both(self, *argv: bytes | str) -> tuple[Reply, Reply]:
        return self.redis.call(*argv), self.nomad.call(*argv)

    def run(self, steps: int) -> None:
        for client in (self.redis, self.nomad):
            assert client.call("FLUSHALL") == ("+", b"OK")
            if self.seed % 2:
                assert client.call("HELLO", "3")[0] == "%"
        generator = Generator(self.seed)
        for index in range(steps):
            step = generator.step(int(time.time() * 1000))
            self.keep_clear_of_current_deadline(step)
            self.history.append(step.argv)
            if step.compare == "scan":
                redis_reply, nomad_reply = (
                    self.full_scan(self.redis, step),
                    self.full_scan(self.nomad, step),
                )
            else:
                redis_reply, nomad_reply = self.both(*step.argv)
            problem = self.compare(step, redis_reply, nomad_reply)
            if problem:
                self.fail(index, problem, redis_reply, nomad_reply)
            if step.argv[0].upper() in SETS_DEADLINE:
                self.wait_for_short_deadlines()
            if index % STATE_CHECK_EVERY == STATE_CHECK_EVERY - 1 or index == steps - 1:
                self.compare_state(index)

    # -- keeping time out of the comparison ------------------------------------

    def wait_for_short_deadlines(self) -> None:
        pttls = [c.pipeline([[b"PTTL", k] for k in KEYS]) for c in (self.redis, self.nomad)]
        short = [
            key
            for i, key in enumerate(KEYS)
            if any(0 <= replies[i][1] <= SHORT_DEADLINE_MS for replies in pttls)
        ]
        if not short:
            return
        gone = [(":", 0)] * len(short)

        def expired_on_both() -> bool:
            return all(
                c.pipeline([[b"EXISTS", k] for k in short]) == gone
                for c in (self.redis, self.nomad)
            )

        wait_until(expired_on_both, 10, f"short deadlines of {short} to pass", interval_s=0.002)

    def keep_clear_of_current_deadline(self, step: Step) -> None:
        """Move an EXPIRE ... GT|LT deadline away from the key's current one, which
        the two servers computed a few milliseconds apart."""
        argv = step.argv
        name = argv[0].upper()
        if name not in EXPIRE_COMMANDS or len(argv) < 4:
            return
        if not {a.upper() for a in argv[3:]} & {b"GT", b"LT"}:
            return
        try:
            amount = int(argv[2])
        except ValueError:
            return
        unit = 1000 if name in (b"EXPIRE", b"EXPIREAT") else 1
        for _ in range(20):
            when = amount * unit + (0 if name.endswith(b"AT") else int(time.time() * 1000))
            current = [r[1] for r in self.both(b"PEXPIRETIME", argv[1])]
            if all(c < 0 or abs(c - when) > NEAR_DEADLINE_MS for c in current):
                break
            amount += 10**6 // unit
        argv[2] = b"%d" % amount

    # -- comparing ---------------------------------------------------------------

    def full_scan(self, client: RawClient, step: Step) -> Reply:
        """The keys of a whole SCAN iteration with the step's options, sorted."""
        if len(step.argv) < 2:  # lost its cursor to an arity mutation
            return client.call(*step.argv)
        cursor, seen = b"0", set()
        for _ in range(10_000):
            reply = client.call(b"SCAN", cursor, *step.argv[2:])
            if reply[0] == "-":
                return reply
            (_, cursor), (_, keys) = reply[1]
            seen.update(key for _, key in keys)
            if cursor == b"0":
                return ("scan", sorted(seen))
        raise AssertionError("SCAN did not come back to cursor 0")

    def compare(self, step: Step, redis_reply: Reply, nomad_reply: Reply) -> str | None:
        kind = step.compare
        if kind in ("exact", "scan") or "-" in (redis_reply[0], nomad_reply[0]):
            return None if redis_reply == nomad_reply else "replies differ"
        if kind == "sorted":
            same = redis_reply[0] == nomad_reply[0] and sorted(redis_reply[1]) == sorted(
                nomad_reply[1]
            )
            return None if same else "different sets of keys"
        if kind in TTL_TOLERANCE:
            if redis_reply[0] != ":" or nomad_reply[0] != ":":
                return None if redis_reply == nomad_reply else "replies differ"
            a, b = redis_reply[1], nomad_reply[1]
            if a < 0 or b < 0:
                return None if a == b else "one key has no deadline or does not exist"
            return None if abs(a - b) <= TTL_TOLERANCE[kind] else "deadlines too far apart"
        if kind == "scan_once":
            for reply in (redis_reply, nomad_reply):
                if reply[0] != "*" or [len(reply[1]), reply[1][0][0]] != [2, "$"]:
                    return "not a SCAN reply"
            return None
        if kind == "randomkey":
            picked = []
            for client, reply in ((self.redis, redis_reply), (self.nomad, nomad_reply)):
                if reply[1] is None:
                    picked.append(False)
                elif client.call(b"EXISTS", reply[1]) == (":", 1):
                    picked.append(True)
                else:
                    return "RANDOMKEY returned a key that does not exist"
            return None if picked[0] == picked[1] else "one database looks empty"
        raise AssertionError(f"unknown comparison {kind}")

    def compare_state(self, index: int) -> None:
        for key in KEYS:
            for argv, kind in (([b"TYPE", key], "exact"), ([b"PTTL", key], "ttl_ms")):
                redis_reply, nomad_reply = self.both(*argv)
                problem = self.compare(Step(argv, kind), redis_reply, nomad_reply)
                if problem:
                    self.fail(
                        index, f"state differs after this step: {argv}", redis_reply, nomad_reply
                    )
            if self.redis.call(b"TYPE", key) == ("+", b"string"):
                redis_reply, nomad_reply = self.both(b"GET", key)
                if redis_reply != nomad_reply:
                    self.fail(index, f"value of {key!r} differs", redis_reply, nomad_reply)

    def fail(self, index: int, problem: str, redis_reply: Reply, nomad_reply: Reply) -> None:
        recent = "\n".join(f"  {argv}" for argv in self.history[-15:])
        pytest.fail(
            f"seed {self.seed}, step {index}: {problem}\n"
            f"  command: {self.history[-1]}\n"
            f"  redis:   {redis_reply!r}\n"
            f"  nomadkv: {nomad_reply!r}\n"
            f"last commands:\n{recent}\n"
            f"replay: NOMADKV_DIFF_SEED={self.seed} pytest tests/differential",
            pytrace=False,
        )
