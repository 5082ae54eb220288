"""The simulated application: a tiny key-value state machine with a running digest.

Owns: `KvMachine`, which applies committed entries (writes are `w:<key>=<value>`),
keeps a digest chained over every applied entry (so two replicas that applied
different sequences disagree on the digest at some index), and round-trips
its state through snapshot bytes.
Never: sees anything but committed entries and snapshots, in order.
"""

from __future__ import annotations

import json
import zlib

from nomadkv.raft import Entry, EntryType, Snapshot, check

WRITE_PREFIX = b"w:"


def write_payload(key: str, value: str) -> bytes:
    return b"%s%s=%s" % (WRITE_PREFIX, key.encode(), value.encode())


def parse_write(data: bytes) -> tuple[str, str] | None:
    if not data.startswith(WRITE_PREFIX):
        return None
    key, _, value = data[len(WRITE_PREFIX) :].partition(b"=")
    return key.decode(), value.decode()


class KvMachine:
    __slots__ = ("applied_index", "digest", "kv")

    def __init__(self) -> None:
        self.applied_index = 0
        self.digest = 0
        self.kv: dict[str, str] = {}

    def apply(self, entry: Entry) -> None:
        check(entry.index == self.applied_index + 1, f"applied {entry.index} out of order")
        if entry.type is EntryType.NORMAL:
            write = parse_write(entry.data)
            if write is not None:
                self.kv[write[0]] = write[1]
        header = b"%d:%d:%d" % (entry.index, entry.term, entry.type)
        self.digest = zlib.crc32(entry.data, zlib.crc32(header, self.digest))
        self.applied_index = entry.index

    def snapshot_data(self) -> bytes:
        state = {"index": self.applied_index, "digest": self.digest, "kv": self.kv}
        return json.dumps(state, sort_keys=True).encode()

    def restore(self, snapshot: Snapshot) -> None:
        """Install a snapshot; empty data is the empty state (the bootstrap snapshot)."""
        if snapshot.data:
            state = json.loads(snapshot.data)
            check(state["index"] == snapshot.meta.index, "snapshot data/meta index mismatch")
            self.digest = state["digest"]
            self.kv = dict(state["kv"])
        else:
            self.digest = 0
            self.kv = {}
        self.applied_index = snapshot.meta.index
