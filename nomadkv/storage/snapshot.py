"""Snapshots: the keyspace at one applied log index, zstd-compressed.

Owns the files ``<dir>/snapshots/snapshot-<index>.nkv``. Files only.

Layout: ``MAGIC | u32 header length | u32 crc32(header) | header | zstd frame``.
The header is ``marshal({"index", "term", ...})``. The zstd frame (with its
content checksum) holds records ``u32 length | marshal((kind, chunk))``, as
produced by ``Keyspace.snapshot_chunks``, then an end mark
``u32 0xFFFFFFFF | u64 number of records``.

Invariants:
- A snapshot becomes visible only once complete and durable: it is written
  to ``<name>.tmp.<pid>``, fsync'd, renamed, and the directory fsync'd. A
  crash mid-write leaves a temporary (removed once its writer is gone) and
  the previous snapshot in charge.
- Reading checks everything: header CRC, the index in the name against the
  header, every record's shape, the end mark and its count, the frame's
  checksum and its end (zstd alone does not notice a frame cut short), and
  that nothing follows it. Any failure raises CorruptSnapshot.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import zstandard

from nomadkv.storage.log import fsync_directory, make_directory, replace_durably

MAGIC = b"NKVSNAP2"
PREFIX = "snapshot-"
SUFFIX = ".nkv"
_NAME = re.compile(r"^snapshot-(\d{20})\.nkv$")
_TEMPORARY = re.compile(r"^snapshot-\d{20}\.nkv\.tmp\.(\d+)$")
DAMAGED_SUFFIX = ".damaged"
_HEADER = struct.Struct("<II")  # length, crc32
_LEN = struct.Struct("<I")
_COUNT = struct.Struct("<Q")
_END = 0xFFFFFFFF
_READ_BYTES = 1 << 20


class CorruptSnapshot(Exception):
    pass


def snapshot_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"{PREFIX}{index:020d}{SUFFIX}")


def temporary_path(path: str) -> str:
    return f"{path}.tmp.{os.getpid()}"


def write_snapshot(
    directory: str,
    index: int,
    term: int,
    chunks: Iterable[tuple[int, dict[bytes, Any]]],
    meta: dict[str, Any] | None = None,
    level: int = 1,
) -> str:
    """Write and fsync a snapshot; returns its path. Blocking: run it in a
    forked child or a worker, never on the event loop."""
    make_directory(directory)
    path = snapshot_path(directory, index)
    tmp = temporary_path(path)
    header = marshal.dumps({**(meta or {}), "index": index, "term": term}, 4)
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + _HEADER.pack(len(header), zlib.crc32(header)) + header)
            compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
            with compressor.stream_writer(f, closefd=False) as writer:
                count = 0
                for kind, chunk in chunks:
                    record = marshal.dumps((kind, chunk), 4)
                    writer.write(_LEN.pack(len(record)))
                    writer.write(record)
                    count += 1
                writer.write(_LEN.pack(_END) + _COUNT.pack(count))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_directory(directory)
    return path


def write_bytes_atomically(path: str, data: bytes) -> None:
    """Store a snapshot received whole (from a Raft leader) under ``path``: written to a
    temporary name, fsync'd, renamed, directory fsync'd."""
    make_directory(os.path.dirname(path))
    replace_durably(path, data, temporary_path(path))


def list_snapshots(directory: str) -> list[tuple[int, str]]:
    """(index, path) of every complete snapshot, newest first."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found, reverse=True)


def read_meta(path: str) -> dict[str, Any]:
    """The header of a snapshot (CRC-checked); its data is not read."""
    with open(path, "rb") as f:
        return _read_header(f, path)


