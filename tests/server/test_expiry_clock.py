"""The clock expiry runs on: never behind a stamp already applied (a restart on a
clock stepped back, a new leader whose clock is slower), never past a write
stamped but not applied; and active expiry that keeps up with a load of short
TTLs (a bug hunt saw 155,000 expired keys pile up at 1,000 per cycle)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import uvloop

from nomadkv.config import Config
from nomadkv.harness import ServerProcess, nomadkv_node, wait_until
from nomadkv.server.node import Node, wall_ms

BACKLOG_KEYS = 60_000  # at the old 10,000 keys a second: 6 s or more to clear


@pytest.fixture
def node(tmp_path) -> Iterator[Node]:
    loop = uvloop.new_event_loop()
    node = Node(Config(dir=str(tmp_path), http_port=0, appendfsync="no"), loop)
    node.recover()
    yield node
    loop.close()


def test_time_never_goes_back_behind_an_applied_stamp(node: Node) -> None:
    ahead = wall_ms() + 10_000  # an entry from a leader whose clock ran 10 s ahead
    node.machine.apply(1, ahead, [[b"SET", b"k", b"v", b"PXAT", b"%d" % (ahead - 1)]])
    assert node.read_clock_ms() >= ahead  # so the key reads as expired, as it did there
    assert node.entry_stamp_ms() >= ahead
    assert node.snapshot_meta(1)[1]["stamp_ms"] == ahead  # and after a restart


def test_reads_are_not_timed_after_a_write_stamped_but_not_applied(node: Node) -> None:
    stamped = wall_ms() - 50
    node._unsynced.append((1, stamped, [[b"PERSIST", b"k"]], [None], time.perf_counter()))
    assert node.read_clock_ms() == stamped
    node._unsynced.clear()
    assert node.read_clock_ms() >= stamped + 50


@pytest.fixture
def server(tmp_path) -> Iterator[ServerProcess]:
    process = nomadkv_node(str(tmp_path / "n"), appendfsync="no").start()
    yield process
    process.stop()


def test_active_expiry_keeps_up_with_short_ttls(server: ServerProcess) -> None:
    client = server.client(socket_timeout=30)
    for start in range(0, BACKLOG_KEYS, 10_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 10_000):
            pipe.set(f"short:{i}", "v", px=200)
        pipe.execute()
    last_deadline_s = int(client.execute_command("PEXPIRETIME", f"short:{BACKLOG_KEYS - 1}"))
    wait_until(lambda: client.dbsize() == 0, 30, "every key expired")
    cleared_after_s = time.time() - last_deadline_s / 1000
    assert cleared_after_s < 2.5, f"expired keys piled up: cleared {cleared_after_s:.1f} s late"
    client.close()
