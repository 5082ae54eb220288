"""The node runtime: recovery, the write path, expiry and snapshots.

Owns the event-loop side of one NomadKV node: it is the only place (with
``client``) that knows about the loop, wall time, threads and processes.

The path of a write, kept in this order on purpose:

    client.propose -> Node.propose (collect the loop turn's commands)
      -> _flush: one log entry for the whole turn, one write(2)
      -> persisted: fsync on a worker thread (appendfsync always; group
         commit: one fsync covers every entry written before it started)
      -> committed -> StateMachine.apply -> replies to the waiting clients

With ``appendfsync everysec`` or ``no`` an entry commits as soon as it is
written. The single-member commit rule here ("persisted locally") is what a
Raft group replaces: it commits on a majority's fsync instead; command
handlers never know which.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from nomadkv.commands.keys import EXPIRED
from nomadkv.commands.machine import StateMachine, encode_entry
from nomadkv.config import Config
from nomadkv.keyspace import Keyspace
from nomadkv.server.stats import Stats
from nomadkv.storage.log import CorruptLog, Log
from nomadkv.storage.snapshot import (
    CorruptSnapshot,
    list_snapshots,
    prune,
    read_snapshot,
    write_snapshot,
)

if TYPE_CHECKING:
    from nomadkv.server.client import Client

log = logging.getLogger("nomadkv.node")

KIND_COMMANDS = 1
TERM = 1  # a single member never changes term
EXPIRY_INTERVAL_S = 0.1
EXPIRY_KEYS_PER_CYCLE = 1000


def wall_ms() -> int:
    return int(time.time() * 1000)


class SnapshotInProgress(Exception):
    pass


def load_snapshot(path: str) -> tuple[dict[str, Any], Keyspace]:
    """A snapshot file's metadata and the keyspace it holds; raises CorruptSnapshot."""
    keyspace = Keyspace()
    meta, chunks = read_snapshot(path)
    for kind, chunk in chunks:
        keyspace.restore_chunk(kind, chunk)
    keyspace.rebuild_deadline_heap()
    return meta, keyspace