def _read_header(f: BinaryIO, path: str) -> dict[str, Any]:
    if f.read(len(MAGIC)) != MAGIC:
        raise CorruptSnapshot(f"{path}: not a NomadKV snapshot (or an older format)")
    raw = f.read(_HEADER.size)
    if len(raw) != _HEADER.size:
        raise CorruptSnapshot(f"{path}: truncated header")
    length, crc = _HEADER.unpack(raw)
    header = f.read(length)
    if len(header) != length or zlib.crc32(header) != crc:
        raise CorruptSnapshot(f"{path}: damaged header")
    try:
        meta = marshal.loads(header)
    except (EOFError, ValueError, TypeError):
        raise CorruptSnapshot(f"{path}: unreadable header") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("index"), int):
        raise CorruptSnapshot(f"{path}: header without an index")
    match = _NAME.match(os.path.basename(path))
    if match and int(match.group(1)) != meta["index"]:
        raise CorruptSnapshot(f"{path}: its header says index {meta['index']}")
    return meta


def read_snapshot(path: str) -> tuple[dict[str, Any], Iterator[tuple[int, dict[bytes, Any]]]]:
    """The snapshot's metadata and an iterator over its chunks. The iterator
    raises CorruptSnapshot if anything is damaged, at the latest when it ends:
    consume it fully before trusting what it gave."""
    f = open(path, "rb")  # noqa: SIM115  (closed by the iterator)
    try:
        meta = _read_header(f, path)
    except BaseException:
        f.close()
        raise
    return meta, _chunks(f, path)


def _chunks(f: BinaryIO, path: str) -> Iterator[tuple[int, dict[bytes, Any]]]:
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    buffer = bytearray()
    pos = 0
    count = 0
    ended = False
    try:
        while True:
            compressed = f.read(_READ_BYTES)
            if not compressed:
                break
            if ended or decompressor.eof:
                raise CorruptSnapshot(f"{path}: data after the end")
            del buffer[:pos]
            pos = 0
            buffer += decompressor.decompress(compressed)
            while not ended and len(buffer) - pos >= _LEN.size:
                (size,) = _LEN.unpack_from(buffer, pos)
                if size == _END:
                    if len(buffer) - pos < _LEN.size + _COUNT.size:
                        break
                    if _COUNT.unpack_from(buffer, pos + _LEN.size)[0] != count:
                        raise CorruptSnapshot(f"{path}: record count does not match")
                    pos += _LEN.size + _COUNT.size
                    ended = True
                    break
                if len(buffer) - pos - _LEN.size < size:
                    break
                start = pos + _LEN.size
                kind, chunk = marshal.loads(memoryview(buffer)[start : start + size])
                if not isinstance(kind, int) or not isinstance(chunk, dict):
                    raise CorruptSnapshot(f"{path}: malformed record")
                pos = start + size
                count += 1
                yield kind, chunk
        if not ended or not decompressor.eof or pos != len(buffer) or decompressor.unused_data:
            raise CorruptSnapshot(f"{path}: cut short")
    except zstandard.ZstdError as exc:
        raise CorruptSnapshot(f"{path}: {exc}") from None
    except (EOFError, ValueError, TypeError) as exc:
        raise CorruptSnapshot(f"{path}: {exc}") from None
    finally:
        f.close()


def verify_snapshot(path: str) -> dict[str, Any]:
    """Read a whole snapshot, discarding its data; its metadata if intact."""
    meta, chunks = read_snapshot(path)
    for _ in chunks:
        pass
    return meta


def set_aside(path: str) -> str:
    """Rename a damaged snapshot so that it is no longer listed (kept for inspection)."""
    target = path + DAMAGED_SUFFIX
    os.rename(path, target)
    fsync_directory(os.path.dirname(path))
    return target


def prune(directory: str, keep: int = 2) -> None:
    """Delete all but the ``keep`` newest snapshots, and abandoned temporaries."""
    for _, path in list_snapshots(directory)[keep:]:
        os.unlink(path)
    remove_abandoned_temporaries(directory)
    fsync_directory(directory)


def remove_abandoned_temporaries(directory: str, pid: int | None = None) -> list[str]:
    """Delete temporaries whose writer is gone (or, given ``pid``, that one's)."""
    removed: list[str] = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        match = _TEMPORARY.match(name)
        if not match:
            continue
        writer = int(match.group(1))
        if writer == pid or (pid is None and not _alive(writer)):
            _unlink_quietly(os.path.join(directory, name))
            removed.append(name)
    return removed


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
