"""The write-ahead log: segmented files of CRC'd records.

Owns the files under ``<dir>/log``. Files only: no event loop, no sockets.
Everything runs on one caller thread (the event loop): ``sync`` blocks for
the fsync, once per loop turn at most (group commit). ``append`` writes to the
page cache; rolling to a new segment, ``truncate_suffix``, ``compact`` and
``reset`` also fsync (rare: once per segment, per snapshot, per conflict).

``sync`` keeps zeros written and fsync'd ahead of the tail segment's last
record (``PREALLOCATE_BYTES``), so that most fdatasyncs only overwrite blocks
the file already has and need not also write its new size. A log that is
never synced (``appendfsync no``) is never preallocated.

Record layout (little endian):
``length u32 | crc32 u32 | index u64 | term u64 | kind u8 | payload[length]``
where the CRC covers everything after itself (index, term, kind, payload).

Invariants:
- Indexes are contiguous: each record's index is the previous one plus one,
  across segments. A segment's file name is its first index.
- Only the last segment can end in a torn write: a segment is fsync'd, and
  the new one's directory entry too, before the first byte goes to the next.
- Only the last segment can hold preallocated zeros: a segment is cut to its
  last record before the next one is started, and on ``close``.
- Recovery truncates a torn tail (the last segment ends in a record cut
  short, damaged, or followed by zeros, with no intact record after it) and
  refuses to start (``CorruptLog``) on anything else: a bad record followed
  by an intact one, damage in an earlier segment, a missing segment, a record
  with the wrong index. Nothing is ever skipped silently.
- Every record handed out (``read``) has passed its CRC check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import struct
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

HEADER = struct.Struct("<IIQQB")
_TAIL = struct.Struct("<QQB")  # the part of the header the CRC covers
_U64 = struct.Struct("<Q")
HEADER_SIZE = HEADER.size
CRC_START = 8  # the CRC covers the record from this offset on
SEGMENT_SUFFIX = ".seg"
_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")
PAYLOAD_BYTES_MAX = 2**32 - 1
# Record offsets inside a segment are kept as u32; a segment rolls before this.
SEGMENT_BYTES_LIMIT = 2**31
# Zeros kept written ahead of the tail segment's last record by ``sync``. An
# fdatasync that overwrites them took 135 us against 185 us for one that
# extends the file (one writer), 210 against 279 us with three (docs/storage.md).
PREALLOCATE_BYTES = 4 * 1024 * 1024
_ZEROS = memoryview(bytes(PREALLOCATE_BYTES))
REPAIR_HINT = (
    "Nothing after this point can be trusted, and NomadKV never skips damage silently. "
    "To start anyway, run `nomadkv repair-log --dir {data_dir}`: it cuts the log at the "
    "damage and moves everything after it to {data_dir}/damaged/ (those writes are lost "
    "on this node). See docs/storage.md. A cluster member is not repaired: it rejoins as a "
    "new member (docs/cluster.md, 'A member that lost its data')."
)

# What a cluster member whose persisted state is damaged or lost must do instead of
# starting: it may have voted or acknowledged entries with what it lost.
REJOIN_HINT = (
    "A cluster member must not come back as the same member without what it persisted "
    "(it may have voted or acknowledged entries with it): keep it stopped, run CLUSTER "
    "FORGET <its node id> on the leader, move {data_dir} aside (keep it until you are sure "
    "you do not need it), start it with an empty --dir and --cluster-join yes, then CLUSTER "
    "MEET it (docs/cluster.md, 'A member that lost its data')."
)


class CorruptLog(Exception):
    """The log (or a cluster member's state beside it) is damaged: the message says
    where and what to do."""


class Record(NamedTuple):
    """One log record. A tuple: replay makes millions of them."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, which no caller wants
    term: int
    kind: int
    payload: bytes


def encode_record(index: int, term: int, kind: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(_TAIL.pack(index, term, kind)))
    return HEADER.pack(len(payload), crc, index, term, kind) + payload


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SEGMENT_SUFFIX}"


