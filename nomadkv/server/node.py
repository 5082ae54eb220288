"""The node runtime: recovery, the write path, expiry and snapshots.

Owns the event-loop side of one NomadKV node: it is the only place (with
``client``) that knows about the loop, wall time, threads and processes.

The path of a write, kept in this order on purpose:

    client.propose -> Node.propose (collect the loop turn's commands)
      -> _flush: one log entry for the whole turn, one write(2)
      -> persisted: fsync at the end of the loop turn (appendfsync always;
         group commit: one fsync covers every write of the turn)
      -> committed -> StateMachine.apply -> replies to the waiting clients

With ``appendfsync everysec`` or ``no`` an entry commits as soon as it is
written. The single-member commit rule here ("persisted locally") is what a
Raft group replaces: it commits on a majority's fsync instead; command
handlers never know which.

A failed log write or fsync stops the process at once (``fail_stop``): after
an fsync error the kernel may have dropped the unwritten pages, so nothing
may be acknowledged again, and a retried fsync that "succeeds" proves
nothing. Restarting recovers what is durable. Snapshot children die with
the node (PR_SET_PDEATHSIG) and leave only a temporary file behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from mypy_extensions import mypyc_attr

from nomadkv.commands.keys import EXPIRED
from nomadkv.commands.machine import BadEntry, StateMachine, encode_entry
from nomadkv.config import Config
from nomadkv.keyspace import Keyspace
from nomadkv.server.stats import Stats
from nomadkv.storage.log import CorruptLog, Log
from nomadkv.storage.recovery import Chunks, lock_data_dir
from nomadkv.storage.recovery import recover as recover_storage
from nomadkv.storage.snapshot import (
    list_snapshots,
    prune,
    read_snapshot,
    remove_abandoned_temporaries,
    write_snapshot,
)

if TYPE_CHECKING:
    from nomadkv.commands.table import CommandSpec
    from nomadkv.resp.reply import Reply
    from nomadkv.server.client import Client

log = logging.getLogger("nomadkv.node")

KIND_COMMANDS = 1
TERM = 1  # a single member never changes term
EXPIRY_INTERVAL_S = 0.1
CLOCK_INTERVAL_S = 0.05  # resolution of clock_ms: client idle times and timeouts
EXPIRY_KEYS_PER_CYCLE = 1000
EXPIRY_CYCLE_BUDGET_S = 0.025
STORAGE_FAILURE_EXIT = 1  # as Redis when it cannot write or fsync its AOF
PR_SET_PDEATHSIG = 1
# Loop turns a group commit may wait for writes still arriving: an fsync
# (Node._sync_written) or a cluster leader's next entry (ClusterNode._flush).
GATHER_TURNS_MAX = 3
SNAPSHOT_RETRY_DELAY_S = (
    5.0  # after a failed automatic snapshot, as Redis's CONFIG_BGSAVE_RETRY_DELAY
)


class Waiter(Protocol):
    """Who waits for a write's reply: a client connection, or the HTTP sidecar's
    CommitWaiter. A protocol, not Client: compiled, a Client annotation is checked
    at run time and refuses the sidecar's waiter."""

    def deliver(self, reply: bytes | Reply) -> None: ...

    def commit_done(self) -> None:
        """After a batch of deliveries: send them."""

    def flush(self) -> None: ...

    def close(self) -> None:
        """Hang up: what it waits for will never be told (its fate is unknown)."""


class Reader(Waiter, Protocol):
    """Who waits in a cluster leader's ReadIndex round."""

    def answer_read(self, spec: CommandSpec, argv: list[bytes]) -> None: ...


def wall_ms() -> int:
    return int(time.time() * 1000)


class SnapshotInProgress(Exception):
    pass


def keyspace_from_chunks(meta: dict[str, Any], chunks: Chunks) -> Keyspace:
    """Build a keyspace from a snapshot's chunks (all of them: the last check is at the end)."""
    keyspace = Keyspace()
    restore = keyspace.restore_chunk
    for kind, chunk in chunks:
        restore(kind, chunk)
    keyspace.rebuild_deadline_heap()
    return keyspace


