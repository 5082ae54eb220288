"""One client connection: bytes in, commands through the gate, replies out.

Owns the per-connection state and the hot path. Habits (STYLE.md): one
``feed`` per read, drain every complete command, one write per batch of
replies, pause reading when the peer does not read its replies.

Replies leave in the order commands arrived. A write's reply comes when its
entry commits, so while a connection has writes pending (``pending`` > 0),
further writes are proposed right behind them but anything that would reply
at once (a read, an error) waits in ``stash`` until they have committed: the
read then sees the connection's own writes.
"""

from __future__ import annotations

import itertools
import logging
import time
from itertools import chain
from time import perf_counter as _perf_counter
from typing import TYPE_CHECKING, Any

import hiredis

from nomadkv.cluster.slots import slot_of_keys
from nomadkv.commands.table import (
    COMMANDS,
    CommandError,
    CommandSpec,
    arity_error,
    lookup,
    unknown_command,
)
from nomadkv.resp.reply import CRLF, LargeBulk, Reply
from nomadkv.resp.request import ProtocolError, QueryBufferExceeded, RequestParser

if TYPE_CHECKING:
    from nomadkv.server.node import Node

log = logging.getLogger("nomadkv.client")

NOAUTH = b"-NOAUTH Authentication required.\r\n"
CROSSSLOT = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"