def fsync_directory(directory: str) -> None:
    """Make creations, renames and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


NEWEST_FILE = "NEWEST"


def read_newest(directory: str) -> int:
    """The first index NEWEST names (0 when there is none): the newest segment
    known to have held records that were made durable."""
    path = os.path.join(directory, NEWEST_FILE)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return 0
    if not text.endswith(b"\n") or not text[:-1].isdigit():
        raise CorruptLog(
            f"{path} is damaged ({text[:40]!r}). "
            + REPAIR_HINT.format(data_dir=os.path.dirname(os.path.abspath(directory)))
        )
    return int(text)


def write_newest(directory: str, first_index: int) -> None:
    path = os.path.join(directory, NEWEST_FILE)
    replace_durably(path, b"%d\n" % first_index, path + ".tmp")


def replace_durably(path: str, data: bytes, temporary: str) -> None:
    """Store ``data`` under ``path`` atomically and durably: written to ``temporary``,
    fsync'd, renamed over ``path``, the directory fsync'd."""
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(os.path.dirname(path))


def make_directory(directory: str) -> None:
    """Create ``directory`` (and parents) durably, if missing."""
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(os.path.abspath(directory))
    make_directory(parent)
    os.makedirs(directory, exist_ok=True)
    fsync_directory(parent)


@dataclass(slots=True)
class _Segment:
    first_index: int
    path: str
    offsets: array  # type: ignore[type-arg]  # u32 start of each record; index = first + i
    size: int
    read_fd: int = -1

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1


@dataclass(slots=True)
class _Scan:
    """What a pass over one segment's bytes found."""

    offsets: array  # type: ignore[type-arg]
    term_runs: list[tuple[int, int]]  # (first index, term) where the term changes
    valid_end: int  # end of the last intact record
    problem: str  # why the scan stopped before the end ("" if it did not)
    definitely_corrupt: bool  # an intact record in the wrong place: never a torn write


def _scan(data: bytes, first_index: int) -> _Scan:
    """Check every record of a segment from its start."""
    view = memoryview(data)
    offsets = array("I")
    runs: list[tuple[int, int]] = []
    unpack, crc32 = HEADER.unpack_from, zlib.crc32
    pos, size, expected, run_term = 0, len(data), first_index, -1
    problem, definite = "", False
    while pos < size:
        if size - pos < HEADER_SIZE:
            problem = "truncated header"
            break
        length, crc, index, term, _kind = unpack(data, pos)
        end = pos + HEADER_SIZE + length
        if end > size:
            problem = f"record length {length} runs past the end of the file"
            break
        if crc32(view[pos + CRC_START : end]) != crc:
            problem = "checksum mismatch"
            break
        if index != expected:
            problem, definite = f"record {index} where {expected} was expected", True
            break
        offsets.append(pos)
        if term != run_term:
            runs.append((index, term))
            run_term = term
        expected += 1
        pos = end
    view.release()
    return _Scan(offsets, runs, pos, problem, definite)


_NONZERO_THEN_FIVE_ZEROS = re.compile(rb"[^\x00]\x00{5}")
# Bytes of candidate records CRC'd per byte searched before the search gives
# up and counts the damage as not torn (refusing is always the safe side).
_CRC_BUDGET_FACTOR = 8


def _index_candidates(data: bytes, start: int, lowest: int, highest: int) -> Iterator[int]:
    """Offsets at or after ``start`` where a header whose index is in [lowest,
    highest] could begin (a superset), found at C speed.

    An index's five high bytes take at most a few values over the range: where
    they are non-zero they are searched as a literal; where they are zero, the
    index's last non-zero low byte (one of its first three: the index is at
    least 1) is followed by five zeros, and runs of zeros are skipped whole.
    """
    for high in range(lowest >> 24, (highest >> 24) + 1):
        if high:
            literal = high.to_bytes(5, "little")
            found = data.find(literal, start + 11)
            while found >= 0:
                yield found - 11
                found = data.find(literal, found + 1)
        else:
            for match in _NONZERO_THEN_FIVE_ZEROS.finditer(data, start + 8):
                for low in (8, 9, 10):
                    if match.start() - low >= start:
                        yield match.start() - low


