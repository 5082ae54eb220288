"""REST operations as commands: the sidecar's one way into the node.

Owns running a command for an HTTP request exactly as a RESP connection
would (server/client.py): look the command up in the table, run a read
handler at once, or run a write's ``prepare`` and propose it through the
node's write path (one log entry per loop turn, group-commit fsync, apply),
then wait for the reply the state machine gives when the entry commits. The
reply is decoded from RESP with hiredis, so the HTTP answer is whatever the
command answered, errors included.

Never touches the keyspace except through command handlers, never blocks
the event loop, never writes anything the log has not seen.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import hiredis

from nomadkv.commands.table import CommandError, CommandSpec, ReplyT, lookup
from nomadkv.keyspace import Keyspace

if TYPE_CHECKING:
    from nomadkv.server.node import Node


class CommandFailed(Exception):
    """The command answered an error reply; ``message`` starts with its code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> str:
        return self.message.split(" ", 1)[0]


class NodeUnavailable(Exception):
    """The node cannot take writes now (it is shutting down)."""


class ReadSession:
    """What a read handler sees of its caller (commands.context.Session)."""

    __slots__ = ("keyspace", "now_ms", "resp3")

    def __init__(self, keyspace: Keyspace, now_ms: int) -> None:
        self.keyspace = keyspace
        self.now_ms = now_ms
        self.resp3 = False


class CommitWaiter:
    """Stands where a client stands in the node's waiter list: the node calls
    ``deliver`` with the reply when the entry commits, then ``commit_done``."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[ReplyT]) -> None:
        self.future = future

    def deliver(self, reply: ReplyT) -> None:
        if not self.future.done():  # the request may have been cancelled meanwhile
            self.future.set_result(reply)

    def commit_done(self) -> None:
        """Nothing to flush: the reply is already in the future."""


def decode_reply(reply: ReplyT) -> Any:
    """The Python value of a RESP2 reply; an error reply raises CommandFailed."""
    reader = hiredis.Reader()
    reader.feed(reply if isinstance(reply, bytes) else reply.encode(False))
    value = reader.gets()
    if isinstance(value, hiredis.ReplyError):
        raise CommandFailed(str(value))
    return value


def wall_ms() -> int:
    return int(time.time() * 1000)


class Gateway:
    """Runs commands for the sidecar on one node, counted like RESP commands."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node

    def _spec(self, argv: list[bytes]) -> CommandSpec:
        spec = lookup(argv[0])
        if spec is None:
            raise LookupError(f"command {argv[0]!r} is not in the command table")
        return spec

    def _account(self, spec: CommandSpec, started_s: float) -> None:
        elapsed_s = time.perf_counter() - started_s
        spec.calls += 1
        spec.usec += elapsed_s * 1e6
        stats = self.node.stats
        stats.commands_timed += 1
        stats.latency.observe(elapsed_s)

    def read(self, argv: list[bytes], now_ms: int) -> Any:
        """Run a read command now, against the keyspace as of ``now_ms``."""
        spec = self._spec(argv)
        started_s = time.perf_counter()
        try:
            reply = spec.handler(ReadSession(self.node.keyspace, now_ms), argv)  # type: ignore[call-arg,arg-type]
        except CommandError as exc:
            spec.failed_calls += 1
            reply = exc.reply()
        self._account(spec, started_s)
        return decode_reply(reply)

    async def write(self, argv: list[bytes]) -> Any:
        """Prepare, propose and wait for a write to commit; its decoded reply."""
        node = self.node
        if node.shutting_down:
            raise NodeUnavailable("the node is shutting down")
        spec = self._spec(argv)
        started_s = time.perf_counter()
        if spec.prepare is not None:
            try:
                argv = spec.prepare(argv, wall_ms())
            except CommandError as exc:
                spec.failed_calls += 1
                raise CommandFailed(exc.message) from None
        future: asyncio.Future[ReplyT] = node.loop.create_future()
        node.propose(CommitWaiter(future), argv)  # type: ignore[arg-type]
        self._account(spec, started_s)
        return decode_reply(await future)
