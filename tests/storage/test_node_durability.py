"""The node's group commit over a real log, in this process: a reply leaves
only after its entry's fsync, one fsync covers every write of a loop turn,
and a failed fsync or write stops the node without acknowledging anything
more (no fsync is retried)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import nomadkv.commands.strings  # noqa: F401  (registers SET)
from nomadkv.config import Config
from nomadkv.server.node import STORAGE_FAILURE_EXIT, Node


class Waiter:
    """Stands for a client connection waiting for replies."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def deliver(self, reply: Any) -> None:
        self.replies.append(reply)

    def commit_done(self) -> None:
        pass


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def run(tmp_path, scenario: Callable[[Node], Any], **options: Any) -> None:
    async def main() -> None:
        node = Node(Config(dir=str(tmp_path), http_port=0, **options), asyncio.get_running_loop())
        node.recover()
        try:
            await scenario(node)
        finally:
            if node.failed:
                node.log.close()
            else:
                await node.shutdown()

    asyncio.run(main())


def on_fdatasync(monkeypatch: Any, before: Callable[[], None]) -> None:
    """Call ``before`` ahead of every fdatasync: the log's ``sync`` does one each
    (the log is compiled, so its methods cannot be replaced)."""
    real = os.fdatasync

    def watched(fd: int) -> None:
        before()
        real(fd)

    monkeypatch.setattr(os, "fdatasync", watched)


def test_replies_wait_for_the_fsync_and_one_fsync_covers_a_group(tmp_path, monkeypatch) -> None:
    async def scenario(node: Node) -> None:
        at_fsync: list[tuple[int, int, int]] = []  # (last index, keys applied, replies sent)
        first, second = Waiter(), Waiter()
        on_fdatasync(
            monkeypatch,
            lambda: at_fsync.append(
                (node.log.last_index, len(node.keyspace), len(first.replies + second.replies))
            ),
        )
        # One loop turn: four writes from two connections.
        node.propose(first, [b"set", b"k1", b"v1"])
        for i in (2, 3, 4):
            node.propose(second, [b"set", b"k%d" % i, b"v"])
        await until(lambda: len(second.replies) == 3, "the replies")
        assert first.replies == [b"+OK\r\n"]
        # One entry, one fsync, and nothing applied or answered before it.
        assert at_fsync == [(1, 0, 0)]
        assert node.synced_index == 1 and node.machine.applied_index == 1
        # The next turn's write is a new entry with its own fsync.
        node.propose(first, [b"set", b"k5", b"v"])
        await until(lambda: len(first.replies) == 2, "the next reply")
        assert at_fsync == [(1, 0, 0), (2, 4, 4)]

    run(tmp_path, scenario)


def test_a_failed_fsync_stops_the_node_and_acknowledges_nothing(
    tmp_path, caplog, monkeypatch
) -> None:
    async def scenario(node: Node) -> None:
        exits: list[int] = []
        node.exit_process = exits.append
        syncs: list[int] = []

        def failing_fdatasync(fd: int) -> None:
            syncs.append(node.log.last_index)
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        waiter = Waiter()
        node.propose(waiter, [b"set", b"k", b"v"])
        await until(lambda: bool(exits), "the node to stop")
        assert exits == [STORAGE_FAILURE_EXIT] and node.failed
        assert waiter.replies == [] and node.keyspace.data == {}
        written = node.log.last_index
        node.propose(waiter, [b"set", b"k2", b"v"])
        await until(lambda: not node.flush_scheduled, "the next flush")
        assert node.log.last_index == written and waiter.replies == []
        await node.shutdown()  # no fsync retried, nothing committed
        assert syncs == [1] and waiter.replies == []

    with caplog.at_level(logging.CRITICAL, logger="nomadkv.node"):
        run(tmp_path, scenario)
    assert "fsync of the log failed" in caplog.text


def test_a_failed_log_write_stops_the_node(tmp_path, monkeypatch) -> None:
    async def scenario(node: Node) -> None:
        exits: list[int] = []
        node.exit_process = exits.append

        def full_disk(fd: int, data: Any, offset: int) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "pwrite", full_disk)
        waiter = Waiter()
        node.propose(waiter, [b"set", b"k", b"v"])
        await until(lambda: bool(exits), "the node to stop")
        assert waiter.replies == [] and node.failed

    run(tmp_path, scenario)


def test_everysec_replies_at_once_and_fsyncs_once_a_second(tmp_path, monkeypatch) -> None:
    async def scenario(node: Node) -> None:
        syncs: list[int] = []
        on_fdatasync(monkeypatch, lambda: syncs.append(node.log.last_index))
        waiter = Waiter()
        for i in range(3):
            node.propose(waiter, [b"set", b"k%d" % i, b"v"])
            await until(lambda i=i: len(waiter.replies) == i + 1, "a reply")
        assert syncs == []
        node._sync_everysec()  # what the once-a-second timer does
        await until(lambda: node.synced_index == 3, "the fsync")
        node._sync_everysec()
        assert syncs == [3]  # nothing new: no second fsync

    run(tmp_path, scenario, appendfsync="everysec")
