"""A simulated disk: what a replica wrote, and what survives a crash.

Owns: `SimDisk`, a `Storage` whose writes land in a live image at once but
reach the durable image only on `sync()`; `crash()` throws the live image
away. Snapshots the application creates are written durably (like a
snapshot file that is fsync'd before it is used).
Never: syncs on its own. If Raft forgets to ask for an fsync (`must_sync`),
a crash loses the write, and the checkers notice what that breaks.
"""

from __future__ import annotations

from collections.abc import Callable

from nomadkv.raft import ConfState, Entry, HardState, MemoryStorage, Snapshot


class SimDisk:
    __slots__ = ("_durable", "_pending", "live")

    def __init__(self) -> None:
        self.live = MemoryStorage()
        self._durable = MemoryStorage()
        self._pending: list[Callable[[MemoryStorage], None]] = []

    def append(self, entries: list[Entry]) -> None:
        self.live.append(entries)
        self._pending.append(lambda storage: storage.append(entries))

    def set_hard_state(self, hs: HardState) -> None:
        self.live.set_hard_state(hs)
        self._pending.append(lambda storage: storage.set_hard_state(hs))

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self.live.apply_snapshot(snapshot)
        self._pending.append(lambda storage: storage.apply_snapshot(snapshot))

    def sync(self) -> None:
        for write in self._pending:
            write(self._durable)
        self._pending.clear()

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes, keep: int) -> None:
        """Snapshot the state machine at applied `index`, keep `keep` entries below it."""
        self.sync()
        for storage in (self.live, self._durable):
            storage.create_snapshot(index, conf_state, data)
            storage.compact(max(0, index - keep))

    def crash(self) -> None:
        """Power loss: everything not synced is gone."""
        self._pending.clear()
        self.live = self._durable.copy()
