"""The write-ahead log: segmented files of CRC'd records.

Owns the files under ``<dir>/log``. Files only: no event loop, no sockets.
``sync`` blocks (fsync) and is meant to run on a worker thread; everything
else runs on the caller's thread and never blocks on the disk beyond a write
to the page cache.

Record layout (little endian):
``length u32 | crc32 u32 | index u64 | term u64 | kind u8 | payload[length]``
where the CRC covers index, term, kind and payload.

Invariants:
- Indexes are contiguous: each record's index is the previous one plus one,
  across segments. A segment's file name is its first index.
- Recovery truncates a torn tail (the last record of the last segment was
  cut short, or is followed only by zeros or garbage that is not a record)
  and refuses to start (``CorruptLog``) when a bad record is followed by
  good ones: that is damage in the middle, never silently skipped.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

HEADER = struct.Struct("<IIQQB")
CRC_PART = struct.Struct("<QQB")
HEADER_SIZE = HEADER.size
SEGMENT_SUFFIX = ".seg"


class CorruptLog(Exception):
    """The log is damaged before its tail; the message says where and how to repair."""


@dataclass(frozen=True, slots=True)
class Record:
    index: int
    term: int
    kind: int
    payload: bytes


def encode_record(index: int, term: int, kind: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(CRC_PART.pack(index, term, kind)))
    return HEADER.pack(len(payload), crc, index, term, kind) + payload


def _segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SEGMENT_SUFFIX}"


@dataclass(slots=True)
class _Segment:
    first_index: int
    path: str
    offsets: array  # type: ignore[type-arg]  # byte offset of each record; index = first + i
    size: int

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1


@dataclass(frozen=True, slots=True)
class ScanResult:
    records: int
    valid_bytes: int
    torn_bytes: int
    problem: str


def _scan(data: bytes, first_index: int) -> tuple[array, int, str]:  # type: ignore[type-arg]
    """Offsets of the valid records from the start of ``data``, the end of the
    last valid one, and why the scan stopped early ("" if it reached the end)."""
    offsets = array("Q")
    pos, size = 0, len(data)
    expected = first_index
    while pos < size:
        if size - pos < HEADER_SIZE:
            return offsets, pos, "truncated header"
        length, crc, index, term, kind = HEADER.unpack_from(data, pos)
        end = pos + HEADER_SIZE + length
        if end > size:
            return offsets, pos, "truncated record"
        payload = data[pos + HEADER_SIZE : end]
        if zlib.crc32(payload, zlib.crc32(CRC_PART.pack(index, term, kind))) != crc:
            return offsets, pos, "checksum mismatch"
        if index != expected:
            return offsets, pos, f"index {index} where {expected} was expected"
        offsets.append(pos)
        expected += 1
        pos = end
    return offsets, pos, ""


def _is_record_at(data: bytes, pos: int) -> bool:
    if len(data) - pos < HEADER_SIZE:
        return False
    length, crc, index, term, kind = HEADER.unpack_from(data, pos)
    end = pos + HEADER_SIZE + length
    if end > len(data):
        return False
    payload = data[pos + HEADER_SIZE : end]
    return bool(zlib.crc32(payload, zlib.crc32(CRC_PART.pack(index, term, kind))) == crc)


def _is_torn_tail(data: bytes, bad_pos: int, bad_index: int) -> bool:
    """A bad record is a torn tail when no good record can be found after it.

    A write cut short by a crash leaves a prefix of the last records, possibly
    followed by zeros (the file grew before its data landed). A good record
    further on (found by searching for the indexes that should follow) means
    damage in the middle.
    """
    if not data[bad_pos:].strip(b"\0"):
        return True
    for index in range(bad_index, bad_index + 64):
        needle = struct.pack("<Q", index)
        pos = data.find(needle, bad_pos + 1)
        while pos >= 0:
            if pos - 8 > bad_pos and _is_record_at(data, pos - 8):
                return False
            pos = data.find(needle, pos + 1)
    return True


class Log:
    """Append-only segmented log with recovery, suffix truncation and compaction."""

    def __init__(self, directory: str, segment_bytes_max: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self.segment_bytes_max = segment_bytes_max
        self._segments: list[_Segment] = []
        self._fd = -1
        # The index the next appended record must carry, when the log is empty
        # (after a snapshot compacted everything, it continues from there).
        self._next_index = 1
        self.torn_bytes_truncated = 0
        # Held while the tail's descriptor is fsync'd (on a worker thread) or replaced.
        self._fd_lock = threading.Lock()

    # -- opening and recovery ------------------------------------------------

    def open(self, start_index: int = 1) -> None:
        """Recover the segments on disk. ``start_index`` is where an empty log
        begins (one past the latest snapshot)."""
        os.makedirs(self.directory, exist_ok=True)
        names = sorted(n for n in os.listdir(self.directory) if n.endswith(SEGMENT_SUFFIX))
        for position, name in enumerate(names):
            path = os.path.join(self.directory, name)
            first = int(name[: -len(SEGMENT_SUFFIX)])
            with open(path, "rb") as f:
                data = f.read()
            offsets, valid_end, problem = _scan(data, first)
            is_last = position == len(names) - 1
            if problem:
                if not is_last or not _is_torn_tail(data, valid_end, first + len(offsets)):
                    raise CorruptLog(
                        f"log segment {path} is damaged at byte {valid_end} "
                        f"(after index {first + len(offsets) - 1}): {problem}. "
                        "Entries after this point cannot be trusted. To start anyway, "
                        f"run `nomadkv repair-log --dir {os.path.dirname(self.directory)}`, "
                        "which cuts the log at the damage (entries after it are lost on this "
                        "node; in a cluster the node then catches up from the leader)."
                    )
                self.torn_bytes_truncated += len(data) - valid_end
                with open(path, "r+b") as f:
                    f.truncate(valid_end)
                    os.fsync(f.fileno())
            if self._segments and first != self._segments[-1].last_index + 1:
                raise CorruptLog(
                    f"log segment {path} starts at index {first} but the previous one "
                    f"ends at {self._segments[-1].last_index}; a segment is missing. "
                    f"Run `nomadkv repair-log --dir {os.path.dirname(self.directory)}`."
                )
            if not offsets and not is_last:
                raise CorruptLog(f"log segment {path} holds no record")
            self._segments.append(_Segment(first, path, offsets, valid_end))
        if self._segments and not self._segments[-1].offsets:
            os.unlink(self._segments.pop().path)
        self._next_index = self.last_index + 1 if self._segments else start_index
        if self._segments:
            self._open_tail()

    def _open_tail(self) -> None:
        fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
        with self._fd_lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
            self._fd = fd

    def close(self) -> None:
        with self._fd_lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    # -- the write path ------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self._segments[0].first_index if self._segments else self._next_index

    @property
    def last_index(self) -> int:
        """Index of the last record, or ``first_index - 1`` when empty."""
        return self._segments[-1].last_index if self._segments else self._next_index - 1

    def append(self, records: list[tuple[int, int, int, bytes]]) -> int:
        """Write ``(index, term, kind, payload)`` records with one write; returns bytes written.

        Not durable until ``sync`` returns.
        """
        if not records:
            return 0
        if records[0][0] != self.last_index + 1:
            raise ValueError(
                f"append at index {records[0][0]} but the log ends at {self.last_index}"
            )
        if not self._segments or self._segments[-1].size >= self.segment_bytes_max:
            self._roll(records[0][0])
        segment = self._segments[-1]
        offsets = segment.offsets
        pos = segment.size
        parts = []
        for index, term, kind, payload in records:
            record = encode_record(index, term, kind, payload)
            offsets.append(pos)
            pos += len(record)
            parts.append(record)
        data = b"".join(parts)
        written = 0
        while written < len(data):
            written += os.write(self._fd, data[written:] if written else data)
        segment.size = pos
        self._next_index = records[-1][0] + 1
        return len(data)

    def _roll(self, first_index: int) -> None:
        path = os.path.join(self.directory, _segment_name(first_index))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        os.close(fd)
        self._segments.append(_Segment(first_index, path, array("Q"), 0))
        self._open_tail()
        self._sync_directory()

    def sync(self) -> None:
        """fsync the tail segment. Blocking: call it from a worker thread. Earlier
        segments were fsync'd when the tail moved past them."""
        with self._fd_lock:
            if self._fd >= 0:
                os.fsync(self._fd)

    def roll(self) -> None:
        """Start a new segment at the next append, so that a snapshot of
        everything so far lets ``compact`` delete whole files."""
        if self._segments and self._segments[-1].offsets:
            self._roll(self.last_index + 1)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- reading -------------------------------------------------------------

    def read(self, lo: int, hi: int | None = None) -> Iterator[Record]:
        """Records with ``lo <= index < hi`` (to the end when ``hi`` is None)."""
        hi = self.last_index + 1 if hi is None else min(hi, self.last_index + 1)
        for segment in self._segments:
            if segment.last_index < lo or segment.first_index >= hi:
                continue
            start = max(lo, segment.first_index) - segment.first_index
            stop = min(hi, segment.last_index + 1) - segment.first_index
            with open(segment.path, "rb") as f:
                f.seek(segment.offsets[start])
                end = segment.offsets[stop] if stop < len(segment.offsets) else segment.size
                data = f.read(end - segment.offsets[start])
            pos = 0
            for _ in range(stop - start):
                length, _crc, index, term, kind = HEADER.unpack_from(data, pos)
                payload = data[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
                pos += HEADER_SIZE + length
                yield Record(index, term, kind, payload)

    def term_at(self, index: int) -> int | None:
        for segment in self._segments:
            if segment.first_index <= index <= segment.last_index:
                with open(segment.path, "rb") as f:
                    f.seek(segment.offsets[index - segment.first_index])
                    return int(HEADER.unpack(f.read(HEADER_SIZE))[3])
        return None

    # -- truncation ----------------------------------------------------------

    def truncate_suffix(self, from_index: int) -> None:
        """Remove records with index >= ``from_index`` (a Raft log conflict)."""
        while self._segments and self._segments[-1].first_index >= from_index:
            segment = self._segments.pop()
            os.unlink(segment.path)
        if self._segments:
            segment = self._segments[-1]
            keep = from_index - segment.first_index
            if keep < len(segment.offsets):
                segment.size = segment.offsets[keep]
                del segment.offsets[keep:]
                with open(segment.path, "r+b") as f:
                    f.truncate(segment.size)
                    os.fsync(f.fileno())
            self._open_tail()
        else:
            self.close()
        self._next_index = from_index if not self._segments else self.last_index + 1
        self._sync_directory()

    def compact(self, upto_index: int) -> int:
        """Delete whole segments whose records all have index <= ``upto_index``
        (they are covered by a snapshot). Returns how many were deleted."""
        removed = 0
        while len(self._segments) > 1 and self._segments[0].last_index <= upto_index:
            os.unlink(self._segments.pop(0).path)
            removed += 1
        if self._segments and self._segments[-1].last_index <= upto_index:
            # Everything is covered: start an empty log after the snapshot.
            self.close()
            os.unlink(self._segments.pop().path)
            self._next_index = upto_index + 1
            removed += 1
        if removed:
            self._sync_directory()
        return removed

    def reset(self, next_index: int) -> None:
        """Drop every record and continue at ``next_index`` (a snapshot was installed)."""
        self.close()
        for segment in self._segments:
            os.unlink(segment.path)
        self._segments.clear()
        self._next_index = next_index
        self._sync_directory()

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)


def repair(directory: str) -> ScanResult:
    """Cut the log at its first damaged record, deleting everything after it.

    The operator's way out of ``CorruptLog``: entries after the damage are
    lost on this node.
    """
    names = sorted(n for n in os.listdir(directory) if n.endswith(SEGMENT_SUFFIX))
    records = 0
    expected: int | None = None
    for position, name in enumerate(names):
        path = os.path.join(directory, name)
        first = int(name[: -len(SEGMENT_SUFFIX)])
        with open(path, "rb") as f:
            data = f.read()
        offsets, valid_end, problem = _scan(data, first)
        if expected is not None and first != expected:
            problem, offsets, valid_end = "missing segment before it", array("Q"), 0
        records += len(offsets)
        if problem:
            with open(path, "r+b") as f:
                f.truncate(valid_end)
                os.fsync(f.fileno())
            removed = len(data) - valid_end
            for later in names[position + 1 :]:
                later_path = os.path.join(directory, later)
                removed += os.path.getsize(later_path)
                os.unlink(later_path)
            if not offsets:
                os.unlink(path)
            return ScanResult(records, valid_end, removed, f"{name}: {problem}")
        expected = first + len(offsets)
    return ScanResult(records, 0, 0, "")
