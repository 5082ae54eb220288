"""Snapshots: the keyspace at one applied log index, zstd-compressed.

Owns the files ``<dir>/snapshots/snapshot-<index>.nkv``. Files only.

Layout: ``MAGIC | u32 meta length | marshal(meta) | zstd frame``; the zstd
frame (with its content checksum) holds ``u32 length | marshal((kind, chunk))``
records, as produced by ``Keyspace.snapshot_chunks``. A snapshot becomes
visible only after it is complete and fsync'd (written to a temporary name,
then renamed), so a crash mid-write leaves the previous snapshot in charge.
"""

from __future__ import annotations

import marshal
import os
import struct
from collections.abc import Iterable, Iterator
from typing import Any

import zstandard

MAGIC = b"NKVSNAP1"
PREFIX = "snapshot-"
SUFFIX = ".nkv"
_LEN = struct.Struct("<I")


class CorruptSnapshot(Exception):
    pass


def snapshot_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"{PREFIX}{index:020d}{SUFFIX}")


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
    os.makedirs(directory, exist_ok=True)
    path = snapshot_path(directory, index)
    tmp = f"{path}.tmp.{os.getpid()}"
    header = marshal.dumps({"index": index, "term": term, **(meta or {})}, 4)
    with open(tmp, "wb") as f:
        f.write(MAGIC + _LEN.pack(len(header)) + header)
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        with compressor.stream_writer(f, closefd=False) as writer:
            for kind, chunk in chunks:
                record = marshal.dumps((kind, chunk), 4)
                writer.write(_LEN.pack(len(record)))
                writer.write(record)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def write_bytes_atomically(path: str, data: bytes) -> None:
    """Store a snapshot received whole (from a Raft leader) under ``path``: written to a
    temporary name, fsync'd, renamed, directory fsync'd."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_snapshots(directory: str) -> list[tuple[int, str]]:
    """(index, path) of every complete snapshot, newest first."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        if name.startswith(PREFIX) and name.endswith(SUFFIX):
            index = int(name[len(PREFIX) : -len(SUFFIX)])
            found.append((index, os.path.join(directory, name)))
    return sorted(found, reverse=True)


def read_meta(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        return _read_header(f)


def _read_header(f: Any) -> dict[str, Any]:
    if f.read(len(MAGIC)) != MAGIC:
        raise CorruptSnapshot(f"{f.name}: not a NomadKV snapshot")
    raw = f.read(_LEN.size)
    if len(raw) != _LEN.size:
        raise CorruptSnapshot(f"{f.name}: truncated header")
    header = f.read(_LEN.unpack(raw)[0])
    try:
        meta = marshal.loads(header)
    except (EOFError, ValueError, TypeError):
        raise CorruptSnapshot(f"{f.name}: unreadable header") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("index"), int):
        raise CorruptSnapshot(f"{f.name}: header without an index")
    return meta


def read_snapshot(path: str) -> tuple[dict[str, Any], Iterator[tuple[int, dict[bytes, Any]]]]:
    """The snapshot's metadata and an iterator over its chunks. The iterator
    raises CorruptSnapshot if the data or its checksum is damaged."""
    f = open(path, "rb")  # noqa: SIM115  (closed by the iterator)
    try:
        meta = _read_header(f)
    except BaseException:
        f.close()
        raise
    return meta, _chunks(f)


def _chunks(f: Any) -> Iterator[tuple[int, dict[bytes, Any]]]:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=False)
        while True:
            raw = reader.read(_LEN.size)
            if not raw:
                return
            if len(raw) != _LEN.size:
                raise CorruptSnapshot(f"{f.name}: truncated chunk length")
            size = _LEN.unpack(raw)[0]
            record = reader.read(size)
            if len(record) != size:
                raise CorruptSnapshot(f"{f.name}: truncated chunk")
            kind, chunk = marshal.loads(record)
            if not isinstance(kind, int) or not isinstance(chunk, dict):
                raise CorruptSnapshot(f"{f.name}: malformed chunk")
            yield kind, chunk
    except zstandard.ZstdError as exc:
        raise CorruptSnapshot(f"{f.name}: {exc}") from None
    except (EOFError, ValueError, TypeError) as exc:
        raise CorruptSnapshot(f"{f.name}: {exc}") from None
    finally:
        f.close()


def prune(directory: str, keep: int = 2) -> None:
    """Delete all but the ``keep`` newest snapshots, and abandoned temporaries."""
    for _, path in list_snapshots(directory)[keep:]:
        os.unlink(path)
    for name in os.listdir(directory):
        if ".tmp." in name:
            pid = name.rsplit(".", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                os.unlink(os.path.join(directory, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