def why_not_torn(data: bytes, bad_pos: int, expected: int) -> str:
    """Why the damage found at ``bad_pos`` (where record ``expected`` should
    start) is not a torn tail, or "" when it may be one.

    A torn write leaves nothing intact after it. Records after real damage
    keep their places, so record ``expected + k`` starts at least ``k``
    headers after ``bad_pos``: that bounds the index of a candidate by its
    offset. Every candidate is CRC-checked, within a budget linear in the
    data; past it the damage counts as not torn.
    """
    start = bad_pos + 1
    size = len(data)
    if size - start < HEADER_SIZE:
        return ""
    highest = expected + (size - bad_pos) // HEADER_SIZE
    budget = _CRC_BUDGET_FACTOR * (size - start) + (1 << 20)
    unpack, crc32 = HEADER.unpack_from, zlib.crc32
    view = memoryview(data)
    try:
        for pos in _index_candidates(data, start, expected, highest):
            if size - pos < HEADER_SIZE:
                continue
            length, crc, index, _term, _kind = unpack(data, pos)
            end = pos + HEADER_SIZE + length
            if not expected <= index <= expected + (pos - bad_pos) // HEADER_SIZE or end > size:
                continue
            budget -= length
            if budget < 0:
                return "too much record-like data follows to rule out intact records"
            if crc32(view[pos + CRC_START : end]) == crc:
                return f"an intact record ({index}) follows at byte {pos}"
        return ""
    finally:
        view.release()


def _segment_files(directory: str) -> list[tuple[int, str]]:
    """(first index, path) of every segment file, in index order."""
    found = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found)


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    written = os.pwrite(fd, view, offset)
    while written < len(data):
        written += os.pwrite(fd, view[written:], offset + written)


