"""The Raft core's storage, made durable: one log for Raft and the keyspace.

Owns, under a node's data directory: the segmented log (``log/``, shared
format with a standalone node), the hard state (``raft-state``) and the
snapshot files' Raft metadata. Files only: no event loop. ``sync`` blocks
(fsync) and runs on a worker thread.

The entries since the latest snapshot are also kept in memory (the
``MemoryStorage`` base class): the core reads terms and entries constantly
while replicating, and the snapshot policy bounds how many there are.

- Log records: kind ``KIND_NORMAL`` holds a normal entry (a command batch,
  or empty: the no-op a new leader appends), ``KIND_CONF_CHANGE`` a
  configuration change, each with its Raft index and term.
- ``raft-state`` holds two CRC'd slots written alternately with a sequence
  number; the valid slot with the higher sequence wins, so a torn write of
  one slot leaves the previous hard state readable.
- A snapshot file's metadata carries ``raft_conf_state`` (the membership at
  its index) and ``members`` (the address book), beside index and term.

Invariant: what ``append``/``set_hard_state``/``install_snapshot`` wrote is
durable once ``sync`` returns, and only then may the caller send messages
that depend on it (the Ready contract).
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

from nomadkv.raft.codec import decode_conf_state, encode_conf_state
from nomadkv.raft.entry import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMeta,
)
from nomadkv.raft.storage import MemoryStorage
from nomadkv.storage.log import REJOIN_HINT, CorruptLog, Log
from nomadkv.storage.recovery import Recovered
from nomadkv.storage.snapshot import CorruptSnapshot

KIND_NORMAL = 1
KIND_CONF_CHANGE = 2
_KIND_OF = {EntryType.NORMAL: KIND_NORMAL, EntryType.CONF_CHANGE: KIND_CONF_CHANGE}
_TYPE_OF = {KIND_NORMAL: EntryType.NORMAL, KIND_CONF_CHANGE: EntryType.CONF_CHANGE}

_STATE = struct.Struct("<4sQQQQ")  # magic, sequence, term, vote, commit
_STATE_SLOT = _STATE.size + 4  # + crc32
_STATE_MAGIC = b"NKHS"


class RaftStorage(MemoryStorage):
    """``raft.Storage`` backed by the node's log, hard state file and snapshots."""

    __slots__ = (
        "_snapshot_data",
        "_state_fd",
        "_state_seq",
        "_vote_unsynced",
        "directory",
        "log",
        "snapshot_dir",
        "snapshot_extra",
        "snapshot_path",
    )

    def __init__(self, directory: str, segment_bytes_max: int) -> None:
        super().__init__()
        self.directory = directory
        self.log = Log(os.path.join(directory, "log"), segment_bytes_max)
        self.snapshot_dir = os.path.join(directory, "snapshots")
        self.snapshot_path: str | None = None
        self.snapshot_extra: dict[str, Any] = {}
        self._snapshot_data: bytes | None = None
        self._state_fd = -1
        self._state_seq = 0
        self._vote_unsynced = False

    # -- start-up ----------------------------------------------------------------------------

    def open(self, recovered: Recovered[Any]) -> None:
        """Take over from ``storage.recovery.recover``, which opened the log and chose
        the newest intact snapshot: its Raft metadata, the entries after it, the
        hard state. (Loading the keyspace from the snapshot is the caller's.)"""
        if recovered.snapshot_path is not None:
            meta = recovered.snapshot_meta
            if "raft_conf_state" not in meta:
                raise CorruptSnapshot(
                    f"{recovered.snapshot_path} was written by a standalone node: a "
                    "cluster member cannot start from it (start the node without "
                    "--node-id, or give it an empty --dir)"
                )
            conf_state = decode_conf_state(meta["raft_conf_state"])
            index = recovered.snapshot_index
            super().apply_snapshot(Snapshot(SnapshotMeta(index, meta["term"], conf_state)))
            self.snapshot_path = recovered.snapshot_path
            self.snapshot_extra = meta
        snapshot_index = self._snapshot.meta.index
        entries = [
            Entry(record.index, record.term, _TYPE_OF[record.kind], record.payload)
            for record in self.log.read(snapshot_index + 1)
        ]
        super().append(entries)
        self._open_state()

    def _open_state(self) -> None:
        path = os.path.join(self.directory, "raft-state")
        self._state_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        data = os.pread(self._state_fd, 2 * _STATE_SLOT, 0)
        best: tuple[int, HardState] | None = None
        for slot in (0, 1):
            raw = data[slot * _STATE_SLOT : (slot + 1) * _STATE_SLOT]
            if len(raw) != _STATE_SLOT:
                continue
            body, crc = raw[: _STATE.size], struct.unpack("<I", raw[_STATE.size :])[0]
            if zlib.crc32(body) != crc:
                continue
            magic, seq, term, vote, commit = _STATE.unpack(body)
            if magic == _STATE_MAGIC and (best is None or seq > best[0]):
                best = (seq, HardState(term, vote, commit))
        if best is None and (data or self.last_index() > 0):
            # Written with two slots, one at a time: a file that held one complete
            # write always has a valid slot, and a member whose log holds entries has
            # written its term. Starting from nothing would forget its vote.
            problem = "holds no valid hard state" if data else "is empty, but the log is not"
            raise CorruptLog(f"{path} {problem}. " + REJOIN_HINT.format(data_dir=self.directory))
        if best is not None:
            self._state_seq = best[0]
            hard_state = best[1]
            # A commit index past the log (the log's tail was torn after the hard
            # state was written) is clamped: the leader will send those entries again.
            commit = min(hard_state.commit, self.last_index())
            super().set_hard_state(HardState(hard_state.term, hard_state.vote, commit))

    @property
    def is_empty(self) -> bool:
        """Nothing was ever persisted: a brand-new member."""
        return self.last_index() == 0 and self._hard_state.term == 0 and self.snapshot_path is None

    def close(self) -> None:
        self.log.close()
        if self._state_fd >= 0:
            os.close(self._state_fd)
            self._state_fd = -1

    # -- Storage -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The latest snapshot with its file's bytes (read once, for sending to followers)."""
        if self._snapshot_data is None and self.snapshot_path is not None:
            with open(self.snapshot_path, "rb") as f:
                self._snapshot_data = f.read()
        return Snapshot(self._snapshot.meta, self._snapshot_data or b"")

    # -- writes (the Ready loop's step 1) ------------------------------------------------------

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Write ``entries``, replacing a conflicting suffix; durable after ``sync``."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.log.last_index:
            self.log.truncate_suffix(first)
        self.log.append([(e.index, e.term, _KIND_OF[e.type], e.data) for e in entries])
        super().append(entries)

    def set_hard_state(self, hs: HardState) -> None:
        previous = self._hard_state
        if hs.term != previous.term or hs.vote != previous.vote:
            self._vote_unsynced = True
        self._state_seq += 1
        body = _STATE.pack(_STATE_MAGIC, self._state_seq, hs.term, hs.vote, hs.commit)
        slot = self._state_seq % 2
        os.pwrite(self._state_fd, body + struct.pack("<I", zlib.crc32(body)), slot * _STATE_SLOT)
        super().set_hard_state(hs)

    def sync(self) -> None:
        """fsync the log, and the hard state when its term or vote changed.

        A commit index alone needs no fsync: a restarted node learns it again
        from the leader (the core clamps a stale one), so most Readies pay one
        fsync, not two.
        """
        if self._vote_unsynced and self._state_fd >= 0:
            os.fsync(self._state_fd)  # first, as it was written first (ClusterNode._handle_ready)
            self._vote_unsynced = False
        self.log.sync()

    def install_snapshot(self, snapshot: Snapshot, path: str, extra: dict[str, Any]) -> None:
        """A snapshot from the leader was written to ``path``: the log restarts after it."""
        super().apply_snapshot(Snapshot(snapshot.meta))
        self._snapshot_data = snapshot.data
        self.snapshot_path = path
        self.snapshot_extra = extra
        self.log.reset(snapshot.meta.index + 1)

    def snapshot_taken(
        self,
        index: int,
        conf_state: ConfState,
        path: str,
        extra: dict[str, Any],
        log_kept_from: int,
    ) -> None:
        """The node wrote a snapshot of applied ``index``: the entries it covers leave
        memory (a follower behind it gets the snapshot); on disk, the log before
        ``log_kept_from`` goes (the node keeps it back to the snapshot before this
        one, for recovery to fall back on)."""
        if index <= self._snapshot.meta.index:
            return
        super().create_snapshot(index, conf_state, b"")
        self._snapshot_data = None
        self.snapshot_path = path
        self.snapshot_extra = extra
        super().compact(index)
        if log_kept_from > 0:
            self.log.compact(log_kept_from)


def conf_state_meta(conf_state: ConfState) -> bytes:
    """How a snapshot file's metadata stores the membership at its index."""
    return encode_conf_state(conf_state)
