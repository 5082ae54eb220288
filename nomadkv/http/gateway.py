"""REST operations as commands: the sidecar's one way into the node.

Owns running a command for an HTTP request exactly as a RESP connection
would (server/client.py): look the command up in the table, route it, then
either run a read handler or run a write's ``prepare`` and propose it through
the node's write path (one log entry per loop turn, group-commit fsync or a
Raft majority, apply), and wait for the reply the state machine gives when
the entry commits. Replies are decoded from RESP with hiredis, so the HTTP
answer is whatever the command answered, errors included.

Routing follows the RESP gate: a standalone node runs everything locally; in
cluster mode writes go to the leader only, and reads on the leader are
linearizable (they wait for a ReadIndex round, ``ClusterNode.read``). A
follower, or a cluster without a leader, makes the operation fail with
``NodeUnavailable`` carrying the -MOVED / -CLUSTERDOWN text.

Never touches the keyspace except through command handlers, never blocks
the event loop, never writes anything the log has not seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import hiredis

from nomadkv.commands.table import CommandError, CommandSpec, ReplyT, lookup
from nomadkv.keyspace import Keyspace
from nomadkv.server.cluster_node import LOST

if TYPE_CHECKING:
    from nomadkv.server.node import Node

T = TypeVar("T")

# Error codes that mean "not here, not now": the operation may succeed elsewhere or later.
UNAVAILABLE_CODES = frozenset({"MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN"})


class CommandFailed(Exception):
    """The command answered an error reply; ``message`` starts with its code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> str:
        return self.message.split(" ", 1)[0]


class NodeUnavailable(Exception):
    """This node cannot serve the operation now: it is shutting down, it is not
    the leader, or the cluster has none. The message says which (Redis's text)."""


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

    def flush(self) -> None:
        pass  # as commit_done

    def close(self) -> None:
        """The node cannot tell this write's fate (a snapshot replaced the entries
        around it): the request fails as a client's connection would close."""
        if not self.future.done():
            self.future.set_exception(
                NodeUnavailable(
                    "the write's fate is unknown (leadership changed); check, then retry"
                )
            )


class ReadWaiter(CommitWaiter, Generic[T]):
    """Stands where a client stands in a ReadIndex round: once the round confirms
    leadership and the index is applied, the node calls ``answer_read``.
    ``observe`` runs right after the handler, on the same state (the key's
    deadline, for instance)."""

    __slots__ = ("gateway", "observe", "observed")

    def __init__(
        self,
        future: asyncio.Future[ReplyT],
        gateway: Gateway,
        observe: Callable[[ReadSession], T],
    ) -> None:
        super().__init__(future)
        self.gateway = gateway
        self.observe = observe
        self.observed: T | None = None

    def answer_read(self, spec: CommandSpec, argv: list[bytes]) -> None:
        reply, self.observed = self.gateway.run_read(spec, argv, self.observe)
        self.deliver(reply)


def decode_reply(reply: ReplyT) -> Any:
    """The Python value of a RESP2 reply; an error reply raises CommandFailed,
    or NodeUnavailable when it means the operation belongs elsewhere or later."""
    if reply == LOST:
        raise NodeUnavailable(LOST[1:-2].decode())
    reader = hiredis.Reader()
    reader.feed(reply if isinstance(reply, bytes) else reply.encode(False))
    value = reader.gets()
    if isinstance(value, hiredis.ReplyError):
        failed = CommandFailed(str(value))
        if failed.code in UNAVAILABLE_CODES:
            raise NodeUnavailable(failed.message)
        raise failed
    return value


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

    def _route(self, spec: CommandSpec, argv: list[bytes]) -> bool:
        """Route as the RESP gate does: True for a read that must wait for a
        ReadIndex round; NodeUnavailable when this node may not serve it."""
        node: Any = self.node
        if node.shutting_down:
            raise NodeUnavailable("the node is shutting down")
        if not node.config.cluster_enabled:
            return False
        if node.is_leader:
            return not spec.write
        spec.rejected_calls += 1
        keys = spec.keys.keys(argv)
        redirect: bytes = node.redirect_error(keys[0] if keys else None)
        raise NodeUnavailable(redirect[1:-2].decode())

    def _account(self, spec: CommandSpec, started_s: float) -> None:
        elapsed_s = time.perf_counter() - started_s
        spec.calls += 1
        spec.usec += elapsed_s * 1e6
        stats = self.node.stats
        stats.commands_timed += 1
        stats.latency.observe(elapsed_s)

    def run_read(
        self, spec: CommandSpec, argv: list[bytes], observe: Callable[[ReadSession], T]
    ) -> tuple[ReplyT, T]:
        """Run a read handler now, then ``observe`` on the same state."""
        started_s = time.perf_counter()
        session = ReadSession(self.node.keyspace, self.node.read_clock_ms())
        try:
            reply = spec.handler(session, argv)  # type: ignore[call-arg,arg-type]
        except CommandError as exc:
            spec.failed_calls += 1
            reply = exc.reply()
        observed = observe(session)
        self._account(spec, started_s)
        return reply, observed

    async def read(self, argv: list[bytes], observe: Callable[[ReadSession], T]) -> tuple[Any, T]:
        """A read command's decoded reply, and what ``observe`` saw on the same state."""
        spec = self._spec(argv)
        if not self._route(spec, argv):
            reply, observed = self.run_read(spec, argv, observe)
            return decode_reply(reply), observed
        future: asyncio.Future[ReplyT] = self.node.loop.create_future()
        waiter = ReadWaiter(future, self, observe)
        self.node.read(waiter, spec, argv)  # type: ignore[attr-defined]
        value = decode_reply(await future)  # a failed round raises before observed is used
        return value, waiter.observed  # type: ignore[return-value]

    async def write(self, argv: list[bytes]) -> Any:
        """Prepare, propose and wait for a write to commit; its decoded reply."""
        node = self.node
        spec = self._spec(argv)
        self._route(spec, argv)
        started_s = time.perf_counter()
        if spec.prepare is not None:
            try:
                argv = spec.prepare(argv, self.node.entry_stamp_ms())
            except CommandError as exc:
                spec.failed_calls += 1
                raise CommandFailed(exc.message) from None
        future: asyncio.Future[ReplyT] = node.loop.create_future()
        node.propose(CommitWaiter(future), argv)
        self._account(spec, started_s)
        return decode_reply(await future)