def load_snapshot(path: str) -> tuple[dict[str, Any], Keyspace]:
    """A snapshot file's metadata and the keyspace it holds; raises CorruptSnapshot."""
    meta, chunks = read_snapshot(path)
    return meta, keyspace_from_chunks(meta, chunks)


def _die_with_parent(parent_pid: int) -> None:
    """In a forked child: be killed when the parent dies, so that a crashed
    node leaves no snapshot writer running (its temporary file is removed at
    the next start)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


@mypyc_attr(allow_interpreted_subclasses=True)  # ClusterNode
class Node:
    """One NomadKV node: a keyspace behind a durable log."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.keyspace = Keyspace()
        self.machine = StateMachine(self.keyspace)
        self.machine.on_internal_error = self._apply_failed
        self.log = Log(os.path.join(config.dir, "log"), config.log_segment_bytes)
        self.snapshot_dir = os.path.join(config.dir, "snapshots")
        self.stats = Stats()
        self.clients: dict[int, Client] = {}
        # A coarse wall clock (Unix ms) for bookkeeping that need not read the
        # real one per request: when a client last sent something.
        self.clock_ms = wall_ms()
        self.started_at = time.time()
        self.shutting_down = False
        # Commands proposed during this loop turn and who waits for each reply;
        # clients append to these lists directly (the hot path), then call
        # schedule_flush(). They are emptied in place, never replaced.
        self.proposed: list[list[bytes]] = []
        self.waiters: list[Waiter | None] = []
        self.flush_scheduled = False
        # Clients whose replies wait for this loop turn's burst (queued by Client.process).
        self.replying: list[Client] = []
        self._last_entry_ms = 0
        # Entries written but not yet committed:
        # (index, now_ms, commands, waiters, perf_counter when proposed).
        self._unsynced: deque[tuple[int, int, list[list[bytes]], list[Waiter | None], float]] = (
            deque()
        )
        self._everysec_dirty = False
        self._sync_scheduled = False
        self._gather_turns = 0
        self.synced_index = 0
        # Snapshots.
        self.snapshot_index = 0
        self.last_snapshot_at = time.time()
        self.last_snapshot_ok = True
        self._snapshot_failed_at = 0.0
        self.last_snapshot_seconds = 0.0
        self._snapshot_child: tuple[int, int, int, float] | None = None  # pid, pidfd, index, t0
        self._snapshot_waiters: list[Callable[[bool], None]] = []
        self._timers: list[asyncio.TimerHandle] = []
        self.loading_seconds = 0.0
        # Set by the process entry point: SHUTDOWN and signals call it.
        self.request_shutdown: Callable[[], None] = lambda: None
        # Storage failed (fail_stop): nothing may be written or acknowledged again.
        self.failed = False
        self.exit_process: Callable[[int], None] = os._exit
        self._dir_lock = -1  # holds <dir>/LOCK while this node runs

    # -- start-up --------------------------------------------------------------

    def recover(self) -> None:
        """Load the newest intact snapshot, then replay the log after it.

        Raises CorruptLog (with the way to repair) when the log is damaged
        before its tail or does not connect to the snapshot.
        """
        started = time.perf_counter()
        self._dir_lock = lock_data_dir(self.config.dir)
        recovered = recover_storage(self.log, self.snapshot_dir, keyspace_from_chunks)
        for damaged in recovered.damaged_snapshots:
            log.warning("set aside a damaged snapshot (renamed *.damaged): %s", damaged)
        if self.log.torn_bytes_truncated:
            log.warning(
                "cut a torn write of %d bytes off the log's tail: %s",
                self.log.torn_bytes_truncated,
                self.log.torn_problem,
            )
        if recovered.log_reset:
            log.warning(
                "the log ended before the snapshot's index %d (its tail was not durable); "
                "it continues after the snapshot",
                recovered.snapshot_index,
            )
        if recovered.state is not None and recovered.snapshot_path is not None:
            self.keyspace.adopt(recovered.state)
            self.machine.applied_index = recovered.snapshot_index
            self.machine.stamp_ms = recovered.snapshot_meta.get("stamp_ms", 0)
            self.snapshot_index = recovered.snapshot_index
            self.last_snapshot_at = os.path.getmtime(recovered.snapshot_path)
            log.info(
                "loaded snapshot %s: %d keys at index %d in %.2f s",
                recovered.snapshot_path,
                len(self.keyspace),
                recovered.snapshot_index,
                time.perf_counter() - started,
            )
        self._replay_log()
        self.synced_index = self.log.last_index
        self.keyspace.expired_seen.clear()
        self.loading_seconds = time.perf_counter() - started
        log.info(
            "recovered %d keys, applied index %d, in %.2f s",
            len(self.keyspace),
            self.machine.applied_index,
            self.loading_seconds,
        )

    def _replay_log(self) -> None:
        machine = self.machine
        apply_payload, skip = machine.apply_payload, machine.skip
        record = None
        try:
            for record in self.log.read(machine.applied_index + 1):
                if record.kind == KIND_COMMANDS:
                    apply_payload(record.index, record.payload)
                else:
                    skip(record.index)
        except BadEntry as exc:
            index = record.index if record is not None else machine.applied_index + 1
            raise CorruptLog(
                f"log record {index} passed its checksum but cannot be applied ({exc}): it was "
                "written by an incompatible version, or by a bug. The log after it is intact; "
                "do not repair it, report it."
            ) from None

    def _apply_failed(self, index: int, argv: list[bytes], error: Exception) -> None:
        self.stats.unexpected_errors += 1
        log.error("internal error applying %r at index %d", argv[0], index, exc_info=error)

    def _update_clock(self) -> None:
        self.clock_ms = wall_ms()

    def start_timers(self) -> None:
        self._every(CLOCK_INTERVAL_S, self._update_clock)
        self._every(EXPIRY_INTERVAL_S, self._expiry_cycle)
        self._every(1.0, self._second_tick)

    def _every(self, interval: float, callback: Callable[[], None]) -> None:
        def run() -> None:
            try:
                callback()
            except Exception:
                log.exception("periodic task %s failed", callback.__name__)
            if not self.shutting_down:
                self._timers.append(self.loop.call_later(interval, run))

        self._timers.append(self.loop.call_later(interval, run))

    # -- the write path --------------------------------------------------------

    def propose(self, client: Waiter | None, argv: list[bytes]) -> None:
        """Queue a prepared write; its reply goes to ``client.deliver`` once committed."""
        self.proposed.append(argv)
        self.waiters.append(client)
        self.schedule_flush()

    def write_replies(self) -> None:
        """Send the replies the clients that were read this loop turn queued.

        As Redis does (handleClientsWithPendingWrites before it sleeps): every
        readable connection is served first, then the replies leave back to
        back, so a client process woken by the first finds the others waiting
        instead of being woken once per reply. Measured with redis-benchmark
        -t get -c 50 -P 1: 104-106k -> 119-122k req/s, 5.2-5.9 -> 4.5-4.8 us
        of kernel time per request (docs/benchmarks.md).
        """
        clients, self.replying = self.replying, []
        for client in clients:
            client.reply_queued = False
            client.flush()

    def schedule_flush(self) -> None:
        """Write this loop turn's proposals as one entry once the turn's reads are done."""
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if not self.proposed or self.failed:
            return
        commands, waiters = self.proposed[:], self.waiters[:]
        self.proposed.clear()
        self.waiters.clear()
        now_ms = self.entry_stamp_ms()
        self._last_entry_ms = now_ms
        index = self.log.last_index + 1
        try:
            written = self.log.append(
                [(index, TERM, KIND_COMMANDS, encode_entry(now_ms, commands))]
            )
        except OSError as exc:
            self.fail_stop(f"writing to the log failed: {exc}")
            return
        self.stats.log_bytes_written += written
        self._unsynced.append((index, now_ms, commands, waiters, time.perf_counter()))
        if self.config.appendfsync == "always":
            if not self._sync_scheduled:
                self._sync_scheduled = True
                self.loop.call_soon(self._sync_written)
        else:
            self._everysec_dirty = True
            self._commit_through(index)

    def _sync_written(self) -> None:
        """appendfsync always: fsync the entries written, then apply and answer them.

        Group commit on the loop's own thread, once every readable connection has
        been served. The fsync waits one more loop turn (up to GATHER_TURNS_MAX)
        while the turn just run brought new writes: those write their entry and
        join this fsync instead of waiting a whole fsync for the next one. Without
        it, 50 clients sending one write each settle into two halves that take
        turns (28 writes per fsync against redis-server's 48, docs/decisions.md).
        """
        if self.shutting_down or self.failed:
            return  # shutdown() syncs and commits everything written
        if self.flush_scheduled:
            self._flush()
            if self._gather_turns < GATHER_TURNS_MAX:
                self._gather_turns += 1
                self.loop.call_soon(self._sync_written)
                return
        self._gather_turns = 0
        self._sync_scheduled = False
        if self.sync_log():
            self._commit_through(self.log.last_index)

    def sync_log(self) -> bool:
        """fsync everything written so far; False (and the node exits) if it fails.

        On the loop's own thread, as Redis does it. Measured against an fsync
        worker thread (docs/decisions.md): 1.2-1.3x the throughput and a third
        less CPU per write, because handing each fsync to a thread and back
        costs more than the fsync itself blocks.
        """
        upto = self.log.last_index
        try:
            self.log.sync()
        except OSError as exc:
            self.stats.fsync_errors += 1
            self.fail_stop(f"fsync of the log failed: {exc!r}")
            return False
        self.stats.fsyncs += 1
        self.synced_index = max(self.synced_index, upto)
        return True

    def fail_stop(self, reason: str) -> None:
        """The log can no longer be trusted to hold what it is given: exit now.

        Replies not yet sent never will be (their writes may or may not be on
        disk: the client saw no acknowledgement), and no fsync is retried.
        """
        self.failed = True
        log.critical("%s; exiting: no further write can be acknowledged safely", reason)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self.exit_process(STORAGE_FAILURE_EXIT)

    def _commit_through(self, index: int) -> None:
        unsynced = self._unsynced
        touched: set[Waiter] = set()
        write_latency = self.stats.write_latency
        now = time.perf_counter()
        while unsynced and unsynced[0][0] <= index:
            entry_index, now_ms, commands, waiters, proposed_at = unsynced.popleft()
            replies = self.machine.apply(entry_index, now_ms, commands)
            write_latency.observe(now - proposed_at, len(commands))
            for client, reply in zip(waiters, replies, strict=True):
                if client is not None:
                    client.deliver(reply)
                    touched.add(client)
        for client in touched:
            client.commit_done()

    def _sync_everysec(self) -> None:
        """appendfsync everysec: fsync what was written in the last second."""
        if self._everysec_dirty and not self.failed:
            self._everysec_dirty = False
            self.sync_log()

    # -- time --------------------------------------------------------------------

    def entry_stamp_ms(self) -> int:
        """The now_ms of the next entry: the wall clock, but never behind an entry
        already written or applied, so that expiry never goes back in time."""
        return max(wall_ms(), self._last_entry_ms, self.machine.stamp_ms)

    def read_clock_ms(self) -> int:
        """Now, for reads and TTLs: never behind the state's own clock, and never
        past the stamp of a write already stamped but not yet applied. Reads are
        ordered before such a write; a read that saw a key expire at its own later
        time, then the write applied at its earlier one (PERSIST just before the
        deadline), would bring back a key a client had seen gone."""
        now = max(wall_ms(), self.machine.stamp_ms)
        pending = self.oldest_unapplied_stamp_ms()
        return now if pending is None or pending >= now else pending

    def oldest_unapplied_stamp_ms(self) -> int | None:
        return self._unsynced[0][1] if self._unsynced else None

    # -- expiry ----------------------------------------------------------------

    def _expiry_cycle(self) -> None:
        """Propose the deletion of keys past their deadline (Redis's active expiry):
        batches of EXPIRY_KEYS_PER_CYCLE while keys are due, for up to
        EXPIRY_CYCLE_BUDGET_S (a quarter of the interval, as Redis's slow cycle), each
        batch cut to fit in a log entry."""
        started = time.perf_counter()
        now_ms = self.read_clock_ms()
        budget = self.config.raft_max_entry_bytes // 2
        while True:
            due = self.keyspace.due_for_expiry(now_ms, EXPIRY_KEYS_PER_CYCLE)
            if not due:
                return
            self.stats.expired_keys += len(due)
            batch: list[bytes] = [EXPIRED]
            size = 0
            for key in due:
                if size and size + len(key) > budget:
                    self.propose(None, batch)
                    batch, size = [EXPIRED], 0
                batch.append(key)
                size += len(key) + 16
            self.propose(None, batch)
            if len(due) < EXPIRY_KEYS_PER_CYCLE or time.perf_counter() - started > (
                EXPIRY_CYCLE_BUDGET_S
            ):
                return

    def _second_tick(self) -> None:
        if self.config.appendfsync == "everysec":
            self._sync_everysec()
        self._maybe_snapshot()
        self._close_idle_clients()

    def _close_idle_clients(self) -> None:
        timeout_ms = self.config.timeout * 1000
        if not timeout_ms:
            return
        now = wall_ms()
        for client in list(self.clients.values()):
            if now - client.last_interaction_ms > timeout_ms and not client.pending:
                client.close()

    # -- snapshots -------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        if self._snapshot_child is not None:
            return
        if (
            not self.last_snapshot_ok
            and time.time() < self._snapshot_failed_at + SNAPSHOT_RETRY_DELAY_S
        ):
            return
        changed = self.machine.applied_index > self.snapshot_index
        grown = self.log.bytes_after(self.snapshot_index)
        by_size = 0 < self.config.snapshot_after_log_bytes <= grown
        interval = self.config.snapshot_interval_seconds
        by_time = interval > 0 and time.time() - self.last_snapshot_at >= interval
        if changed and (by_size or by_time):
            self.start_snapshot()

    @property
    def snapshot_in_progress(self) -> bool:
        return self._snapshot_child is not None

    def when_snapshot_done(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(ok)`` when the snapshot in progress ends (SHUTDOWN SAVE)."""
        self._snapshot_waiters.append(callback)

    def start_snapshot(self, on_done: Callable[[bool], None] | None = None) -> None:
        """Write a snapshot of the applied state from a forked child (copy-on-write,
        as Redis's BGSAVE), so clients are never blocked by it."""
        if self._snapshot_child is not None:
            raise SnapshotInProgress
        if on_done is not None:
            self._snapshot_waiters.append(on_done)
        index = self.machine.applied_index
        term, meta = self.snapshot_meta(index)
        self.log.roll()
        started = time.perf_counter()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: write and leave without running any parent cleanup
            status = 1
            try:
                gc.disable()  # a collection would touch (and copy) every shared page
                _die_with_parent(parent)
                # Let go of the listening and client sockets and the log: a client
                # must see the node's death at once, and a restarted node must be
                # able to listen again, even while this child still writes.
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                write_snapshot(
                    self.snapshot_dir, index, term, self.keyspace.snapshot_chunks(), meta
                )
                status = 0
            except OSError as exc:  # a full disk, a failing one: one line says which
                sys.stderr.write(f"snapshot child {os.getpid()} of index {index} failed: {exc}\n")
                sys.stderr.flush()
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(status)
        pidfd = os.pidfd_open(pid)
        self._snapshot_child = (pid, pidfd, index, started)
        self.loop.add_reader(pidfd, self._snapshot_child_exited)

    def snapshot_meta(self, index: int) -> tuple[int, dict[str, Any]]:
        """The term of entry ``index`` and the metadata a snapshot of it records."""
        return TERM, {
            "created_ms": wall_ms(),
            "keys": len(self.keyspace),
            "stamp_ms": self.machine.stamp_ms,
        }

    def snapshot_written(self, index: int) -> None:
        """A snapshot of ``index`` is durable (and older ones pruned): drop the
        log that the next older snapshot covers. The log since that one stays,
        so that if the newest snapshot is ever found damaged, recovery falls
        back to the older one and replays the log, losing nothing."""
        older = [i for i, _ in list_snapshots(self.snapshot_dir) if i < index]
        if older:
            self.log.compact(older[0])

    def _snapshot_child_exited(self) -> None:
        if self._snapshot_child is None:
            return
        pid, pidfd, index, started = self._snapshot_child
        self.loop.remove_reader(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self._snapshot_child = None
        ok = os.waitstatus_to_exitcode(status) == 0
        self.last_snapshot_ok = ok
        self.last_snapshot_seconds = time.perf_counter() - started
        if ok:
            self.snapshot_index = index
            self.last_snapshot_at = time.time()
            self.stats.snapshots += 1
            prune(self.snapshot_dir)
            self.snapshot_written(index)
            log.info("snapshot at index %d written in %.2f s", index, self.last_snapshot_seconds)
        else:
            self._snapshot_failed_at = time.time()
            remove_abandoned_temporaries(self.snapshot_dir, pid)
            log.error(
                "snapshot child exited with status %d",
                os.waitstatus_to_exitcode(status),
            )
        waiters, self._snapshot_waiters = self._snapshot_waiters, []
        for waiter in waiters:
            waiter(ok)

    # -- shutdown --------------------------------------------------------------

    async def shutdown(self) -> None:
        """Commit what was proposed, fsync, close the log. Idempotent.

        A snapshot still being written is abandoned (as Redis kills its
        BGSAVE child on shutdown): the log holds everything it would have.
        """
        if self.shutting_down:
            return
        self.shutting_down = True
        for timer in self._timers:
            timer.cancel()
        self._stop_snapshot_child()
        if self.failed:
            return
        self._flush()
        if self.failed or not self.sync_log():
            return
        self._commit_through(self.log.last_index)
        self.log.close()
        if self._dir_lock >= 0:
            os.close(self._dir_lock)
            self._dir_lock = -1

    def _stop_snapshot_child(self) -> None:
        if self._snapshot_child is None:
            return
        pid, pidfd, _, _ = self._snapshot_child
        self._snapshot_child = None
        self.loop.remove_reader(pidfd)
        os.close(pidfd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        remove_abandoned_temporaries(self.snapshot_dir, pid)
        log.warning("abandoned the snapshot in progress (child %d)", pid)
        waiters, self._snapshot_waiters = self._snapshot_waiters, []
        for waiter in waiters:
            waiter(False)

    # -- introspection ---------------------------------------------------------

    def info_persistence(self) -> dict[str, Any]:
        return {
            "loading": 0,
            "async_loading": 0,
            "rdb_changes_since_last_save": self.machine.applied_index - self.snapshot_index,
            "rdb_bgsave_in_progress": int(self._snapshot_child is not None),
            "rdb_last_save_time": int(self.last_snapshot_at),
            "rdb_last_bgsave_status": "ok" if self.last_snapshot_ok else "err",
            "rdb_last_bgsave_time_sec": round(self.last_snapshot_seconds),
            "aof_enabled": 1,
            "aof_rewrite_in_progress": 0,
            "aof_last_write_status": "ok" if not self.stats.fsync_errors else "err",
            "appendfsync": self.config.appendfsync,
            "log_first_index": self.log.first_index,
            "log_last_index": self.log.last_index,
            "log_size_bytes": self.log.size_bytes,
            "applied_index": self.machine.applied_index,
            "synced_index": self.synced_index,
            "snapshot_index": self.snapshot_index,
            "fsyncs": self.stats.fsyncs,
            "loading_seconds": round(self.loading_seconds, 3),
        }