class Node:
    """One NomadKV node: a keyspace behind a durable log."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.keyspace = Keyspace()
        self.machine = StateMachine(self.keyspace)
        self.log = Log(os.path.join(config.dir, "log"), config.log_segment_bytes)
        self.snapshot_dir = os.path.join(config.dir, "snapshots")
        self.stats = Stats()
        self.clients: dict[int, Client] = {}
        self.started_at = time.time()
        self.shutting_down = False
        # Commands proposed during this loop turn and who waits for each reply;
        # clients append to these lists directly (the hot path), then call
        # schedule_flush(). They are emptied in place, never replaced.
        self.proposed: list[list[bytes]] = []
        self.waiters: list[Client | None] = []
        self._flush_scheduled = False
        self._last_entry_ms = 0
        # Entries written but not yet committed: (index, now_ms, commands, waiters).
        # Entries written but not yet committed:
        # (index, now_ms, commands, waiters, perf_counter when proposed).
        self._unsynced: deque[tuple[int, int, list[list[bytes]], list[Client | None], float]] = (
            deque()
        )
        self._fsync_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._fsync_running = False
        self._fsync_future: asyncio.Future[None] | None = None
        self._everysec_dirty = False
        self.synced_index = 0
        # Snapshots.
        self.snapshot_index = 0
        self.last_snapshot_at = time.time()
        self.last_snapshot_ok = True
        self.last_snapshot_seconds = 0.0
        self._snapshot_child: tuple[int, int, int, float] | None = None  # pid, pidfd, index, t0
        self._snapshot_waiters: list[Callable[[bool], None]] = []
        self._log_bytes_at_snapshot = 0
        self._timers: list[asyncio.TimerHandle] = []
        self.loading_seconds = 0.0
        # Set by the process entry point: SHUTDOWN and signals call it.
        self.request_shutdown: Callable[[], None] = lambda: None

    # -- start-up --------------------------------------------------------------

    def recover(self) -> None:
        """Load the newest valid snapshot, then replay the log after it."""
        started = time.perf_counter()
        for index, path in list_snapshots(self.snapshot_dir):
            try:
                meta, keyspace = load_snapshot(path)
            except CorruptSnapshot as exc:
                log.warning("skipping damaged snapshot %s: %s", path, exc)
                continue
            self.keyspace = keyspace
            self.machine = StateMachine(keyspace)
            self.machine.applied_index = index
            self.snapshot_index = index
            self.last_snapshot_at = os.path.getmtime(path)
            log.info("loaded snapshot %s: %d keys at index %d", path, len(keyspace), meta["index"])
            break
        self.log.open(start_index=self.snapshot_index + 1)
        if self.log.torn_bytes_truncated:
            log.warning("truncated a torn log tail of %d bytes", self.log.torn_bytes_truncated)
        if self.log.last_index < self.snapshot_index:
            self.log.reset(self.snapshot_index + 1)
        if self.log.first_index > self.snapshot_index + 1:
            raise CorruptLog(
                f"the log starts at index {self.log.first_index} but the newest usable snapshot "
                f"ends at {self.snapshot_index}: entries in between are missing"
            )
        for record in self.log.read(self.snapshot_index + 1):
            if record.kind == KIND_COMMANDS:
                self.machine.apply_payload(record.index, record.payload)
            else:
                self.machine.skip(record.index)
        self.synced_index = self.log.last_index
        self._log_bytes_at_snapshot = 0
        self.keyspace.expired_seen.clear()
        self.loading_seconds = time.perf_counter() - started
        log.info(
            "recovered %d keys, applied index %d, in %.2f s",
            len(self.keyspace),
            self.machine.applied_index,
            self.loading_seconds,
        )

    def start_timers(self) -> None:
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

    def propose(self, client: Client | None, argv: list[bytes]) -> None:
        """Queue a prepared write; its reply goes to ``client.deliver`` once committed."""
        self.proposed.append(argv)
        self.waiters.append(client)
        self.schedule_flush()

    def schedule_flush(self) -> None:
        """Write this loop turn's proposals as one entry once the turn's reads are done."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.proposed:
            return
        commands, waiters = self.proposed[:], self.waiters[:]
        self.proposed.clear()
        self.waiters.clear()
        now_ms = max(wall_ms(), self._last_entry_ms)
        self._last_entry_ms = now_ms
        index = self.log.last_index + 1
        written = self.log.append([(index, TERM, KIND_COMMANDS, encode_entry(now_ms, commands))])
        self.stats.log_bytes_written += written
        self._unsynced.append((index, now_ms, commands, waiters, time.perf_counter()))
        policy = self.config.appendfsync
        if policy == "always":
            self._start_fsync()
        else:
            self._everysec_dirty = True
            self._commit_through(index)

    def _start_fsync(self) -> None:
        if self._fsync_running or self.synced_index >= self.log.last_index:
            return
        self._fsync_running = True
        upto = self.log.last_index
        future = self.loop.run_in_executor(self._fsync_pool, self.log.sync)
        self._fsync_future = future
        future.add_done_callback(lambda f: self._fsync_done(f, upto))

    def _fsync_done(self, future: asyncio.Future[None], upto: int) -> None:
        self._fsync_running = False
        error = future.exception()
        if error is not None:
            # Durability cannot be promised any more: stop rather than lie.
            log.critical("fsync failed: %s; shutting down", error)
            self.stats.fsync_errors += 1
            self.loop.call_soon(self.loop.stop)
            return
        self.stats.fsyncs += 1
        self.synced_index = max(self.synced_index, upto)
        self._commit_through(upto)
        self._start_fsync()

    def _commit_through(self, index: int) -> None:
        unsynced = self._unsynced
        touched: set[Client] = set()
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
        if self._everysec_dirty and not self._fsync_running:
            self._everysec_dirty = False
            self._fsync_running = True
            upto = self.log.last_index
            future = self.loop.run_in_executor(self._fsync_pool, self.log.sync)
            self._fsync_future = future

            def done(f: asyncio.Future[None]) -> None:
                self._fsync_running = False
                if f.exception() is None:
                    self.stats.fsyncs += 1
                    self.synced_index = max(self.synced_index, upto)
                else:
                    self.stats.fsync_errors += 1
                    log.error("fsync failed: %s", f.exception())

            future.add_done_callback(done)

    # -- expiry ----------------------------------------------------------------

    def _expiry_cycle(self) -> None:
        """Propose the deletion of keys past their deadline (Redis's active expiry)."""
        due = self.keyspace.due_for_expiry(wall_ms(), EXPIRY_KEYS_PER_CYCLE)
        if due:
            self.stats.expired_keys += len(due)
            self.propose(None, [EXPIRED, *due])

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
        changed = self.machine.applied_index > self.snapshot_index
        grown = self.log.size_bytes - self._log_bytes_at_snapshot
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
        pid = os.fork()
        if pid == 0:  # the child: write and leave without running any parent cleanup
            status = 1
            try:
                write_snapshot(
                    self.snapshot_dir, index, term, self.keyspace.snapshot_chunks(), meta
                )
                status = 0
            finally:
                os._exit(status)
        pidfd = os.pidfd_open(pid)
        self._snapshot_child = (pid, pidfd, index, started)
        self.loop.add_reader(pidfd, self._snapshot_child_exited)

    def snapshot_meta(self, index: int) -> tuple[int, dict[str, Any]]:
        """The term of entry ``index`` and the metadata a snapshot of it records."""
        return TERM, {"created_ms": wall_ms(), "keys": len(self.keyspace)}

    def snapshot_written(self, index: int) -> None:
        """A snapshot of ``index`` is durable: drop the log it covers."""
        self.log.compact(index)

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
            self.snapshot_written(index)
            self._log_bytes_at_snapshot = self.log.size_bytes
            prune(self.snapshot_dir)
            log.info("snapshot at index %d written in %.2f s", index, self.last_snapshot_seconds)
        else:
            log.error("snapshot child exited with status %d", status)
        waiters, self._snapshot_waiters = self._snapshot_waiters, []
        for waiter in waiters:
            waiter(ok)

    # -- shutdown --------------------------------------------------------------

    async def shutdown(self) -> None:
        """Commit what was proposed, fsync, close the log. Idempotent."""
        if self.shutting_down:
            return
        self.shutting_down = True
        for timer in self._timers:
            timer.cancel()
        self._flush()
        if self._fsync_future is not None:
            await asyncio.wait([self._fsync_future])
        self.log.sync()
        self.synced_index = self.log.last_index
        self._commit_through(self.log.last_index)
        if self._snapshot_child is not None:
            pid, pidfd, _, _ = self._snapshot_child
            self.loop.remove_reader(pidfd)
            os.waitpid(pid, 0)
            os.close(pidfd)
            self._snapshot_child = None
        self.log.close()
        self._fsync_pool.shutdown(wait=True)

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