def stored_bytes(directory: str) -> int:
    """Bytes of the files under ``directory`` (a data directory or part of one),
    without the zeros a log segment holds ahead of its last record. A figure
    for reports: a record whose payload ends in zero bytes counts without them."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            size = os.path.getsize(path)
            if name.endswith(SEGMENT_SUFFIX):
                size -= _trailing_zeros(path, size)
            total += size
    return total


def _trailing_zeros(path: str, size: int) -> int:
    zeros = 0
    with open(path, "rb") as f:
        while zeros < size:
            step = min(1 << 20, size - zeros)
            f.seek(size - zeros - step)
            chunk = f.read(step)
            kept = len(chunk.rstrip(b"\0"))
            zeros += step - kept
            if kept:
                break
    return zeros


class Log:
    """Append-only segmented log with recovery, suffix truncation and compaction.

    NEWEST, beside the segments, names the newest segment known to have held
    durable records (written when such a segment is first synced or closed,
    lowered before segments are deleted on purpose). A newest segment lost
    after that (deleted, emptied) would otherwise leave a shorter log that
    looks intact, and acknowledged writes would vanish without a word; with
    it, recovery refuses to start, as for any other missing segment.
    """

    def __init__(self, directory: str, segment_bytes_max: int = 64 * 1024 * 1024) -> None:
        if not 0 < segment_bytes_max <= SEGMENT_BYTES_LIMIT:
            raise ValueError(f"segment_bytes_max must be in 1..{SEGMENT_BYTES_LIMIT}")
        self.directory = directory
        self.segment_bytes_max = segment_bytes_max
        self._segments: list[_Segment] = []
        self._segment_firsts: list[int] = []  # first_index of each segment, for bisect
        # Term runs across the whole log: term_values[k] holds from term_starts[k] on.
        self._term_starts: list[int] = []
        self._term_values: list[int] = []
        self._fd = -1  # the tail segment, open for appending
        self._allocated = 0  # bytes of the tail segment's file: records, then zeros
        # The index the next appended record must carry, when the log is empty
        # (after a snapshot compacted everything, it continues from there).
        self._next_index = 1
        self._roll_pending = False
        # Set when a failed write could not be undone: appending again would put
        # good records after garbage.
        self._broken: str | None = None
        self.torn_bytes_truncated = 0
        self.torn_problem = ""
        self._newest = 0  # what NEWEST says

    @property
    def data_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.directory))

    # -- opening and recovery ------------------------------------------------

    def open(self, start_index: int = 1) -> None:
        """Recover the segments on disk: check every record, cut a torn tail,
        raise CorruptLog on anything else. ``start_index`` is where an empty
        log begins (one past the latest snapshot)."""
        make_directory(self.directory)
        files = _segment_files(self.directory)
        self._newest = newest = read_newest(self.directory)
        if newest and not any(first >= newest for first, _ in files):
            raise CorruptLog(
                f"log segment {os.path.join(self.directory, segment_name(newest))} is missing, "
                f"and it held records that had been made durable ({NEWEST_FILE} names it): "
                f"the log ends early. " + REPAIR_HINT.format(data_dir=self.data_dir)
            )
        directory_changed = False
        while files and os.path.getsize(files[-1][1]) == 0:
            # A roll that crashed before its first record: nothing to recover.
            self._check_not_newest(files[-1][0], files[-1][1])
            os.unlink(files.pop()[1])
            directory_changed = True
        segments: list[_Segment] = []
        runs: list[tuple[int, int]] = []
        for position, (first, path) in enumerate(files):
            with open(path, "rb") as f:
                data = f.read()
            scan = _scan(data, first)
            is_last = position == len(files) - 1
            if segments and first != segments[-1].last_index + 1:
                raise CorruptLog(
                    f"log segment {path} starts at index {first} but the segment before it "
                    f"ends at {segments[-1].last_index}: a segment is missing. "
                    + REPAIR_HINT.format(data_dir=self.data_dir)
                )
            if scan.problem:
                if not is_last or scan.definitely_corrupt:
                    self._refuse(path, scan, first)
                not_torn = why_not_torn(data, scan.valid_end, first + len(scan.offsets))
                if not_torn:
                    self._refuse(path, scan, first, not_torn)
                # A torn write at the very end: the record was never fully
                # written, so it was never acknowledged. Cut it off. Zeros
                # alone are what sync preallocated: nothing was torn.
                if data.count(0, scan.valid_end) != len(data) - scan.valid_end:
                    self.torn_bytes_truncated += len(data) - scan.valid_end
                    self.torn_problem = f"{path} at byte {scan.valid_end}: {scan.problem}"
                with open(path, "r+b") as f:
                    f.truncate(scan.valid_end)
                    os.fsync(f.fileno())
            if not scan.offsets:
                if not is_last:
                    raise CorruptLog(
                        f"log segment {path} holds no record but is followed by others. "
                        + REPAIR_HINT.format(data_dir=self.data_dir)
                    )
                # The last roll crashed before its first record landed.
                self._check_not_newest(first, path)
                os.unlink(path)
                directory_changed = True
                continue
            segments.append(_Segment(first, path, scan.offsets, scan.valid_end))
            for index, term in scan.term_runs:
                if not runs or runs[-1][1] != term:
                    runs.append((index, term))
        if directory_changed:
            fsync_directory(self.directory)
        self._segments = segments
        self._segment_firsts = [s.first_index for s in segments]
        self._term_starts = [index for index, _ in runs]
        self._term_values = [term for _, term in runs]
        self._next_index = segments[-1].last_index + 1 if segments else start_index
        if segments:
            self._fd = os.open(segments[-1].path, os.O_WRONLY)
            self._allocated = segments[-1].size

    def _check_not_newest(self, first: int, path: str) -> None:
        if first == self._newest:
            raise CorruptLog(
                f"log segment {path} holds no record, but it held records that had been "
                f"made durable ({NEWEST_FILE} names it). "
                + REPAIR_HINT.format(data_dir=self.data_dir)
            )

    def _refuse(self, path: str, scan: _Scan, first: int, not_torn: str = "") -> None:
        where = (
            f"log segment {path} is damaged at byte {scan.valid_end} "
            f"(record {first + len(scan.offsets)}): {scan.problem}"
        )
        if not_torn:
            where += f", and it is not a torn write: {not_torn}"
        raise CorruptLog(f"{where}. " + REPAIR_HINT.format(data_dir=self.data_dir))

    def close(self) -> None:
        """Cut the preallocated zeros, fsync and close everything. The log can be
        opened again."""
        if self._fd >= 0:
            self._close_tail()
        for segment in self._segments:
            self._close_reader(segment)

    # -- the write path ------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self._segments[0].first_index if self._segments else self._next_index

    @property
    def last_index(self) -> int:
        """Index of the last record, or ``first_index - 1`` when empty."""
        return self._next_index - 1

    def append(self, records: list[tuple[int, int, int, bytes]]) -> int:
        """Write ``(index, term, kind, payload)`` records with one write; returns bytes written.

        Not durable until ``sync`` returns. On a failed write nothing of the
        batch stays in the log (the file is cut back), and the error propagates.
        """
        if not records:
            return 0
        if self._broken is not None:
            raise OSError(f"the log cannot be appended to: {self._broken}")
        first = records[0][0]
        if first != self._next_index:
            raise ValueError(f"append at index {first} but the log ends at {self.last_index}")
        if (
            self._roll_pending
            or not self._segments
            or (self._segments[-1].size >= self.segment_bytes_max)
        ):
            self._roll(first)
        segment = self._segments[-1]
        pos = segment.size
        starts = []
        parts = []
        expected = first
        for index, term, kind, payload in records:
            if index != expected:
                raise ValueError(f"append of index {index} where {expected} was expected")
            if len(payload) > PAYLOAD_BYTES_MAX:
                raise ValueError(f"record {index} is larger than {PAYLOAD_BYTES_MAX} bytes")
            record = encode_record(index, term, kind, payload)
            starts.append(pos)
            pos += len(record)
            parts.append(record)
            expected += 1
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        try:
            _write_all(self._fd, data, segment.size)
        except OSError as exc:
            self._undo_write(segment, exc)
            raise
        segment.offsets.extend(starts)
        segment.size = pos
        term_starts, term_values = self._term_starts, self._term_values
        for index, term, _kind, _payload in records:
            if not term_values or term_values[-1] != term:
                term_starts.append(index)
                term_values.append(term)
        self._next_index = expected
        return len(data)

    def _undo_write(self, segment: _Segment, error: OSError) -> None:
        try:
            os.ftruncate(self._fd, segment.size)
            self._allocated = segment.size
        except OSError as exc:
            self._broken = f"a write failed ({error}) and could not be undone ({exc})"

    def _roll(self, first_index: int) -> None:
        """Start a new tail segment. The old one is fsync'd before the new file
        exists (so a segment followed by another is never torn), and the new
        one's directory entry is durable before anything is written to it."""
        path = os.path.join(self.directory, segment_name(first_index))
        if self._fd >= 0:
            self._close_tail()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._allocated = 0
        fsync_directory(self.directory)
        self._segments.append(_Segment(first_index, path, array("I"), 0))
        self._segment_firsts.append(first_index)
        self._roll_pending = False

    def sync(self) -> None:
        """Make every appended record durable (fdatasync of the tail; earlier
        segments were fsync'd when the tail moved past them). Blocks for the disk.

        When less than half of ``PREALLOCATE_BYTES`` of zeros is left ahead of
        the last record, this fdatasync also writes the next ones."""
        if self._fd < 0:
            return
        end = self._segments[-1].size if self._segments else 0
        if self._allocated - end < PREALLOCATE_BYTES // 2:
            start = max(end, self._allocated)
            try:
                _write_all(self._fd, _ZEROS[: end + PREALLOCATE_BYTES - start], start)
                self._allocated = end + PREALLOCATE_BYTES
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                # Preallocation only saves time: on a full disk, give back the zeros
                # that landed and sync the records as they are.
                os.ftruncate(self._fd, start)
        os.fdatasync(self._fd)
        self._note_durable_tail()

    def _note_durable_tail(self) -> None:
        """The tail's records just became durable: NEWEST names it (once per segment)."""
        if self._segments:
            tail = self._segments[-1]
            if tail.first_index != self._newest and tail.offsets:
                write_newest(self.directory, tail.first_index)
                self._newest = tail.first_index

    def _before_deleting(self, kept_tail: _Segment | None) -> None:
        """Segments are about to be deleted on purpose and ``kept_tail`` (durable)
        will be the newest left: NEWEST must name no segment past it."""
        if self._newest and (kept_tail is None or kept_tail.first_index < self._newest):
            self._newest = kept_tail.first_index if kept_tail is not None else 0
            write_newest(self.directory, self._newest)

    def _close_tail(self) -> None:
        """Cut the tail segment's zeros, make it durable and close it."""
        if self._segments and self._allocated > self._segments[-1].size:
            os.ftruncate(self._fd, self._segments[-1].size)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._allocated = 0
        self._note_durable_tail()

    def roll(self) -> None:
        """Start a new segment at the next append, so that a snapshot of
        everything so far lets ``compact`` delete whole files."""
        if self._segments and self._segments[-1].offsets:
            self._roll_pending = True

    # -- reading -------------------------------------------------------------

    def read(self, lo: int, hi: int | None = None) -> Iterator[Record]:
        """Records with ``lo <= index < hi`` (to the end when ``hi`` is None).

        One ``pread`` per segment touched, on a descriptor kept open. Raises
        ValueError if ``lo`` was compacted away, CorruptLog if a record no
        longer matches its CRC. Do not change the log while iterating.
        """
        if lo < self.first_index:
            raise ValueError(f"index {lo} is compacted: the log starts at {self.first_index}")
        end_index = self._next_index if hi is None else min(hi, self._next_index)
        if lo >= end_index:
            return
        position = bisect_right(self._segment_firsts, lo) - 1
        crc32, unpack, new_record = zlib.crc32, HEADER.unpack_from, tuple.__new__
        for segment in self._segments[position:]:
            if segment.first_index >= end_index:
                return
            start = max(lo, segment.first_index) - segment.first_index
            stop = min(end_index, segment.last_index + 1) - segment.first_index
            offsets = segment.offsets
            begin = offsets[start]
            end = offsets[stop] if stop < len(offsets) else segment.size
            data = os.pread(self._reader(segment), end - begin, begin)
            if len(data) != end - begin:
                raise CorruptLog(f"log segment {segment.path} is shorter than expected")
            view = memoryview(data)
            pos = 0
            for expected in range(segment.first_index + start, segment.first_index + stop):
                length, crc, index, term, kind = unpack(data, pos)
                record_end = pos + HEADER_SIZE + length
                if index != expected or crc32(view[pos + CRC_START : record_end]) != crc:
                    raise CorruptLog(
                        f"log segment {segment.path}: record {expected} at byte "
                        f"{begin + pos} changed on disk since it was written"
                    )
                yield new_record(Record, (index, term, kind, data[pos + HEADER_SIZE : record_end]))
                pos = record_end

    def term_at(self, index: int) -> int | None:
        """The term of record ``index``, or None outside the log. In memory: no I/O."""
        if not self.first_index <= index <= self.last_index:
            return None
        return self._term_values[bisect_right(self._term_starts, index) - 1]

    def _reader(self, segment: _Segment) -> int:
        if segment.read_fd < 0:
            segment.read_fd = os.open(segment.path, os.O_RDONLY)
        return segment.read_fd

    @staticmethod
    def _close_reader(segment: _Segment) -> None:
        if segment.read_fd >= 0:
            os.close(segment.read_fd)
            segment.read_fd = -1

    # -- truncation ----------------------------------------------------------

    def truncate_suffix(self, from_index: int) -> None:
        """Remove records with index >= ``from_index`` (a Raft log conflict).
        Durable when it returns."""
        if from_index > self.last_index:
            return
        if from_index < self.first_index:
            raise ValueError(
                f"cannot truncate from {from_index}: the log starts at {self.first_index}"
            )
        unlinked = False
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._allocated = 0
        # What stays ends in a segment that was fsync'd when the log rolled past it.
        kept = [segment for segment in self._segments if segment.first_index < from_index]
        self._before_deleting(kept[-1] if kept else None)
        while self._segments and self._segments[-1].first_index >= from_index:
            self._drop_segment(self._segments.pop())
            self._segment_firsts.pop()
            unlinked = True
        if self._segments:
            segment = self._segments[-1]
            keep = from_index - segment.first_index
            if keep < len(segment.offsets):
                segment.size = segment.offsets[keep]
                del segment.offsets[keep:]
            fd = os.open(segment.path, os.O_WRONLY)
            os.ftruncate(fd, segment.size)
            os.fsync(fd)
            self._fd = fd
            self._allocated = segment.size
        if unlinked:
            fsync_directory(self.directory)
        cut = bisect_left(self._term_starts, from_index)
        del self._term_starts[cut:]
        del self._term_values[cut:]
        self._next_index = from_index
        self._roll_pending = False

    def compact(self, upto_index: int) -> int:
        """Delete whole segments whose records all have index <= ``upto_index``
        (they are covered by a snapshot). When nothing is left, the log goes
        on after ``upto_index``. Returns how many segments were deleted."""
        removed = 0
        if self._segments and self._segments[-1].last_index <= upto_index:
            self._before_deleting(None)  # every segment goes
        while self._segments and self._segments[0].last_index <= upto_index:
            if len(self._segments) == 1:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                    self._allocated = 0
                self._roll_pending = False
            self._drop_segment(self._segments.pop(0))
            self._segment_firsts.pop(0)
            removed += 1
        if not self._segments:
            self._next_index = max(self._next_index, upto_index + 1)
        if removed:
            fsync_directory(self.directory)
            keep = bisect_right(self._term_starts, self.first_index) - 1
            if self._segments and keep > 0:
                del self._term_starts[:keep]
                del self._term_values[:keep]
            elif not self._segments:
                self._term_starts.clear()
                self._term_values.clear()
        return removed

    def reset(self, next_index: int) -> None:
        """Drop every record and continue at ``next_index`` (a snapshot was installed)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._allocated = 0
        self._before_deleting(None)
        for segment in self._segments:
            self._drop_segment(segment)
        self._segments.clear()
        self._segment_firsts.clear()
        self._term_starts.clear()
        self._term_values.clear()
        self._next_index = next_index
        self._roll_pending = False
        fsync_directory(self.directory)

    def _drop_segment(self, segment: _Segment) -> None:
        self._close_reader(segment)
        os.unlink(segment.path)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def bytes_after(self, index: int) -> int:
        """Bytes of the records after ``index`` (the log a snapshot of ``index``
        leaves to replay)."""
        if index >= self.last_index:
            return 0
        if index < self.first_index:
            return self.size_bytes
        position = bisect_right(self._segment_firsts, index + 1) - 1
        segment = self._segments[position]
        start: int = segment.offsets[index + 1 - segment.first_index]
        return segment.size - start + sum(s.size for s in self._segments[position + 1 :])

    @property
    def segment_count(self) -> int:
        return len(self._segments)


@dataclass(frozen=True, slots=True)
class LogRepair:
    records_kept: int
    bytes_moved: int
    problem: str  # "" when the log was intact
    moved_to: list[str]


def repair(directory: str, aside: str, snapshot_index: int = 0) -> LogRepair:
    """Cut the log at its first damaged record; everything after it (the rest
    of that segment and every later segment) is moved under ``aside``.

    Damage in a segment whose records all lie at or below ``snapshot_index``
    (the newest intact snapshot holds them; the log keeps them only to fall
    back on an older snapshot) does not cut the log: that segment and the ones
    before it are moved aside whole, and the check goes on after it.

    The operator's way out of ``CorruptLog``: the writes after the damage are
    lost on this node, but no byte is destroyed. NEWEST is then made to name
    the newest segment left; if the one it named is gone, that is reported.
    """
    if not os.path.isdir(directory):
        return LogRepair(0, 0, "", [])
    try:
        named = read_newest(directory)
    except CorruptLog:
        named = -1
    cut = _cut_at_damage(directory, aside, snapshot_index)
    left = [first for first, path in _segment_files(directory) if os.path.getsize(path) > 0]
    newest = left[-1] if left else 0
    if named != newest:
        if named > newest or named < 0:
            missing = (
                f"{NEWEST_FILE} is damaged"
                if named < 0
                else f"{segment_name(named)} is missing (it held durable records)"
            )
            problem = "; ".join(p for p in (cut.problem, missing) if p)
            cut = LogRepair(cut.records_kept, cut.bytes_moved, problem, cut.moved_to)
        write_newest(directory, newest)
    return cut


def _cut_at_damage(directory: str, aside: str, snapshot_index: int) -> LogRepair:
    records = 0
    expected: int | None = None
    files = _segment_files(directory)
    set_aside: list[str] = []
    notes: list[str] = []
    for position, (first, path) in enumerate(files):
        with open(path, "rb") as f:
            data = f.read()
        scan = _scan(data, first)
        problem = scan.problem
        if expected is not None and first != expected:
            problem = f"a segment is missing before it (index {expected} expected)"
            scan.offsets, scan.valid_end = array("I"), 0
        if not problem:
            records += len(scan.offsets)
            expected = first + len(scan.offsets)
            continue
        name = os.path.basename(path)
        following = files[position + 1][0] if position + 1 < len(files) else None
        if following is not None and following - 1 <= snapshot_index:
            make_directory(aside)
            for _, earlier in files[: position + 1]:
                if os.path.exists(earlier):
                    set_aside.append(_move(earlier, aside))
            notes.append(
                f"{name} at byte {scan.valid_end}: {problem}, in records up to {following - 1} "
                f"that snapshot {snapshot_index} holds: set aside with the segments before it"
            )
            records, expected = 0, following
            continue
        records += len(scan.offsets)
        make_directory(aside)
        moved = set_aside
        notes.append(f"{name} at byte {scan.valid_end}: {problem}")
        if scan.offsets:
            cut = os.path.join(aside, f"{name}.from-byte-{scan.valid_end}")
            with open(cut, "wb") as f:
                f.write(data[scan.valid_end :])
                os.fsync(f.fileno())
            with open(path, "r+b") as f:
                f.truncate(scan.valid_end)
                os.fsync(f.fileno())
            moved.append(cut)
        else:
            moved.append(_move(path, aside))
        cut_at = len(moved)
        for _, later in files[position + 1 :]:
            moved.append(_move(later, aside))
        fsync_directory(aside)
        fsync_directory(directory)
        return LogRepair(
            records,
            len(data) - scan.valid_end + sum(os.path.getsize(p) for p in moved[cut_at:]),
            "; ".join(notes),
            moved,
        )
    if set_aside:
        fsync_directory(aside)
        fsync_directory(directory)
    return LogRepair(records, 0, "; ".join(notes), set_aside)


def _move(path: str, aside: str) -> str:
    target = os.path.join(aside, os.path.basename(path))
    shutil.move(path, target)
    return target
