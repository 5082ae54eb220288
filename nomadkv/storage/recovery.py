"""Start-up recovery and operator repair of a node's data directory.

Owns the choice of the state a node starts from: the newest snapshot that
reads back intact, and the log after it. Files only; what a snapshot's
chunks become is the caller's ``load`` function.

Invariants:
- The log must connect to the chosen snapshot: its first record is at most
  one past the snapshot's index (older records are covered by it). A gap is
  refused with CorruptLog, never bridged: replaying writes on top of an older
  state would build a state that never existed.
- A log that ends before the snapshot's index (possible with appendfsync
  everysec/no after a power loss, when the snapshot was durable and the
  log's tail was not) is covered by the snapshot: it restarts after it.
- A damaged snapshot is renamed ``*.damaged`` (kept for inspection, no longer
  listed or counted by ``prune``) and the next older one is tried.
- ``repair`` destroys nothing: what it takes out of service goes under
  ``<dir>/damaged/<time>/``.
- One process at a time: a node and ``repair`` hold ``<dir>/LOCK``
  (flock, released by the kernel when the holder dies).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nomadkv.storage.log import (
    REJOIN_HINT,
    REPAIR_HINT,
    CorruptLog,
    Log,
    fsync_directory,
    make_directory,
)
from nomadkv.storage.log import repair as repair_log
from nomadkv.storage.snapshot import (
    CorruptSnapshot,
    list_snapshots,
    read_snapshot,
    remove_abandoned_temporaries,
    set_aside,
    verify_snapshot,
)

State = TypeVar("State")
LOCK_NAME = "LOCK"
Chunks = Iterator[tuple[int, dict[bytes, Any]]]


@dataclass
class Recovered(Generic[State]):
    """Where a node starts: the snapshot's state (None without one) and its
    index; the log, open, continues from ``snapshot_index + 1``."""

    state: State | None
    snapshot_index: int = 0
    snapshot_term: int = 0
    snapshot_path: str | None = None
    snapshot_meta: dict[str, Any] = field(default_factory=dict)
    damaged_snapshots: list[str] = field(default_factory=list)  # what was set aside, and why
    log_reset: bool = False


class DataDirInUse(Exception):
    """Another process (a running node, a repair) holds the data directory."""


def lock_data_dir(data_dir: str) -> int:
    """Take ``<data_dir>/LOCK`` for this process; the descriptor holds it."""
    make_directory(data_dir)
    fd = os.open(os.path.join(data_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(
            f"{data_dir} is in use by another NomadKV process (it holds {data_dir}/LOCK)"
        ) from None
    return fd


def log_directory(data_dir: str) -> str:
    return os.path.join(data_dir, "log")


def snapshot_directory(data_dir: str) -> str:
    return os.path.join(data_dir, "snapshots")


def recover(
    log: Log, snapshot_dir: str, load: Callable[[dict[str, Any], Chunks], State]
) -> Recovered[State]:
    """Open ``log`` and load the newest intact snapshot through ``load``
    (which must consume the chunks: damage shows at the latest at their end).

    Raises CorruptLog when the log is damaged before its tail, or when it
    does not connect to the newest intact snapshot.
    """
    remove_abandoned_temporaries(snapshot_dir)
    log.open()
    recovered: Recovered[State] = Recovered(None)
    for index, path in list_snapshots(snapshot_dir):
        try:
            meta, chunks = read_snapshot(path)
            state = load(meta, chunks)
        except CorruptSnapshot as exc:
            set_aside(path)
            recovered.damaged_snapshots.append(f"{path}: {exc}")
            continue
        recovered.state = state
        recovered.snapshot_index = index
        recovered.snapshot_term = int(meta.get("term", 0))
        recovered.snapshot_path = path
        recovered.snapshot_meta = meta
        break
    snapshot_index = recovered.snapshot_index
    if log.last_index < snapshot_index:
        log.reset(snapshot_index + 1)
        recovered.log_reset = True
    elif log.first_index > snapshot_index + 1:
        raise CorruptLog(_gap_message(log, recovered))
    return recovered


def _gap_message(log: Log, recovered: Recovered[Any]) -> str:
    if recovered.snapshot_path is None:
        start = "there is no intact snapshot"
    else:
        start = (
            f"the newest intact snapshot ({recovered.snapshot_path}) "
            f"ends at index {recovered.snapshot_index}"
        )
    damaged = "".join(f"; set aside as damaged: {d}" for d in recovered.damaged_snapshots)
    return (
        f"the log starts at index {log.first_index} but {start}: records "
        f"{recovered.snapshot_index + 1}..{log.first_index - 1} exist nowhere{damaged}. "
        "Put the missing snapshot back (from a backup) if you have it; otherwise "
        + REPAIR_HINT.format(data_dir=log.data_dir)
    )


@dataclass
class RepairReport:
    log_problem: str = ""
    records_kept: int = 0
    snapshots_set_aside: list[str] = field(default_factory=list)
    log_set_aside: bool = False
    moved: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.log_problem or self.snapshots_set_aside or self.log_set_aside)

    def lines(self) -> list[str]:
        if not self.changed:
            return [f"the log and snapshots are intact: {self.records_kept} log records"]
        out = []
        if self.log_problem:
            out.append(f"cut the log at {self.log_problem}; kept {self.records_kept} records")
        out += [f"set aside damaged snapshot {s}" for s in self.snapshots_set_aside]
        if self.log_set_aside:
            out.append(
                "the log did not connect to the newest intact snapshot: set it aside; "
                "the node starts from that snapshot"
            )
        out += [f"moved {m}" for m in self.moved]
        return out


class RepairRefused(Exception):
    """repair-log will not touch this directory; the message says what to do instead."""


def repair(data_dir: str, now: float | None = None) -> RepairReport:
    """Make ``data_dir`` start again, losing as little as the damage forces.

    1. Read every snapshot whole, newest first, until one is intact; set
       damaged ones aside.
    2. Cut the log at its first damaged record (the rest moves aside), unless
       the newest intact snapshot holds every record of the damaged segment:
       then that segment and those before it move aside, and the check goes on.
    3. If the log does not connect to the newest intact snapshot, move the
       whole log aside: the node starts from that snapshot.
    Raises DataDirInUse while a node runs on ``data_dir``, and RepairRefused on a
    cluster member's directory: cutting its log would bring it back as the same
    voter without entries it may have acknowledged (it rejoins as a new member).
    """
    if os.path.exists(os.path.join(data_dir, "raft-state")):
        raise RepairRefused(
            f"{data_dir} belongs to a cluster member; repair-log changes nothing there. "
            + REJOIN_HINT.format(data_dir=data_dir)
        )
    lock = lock_data_dir(data_dir)
    try:
        return _repair(data_dir, now)
    finally:
        os.close(lock)


def _repair(data_dir: str, now: float | None) -> RepairReport:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    aside = os.path.join(data_dir, "damaged", stamp)
    log_dir, snapshot_dir = log_directory(data_dir), snapshot_directory(data_dir)
    report = RepairReport()
    newest = 0
    for index, path in list_snapshots(snapshot_dir):
        try:
            verify_snapshot(path)
        except CorruptSnapshot as exc:
            report.snapshots_set_aside.append(f"{path}: {exc}")
            report.moved.append(_move(path, os.path.join(aside, "snapshots")))
            continue
        newest = index
        break
    # Damage in records the newest intact snapshot holds costs no write after it.
    cut = repair_log(log_dir, os.path.join(aside, "log"), snapshot_index=newest)
    report.log_problem, report.records_kept = cut.problem, cut.records_kept
    report.moved += cut.moved_to
    if os.path.isdir(log_dir):
        log = Log(log_dir)
        log.open()
        first, last = log.first_index, log.last_index
        log.close()
        if last >= first > newest + 1:
            for name in sorted(os.listdir(log_dir)):
                report.moved.append(_move(os.path.join(log_dir, name), os.path.join(aside, "log")))
            fsync_directory(log_dir)
            report.log_set_aside = True
            report.records_kept = 0
    return report


def _move(path: str, directory: str) -> str:
    make_directory(directory)
    target = os.path.join(directory, os.path.basename(path))
    shutil.move(path, target)
    fsync_directory(directory)
    fsync_directory(os.path.dirname(path))
    return target