class Waiting:
    """What a connection's pending replies wait for."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


WRITES = Waiting("writes")  # proposed writes, answered when their entry commits
READ_INDEX = Waiting("read-index")  # linearizable reads, answered after a ReadIndex round
PROXY = Waiting("proxy")  # commands a follower forwarded to the leader
DEFERRED_REPLY = Waiting("deferred")  # a handler's own later reply (SAVE, CLUSTER MEET)
WRITE_BUFFER_HIGH = 1024 * 1024
OUTPUT_SLICE_BYTES = 1024 * 1024  # replies built in one batch before they are written
WRITE_BUFFER_LOW = 256 * 1024

# Replies a connection may have waiting (writes for their entry, reads for their
# round) before it is read no more until they are answered: a client that pipelines
# without reading otherwise made a leader hold its whole stream (760 MB in 8 s of
# small SETs, 2 GB of GET replies from 56 kB of requests) and lose its leadership.
PENDING_INPUT_LIMIT = 1024
ANSWER_FLUSH_BYTES = 16 * 1024  # a released read's reply this large is written at once
TIMED_BATCH_MASK = 15  # time one batch of commands in 16 for commandstats and metrics
_client_ids = itertools.count(1)
_COMMANDS_GET = COMMANDS.get
_join = b"".join


class CloseConnection(Exception):
    """Raised by a handler (QUIT) to send ``reply`` and then close the connection."""

    def __init__(self, reply: bytes) -> None:
        super().__init__()
        self.reply = reply


class MalformedRequest(Exception):
    """hiredis returned a value that is not a list of bytes (see RequestParser.recover)."""


def well_formed(argv: Any) -> bool:
    return argv.__class__ is list and all(arg.__class__ is bytes for arg in argv)


class Deferred:
    """Returned by a handler whose reply comes later through ``deliver``."""

    __slots__ = ()


DEFERRED = Deferred()


class Client:  # a plain class: uvloop needs only the protocol's methods (mypyc: no non-native base)
    """A RESP client connection; also the ``Session`` read handlers see.

    Slotted: attribute access on the hot path is a slot read, not a dict
    lookup (measured: _Py_dict_lookup was 8% of a GET's CPU). Add new state
    to ``__slots__``.
    """

    __slots__ = (
        "address",
        "authenticated",
        "batches",
        "bytes_in",
        "bytes_out",
        "close_after_reply",
        "closed",
        "created",
        "id",
        "input_held",
        "keyspace",
        "last_interaction_ms",
        "last_spec",
        "last_subcommand",
        "lib_name",
        "lib_ver",
        "local_address",
        "name",
        "node",
        "out",
        "parser",
        "pending",
        "pending_kind",
        "protocol_error",
        "readonly",
        "reply_queued",
        "resp3",
        "routed",
        "stash",
        "transport",
        "writing_paused",
    )

    def __init__(self, node: Node) -> None:
        config = node.config
        self.node = node
        self.keyspace = node.keyspace
        self.authenticated = not config.requirepass
        self.parser = RequestParser(
            config.proto_max_bulk_len, config.client_query_buffer_limit, self.authenticated
        )
        self.transport: Any = None  # uvloop's TCPTransport; tests pass fakes
        self.out: list[bytes] = []
        self.pending = 0
        # What the pending replies wait for (WRITES, READ_INDEX, PROXY, DEFERRED_REPLY):
        # a command may queue behind pending ones of its own kind only, so that
        # replies leave in order and a read sees the connection's earlier writes.
        self.pending_kind: Waiting | None = None
        self.routed = config.cluster_enabled
        self.readonly = False
        self.stash: list[bytes] | None = None
        self.resp3 = False
        self.id = next(_client_ids)
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.address = "?"
        self.local_address = "?"
        self.created = time.time()
        self.last_interaction_ms = int(self.created * 1000)
        self.last_spec: CommandSpec | None = None  # the last command of the last batch
        self.last_subcommand: CommandSpec | None = None  # set by container commands
        self.bytes_in = 0
        self.bytes_out = 0
        self.batches = 0
        self.close_after_reply = False
        self.closed = False
        self.writing_paused = False
        self.input_held = False  # not read while waiting replies pile up (PENDING_INPUT_LIMIT)
        self.reply_queued = False  # in node.replying, for this loop turn's burst
        # A framing error, answered once the requests before it are (Redis runs and
        # answers every complete request before the bad bytes, then closes).
        self.protocol_error: str | None = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        node = self.node
        node.stats.connections_received += 1
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.address = f"{peer[0]}:{peer[1]}"
        if isinstance(sock, tuple):
            self.local_address = f"{sock[0]}:{sock[1]}"
        if len(node.clients) >= node.config.maxclients:
            node.stats.connections_rejected += 1
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            self.closed = True
            return
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_LOW)
        node.clients[self.id] = self

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        node = self.node
        node.clients.pop(self.id, None)
        node.stats.net_input_bytes += self.bytes_in
        node.stats.net_output_bytes += self.bytes_out

    def eof_received(self) -> None:
        """The client half-closed: send what is queued for it, then close (as Redis,
        which wrote those replies before it read the end of the stream)."""
        self.flush()

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.transport is not None and not self.closed and not self.input_held:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last_interaction_ms = self.node.clock_ms
        self.bytes_in += len(data)
        if self.protocol_error is not None:
            return  # closing once the requests before the error are answered
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self.protocol_error = str(exc)
            self.process()  # the whole requests before the bad bytes
            self._protocol_error(str(exc))
            return
        except QueryBufferExceeded:
            log.warning("closing client %s that reached max query buffer length", self.address)
            self.close()
            return
        self.process()

    # -- the gate ------------------------------------------------------------

    def process(self) -> None:
        """Run every buffered command that may run now, then send the replies.

        The hot path: per command one hiredis ``gets``, one table lookup, the
        arity test and the handler. Everything unusual (errors, auth, a
        command that must wait) leaves through a slower branch.
        """
        self.batches += 1
        timed = not self.batches & TIMED_BATCH_MASK
        if timed:
            started = _perf_counter()
            ran: list[CommandSpec] = []
        out = self.out
        append_reply = out.append
        table_get = _COMMANDS_GET
        join = _join
        slice_bytes = OUTPUT_SLICE_BYTES
        node: Any = self.node  # a ClusterNode has is_leader and read
        wrote = False
        out_bytes = 0
        commands = iter(self.parser.gets, False)
        spec = None
        broken = False
        if self.stash is not None:
            commands = chain((self.stash,), commands)
            self.stash = None
        # Reads with nothing to check (authenticated, not routed, nothing pending)
        # take the short branch; anything that makes replies wait clears this.
        plain = self.authenticated and not self.routed and not self.pending
        # On a cluster leader, a one-key read needs only its place in a ReadIndex round.
        leader_reads = self.routed and self.authenticated and not self.readonly and node.is_leader
        try:
            for argv in commands:
                if not argv:
                    if argv.__class__ is list:  # "*0" is ignored, as Redis does
                        continue
                    raise MalformedRequest  # None ("*-1", "$-1"), 0, b"": see RequestParser
                # hiredis also parses nulls, integers and nested arrays as elements:
                # before a handler runs or a command waits, every argument is checked
                # to be bytes (one key alone; join raises TypeError on anything else).
                spec = table_get(argv[0]) or lookup(argv[0])
                argc = len(argv)
                if not plain or spec is None or spec.plain_read_arity != argc:
                    # Not a plain read: writes, the gate's checks, replies that wait.
                    if leader_reads and spec is not None and spec.one_key_read_arity == argc:
                        if self.pending and self.pending_kind is not READ_INDEX:
                            self.stash = argv
                            break
                        if argc == 2:
                            if argv[1].__class__ is not bytes:
                                raise MalformedRequest
                        else:
                            join(argv)
                        spec.calls += 1
                        self.pending += 1
                        self.pending_kind = READ_INDEX
                        node.read(self, spec, argv)
                        continue
                    if spec is not None and spec.write:
                        # Check it, make it deterministic, propose it.
                        if argv.__class__ is not list:
                            raise MalformedRequest
                        join(argv)  # only lists of bytes reach the log
                        prepared = argv
                        # Nothing to check (even behind other writes): plain_write_arity,
                        # an authenticated client, a standalone node or the leader.
                        if (
                            spec.plain_write_arity != argc
                            or not self.authenticated
                            or (self.routed and not node.is_leader)
                        ):
                            checked = self._check_write(spec, argv)
                            if checked.__class__ is bytes:
                                if self.pending:
                                    self.stash = argv
                                    break
                                out.append(checked)
                                continue
                            if checked is PROXY:
                                if self.pending and self.pending_kind is not PROXY:
                                    self.stash = argv
                                    break
                                self._queue(PROXY, spec, argv)
                                plain = False
                                continue
                            prepared = checked  # type: ignore[assignment]
                        if self.pending and self.pending_kind is not WRITES:
                            self.stash = argv
                            break
                        spec.calls += 1
                        if timed:
                            ran.append(spec)
                        self.pending += 1
                        self.pending_kind = WRITES
                        plain = False
                        node.proposed.append(prepared)
                        node.waiters.append(self)
                        wrote = True
                        continue
                    if spec is None or spec.arity != argc or not self.authenticated or self.routed:
                        verdict = self._gate(spec, argv)
                        if verdict.__class__ is Waiting:  # cluster mode: answered later
                            if self.pending and self.pending_kind is not verdict:
                                self.stash = argv
                                break
                            join(argv)
                            self._queue(verdict, spec, argv)  # type: ignore[arg-type]
                            plain = False
                            continue
                        if self.pending:
                            self.stash = argv
                            break
                        if verdict is not None:
                            out.append(verdict)  # type: ignore[arg-type]
                            continue
                    elif self.pending:
                        self.stash = argv
                        break
                # Run the read now.
                if argc == 2:
                    if argv[1].__class__ is not bytes:
                        raise MalformedRequest
                elif argc > 2:
                    join(argv)
                spec.calls += 1  # type: ignore[union-attr]
                if timed:
                    ran.append(spec)  # type: ignore[arg-type]
                reply: Any  # bytes, a Reply or DEFERRED: mypyc checks a declared type at run time
                try:
                    reply = spec.handler(self, argv)  # type: ignore[union-attr,arg-type,call-arg]
                except CommandError as exc:
                    spec.failed_calls += 1  # type: ignore[union-attr]
                    reply = exc.reply()
                except CloseConnection as close:  # not "exc": mypyc types a name once per function
                    out.append(close.reply)
                    self.close_after_reply = True
                    break
                except Exception:
                    if not well_formed(argv):
                        raise MalformedRequest from None
                    reply = self._internal_error(spec, argv)  # type: ignore[arg-type]
                if reply.__class__ is not bytes:
                    if reply is DEFERRED:
                        self.pending += 1
                        self.pending_kind = DEFERRED_REPLY
                        plain = False
                        continue
                    if reply.__class__ is LargeBulk:
                        self.write_large_bulk(reply)
                        out_bytes = 0
                        if self.closed:
                            break
                        continue
                    reply = reply.encode(self.resp3)
                append_reply(reply)
                out_bytes += len(reply)
                if out_bytes > slice_bytes:
                    # A pipeline of large replies: hand them to the transport
                    # now, so the output limit is enforced within the batch.
                    out_bytes = 0
                    self.flush()
                    if self.closed:
                        break
            else:  # all read: is hiredis left waiting for an absurd bulk length?
                if self.parser.has_data():
                    error = self.parser.partial_error()
                    if error is not None:
                        self._protocol_error(error)
        except (hiredis.ProtocolError, MemoryError, MalformedRequest):
            broken = True
        except (TypeError, AttributeError, KeyError):  # a value hiredis parsed that is no request
            broken = True
        if wrote and not node.flush_scheduled:
            node.schedule_flush()
        if spec is not None:
            self.last_spec = spec
        if timed and ran:
            self._account_time(ran, _perf_counter() - started)
        if broken:
            self._recover()
        pending = self.pending  # 0 for plain reads (a stash needs pending replies)
        if (
            pending
            and (pending > PENDING_INPUT_LIMIT or self.stash is not None)
            and not self.input_held
        ):
            self._hold_input()
        if out and not self.reply_queued:
            # Sent with every other client's replies once this loop turn has read
            # all it can (Node.write_replies).
            self.reply_queued = True
            replying = node.replying
            if not replying:
                node.loop.call_soon(node.write_replies)
            replying.append(self)

    def _recover(self) -> None:
        """The stream held something that is not a request: Redis's protocol error
        (and close), or, where Redis would read an inline command, resume there."""
        try:
            self.parser.recover()
        except ProtocolError as exc:
            if exc.after_requests and self.protocol_error is None:
                # The requests between the resumption point and the bad bytes wait in
                # the parser: they run (next turn, not inside this process) first.
                self.protocol_error = str(exc)
                self.node.loop.call_soon(self._answer_then_fail)
                return
            self._protocol_error(str(exc))
            return
        self.node.loop.call_soon(self.process)

    def _answer_then_fail(self) -> None:
        if self.closed or self.protocol_error is None:
            return
        self.process()
        self._protocol_error(self.protocol_error)

    @property
    def now_ms(self) -> int:
        """Now in Unix milliseconds, read when a handler asks (most never do): the
        node's read clock (Node.read_clock_ms)."""
        return self.node.read_clock_ms()

    def _queue(self, kind: Waiting, spec: CommandSpec, argv: list[bytes]) -> None:
        """Hand a command to whoever answers it later (cluster mode)."""
        spec.calls += 1
        self.pending += 1
        self.pending_kind = kind
        node: Any = self.node
        if kind is READ_INDEX:
            node.read(self, spec, argv)
        else:
            node.proxy.forward(self, argv)

    def _gate(self, spec: CommandSpec | None, argv: list[bytes]) -> bytes | Waiting | None:
        """What stops a command before its handler runs: an error reply, a Waiting
        verdict (cluster mode: READ_INDEX, PROXY), or None (run it now).
        Redis's order: unknown command, arity, authentication, cluster routing."""
        if spec is None:
            return unknown_command(argv)
        argc = len(argv)
        if argc != spec.arity if spec.arity > 0 else argc < -spec.arity:
            spec.rejected_calls += 1
            return arity_error(spec)
        if not self.authenticated and spec.needs_auth:
            spec.rejected_calls += 1
            return NOAUTH
        if self.routed:
            return self._route(spec, argv)
        return None

    def _route(self, spec: CommandSpec, argv: list[bytes]) -> bytes | Waiting | None:
        """Cluster routing, as Redis Cluster does it: keys in several slots are
        -CROSSSLOT; writes go to the leader (else -MOVED, or -CLUSTERDOWN when
        there is none; with proxy-to-leader a follower forwards them: PROXY);
        reads on the leader are linearizable (READ_INDEX); a READONLY
        connection reads whichever replica it is on, stale by design."""
        node: Any = self.node
        keys = spec.keys.keys(argv)
        if len(keys) > 1 and slot_of_keys(keys) is None:
            spec.rejected_calls += 1
            return CROSSSLOT
        if not keys and not spec.write:
            # A follower that proxies also forwards the reads of the whole keyspace
            # (DBSIZE, KEYS, SCAN, RANDOMKEY), or its clients would miss their own
            # writes; PING, INFO, CLUSTER... are answered here.
            if (
                "readonly" in spec.flags
                and not node.is_leader
                and not self.readonly
                and node.leader_id
                and node.config.proxy_to_leader
            ):
                return PROXY
            return None
        if node.is_leader:
            return None if spec.write or self.readonly else READ_INDEX
        if self.readonly and not spec.write:
            return None
        if node.leader_id and node.config.proxy_to_leader:
            return PROXY
        spec.rejected_calls += 1
        error: bytes = node.redirect_error(keys[0] if keys else None)
        return error

    def answer_read(self, spec: CommandSpec, argv: list[bytes]) -> None:
        """Run a read its ReadIndex round released and queue the reply (``deliver``
        and the handler call in one: a cluster leader does this for every read)."""
        self.pending -= 1
        if not self.pending:
            self.pending_kind = None
        if self.closed:
            return
        try:
            reply: Any = spec.handler(self, argv)  # type: ignore[arg-type,call-arg]
        except CommandError as exc:
            spec.failed_calls += 1
            reply = exc.reply()
        except Exception:
            reply = self._internal_error(spec, argv)
        if reply.__class__ is LargeBulk:
            self.write_large_bulk(reply)
            return
        data: bytes = reply if reply.__class__ is bytes else reply.encode(self.resp3)
        out = self.out
        out.append(data)
        if len(data) > ANSWER_FLUSH_BYTES or len(out) > PENDING_INPUT_LIMIT:
            self.flush()  # a round's large replies go out (and meet the output limit) as built

    def _check_write(self, spec: CommandSpec, argv: list[bytes]) -> bytes | Waiting | list[bytes]:
        """The prepared argv of a write, PROXY, or the error reply that rejects it."""
        verdict = self._gate(spec, argv)
        if verdict is not None:
            return verdict
        try:
            # Deadlines from the time the entry will carry, not the read clock (which
            # stops at the stamp of a write still waiting for its commit).
            return (
                spec.prepare(argv, self.node.entry_stamp_ms()) if spec.prepare is not None else argv
            )
        except CommandError as exc:
            spec.failed_calls += 1
            return exc.reply()

    def _internal_error(self, spec: CommandSpec, argv: list[bytes]) -> bytes:
        self.node.stats.unexpected_errors += 1
        spec.failed_calls += 1
        log.exception("internal error in %s (client %s)", spec.name, self.address)
        return b"-ERR internal error\r\n"

    def _account_time(self, ran: list[CommandSpec], elapsed_s: float) -> None:
        """Time one batch in TIMED_BATCH_MASK + 1 (timing every batch costs more
        than a GET); its time is shared evenly among its commands and scaled up."""
        count = len(ran)
        scale = TIMED_BATCH_MASK + 1
        share_us = elapsed_s * 1e6 / count * scale
        for spec in ran:
            spec.usec += share_us
        stats = self.node.stats
        stats.commands_timed += count
        stats.latency.observe(elapsed_s / count, count * scale)

    # -- replies ---------------------------------------------------------------

    def deliver(self, reply: bytes | Reply) -> None:
        """A pending reply arrives (a committed write, a released read, a finished SAVE)."""
        self.pending -= 1
        if not self.pending:
            self.pending_kind = None
        if self.closed:
            return
        self.out.append(reply if reply.__class__ is bytes else reply.encode(self.resp3))  # type: ignore[union-attr]

    def commit_done(self) -> None:
        """After a batch of deliveries: send them, and run what waited for them."""
        if self.closed:
            return
        # process() drains the parser unless it stops at a command that must wait
        # (kept in stash), so with no stash nothing complete is left to run.
        if self.stash is not None and not self.pending:
            self.process()
        elif self.out:
            self.flush()
        if self.input_held and self.stash is None and self.pending <= PENDING_INPUT_LIMIT // 2:
            self._release_input()
        if self.protocol_error is not None:
            self._protocol_error(self.protocol_error)

    def _hold_input(self) -> None:
        """Stop reading this connection: what it sent waits for earlier replies (a
        stashed command, or PENDING_INPUT_LIMIT of them), and reading on would only
        pile its stream up in the query buffer and the leader's next entry."""
        self.input_held = True
        if self.transport is not None and not self.closed and not self.writing_paused:
            self.transport.pause_reading()

    def _release_input(self) -> None:
        self.input_held = False
        if self.transport is not None and not self.closed and not self.writing_paused:
            self.transport.resume_reading()

    def flush(self) -> None:
        transport = self.transport
        out = self.out
        if transport is None or self.closed or not out:
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.bytes_out += len(data)
        transport.write(data)
        if self.close_after_reply:
            self.close()
        else:
            self._check_output_limit(transport)

    def write_large_bulk(self, reply: LargeBulk) -> None:
        """Write what is queued, then a LargeBulk's header, value and CRLF as
        references to them: no copy of the value is made."""
        self.flush()
        transport = self.transport
        if transport is None or self.closed:
            return
        value = reply.value
        header = b"$%d\r\n" % len(value)
        self.bytes_out += len(header) + len(value) + 2
        transport.writelines((header, value, CRLF))
        self._check_output_limit(transport)

    def _check_output_limit(self, transport: Any) -> None:
        if (
            self.writing_paused
            and transport.get_write_buffer_size()
            > self.node.config.client_output_buffer_limit_bytes
        ):
            log.warning("closing client %s: output buffer limit reached", self.address)
            self.close()

    def close(self) -> None:
        self.closed = True
        self.node.clients.pop(self.id, None)
        if self.transport is not None:
            self.transport.close()

    def _protocol_error(self, message: str) -> None:
        """Reply Redis's protocol error and close, once every request before it is
        answered (writes waiting for their commit included: commit_done calls back)."""
        self.protocol_error = message
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
        if self.pending or self.stash is not None or self.closed:
            return
        self.node.stats.protocol_errors += 1
        # Redis turns line ends in an error into spaces (addReplyErrorLength).
        text = message.replace("\r", " ").replace("\n", " ")
        self.out.append(b"-ERR %b\r\n" % text.encode())
        self.close_after_reply = True
        self.flush()
