"""The keyspace: the state machine that committed commands are applied to.

Owns every key's value and deadline. Pure: no I/O, no clock (time arrives as
``now_ms``), no randomness of its own.

Values are typed by their Python class, so commands can answer WRONGTYPE:
``bytes`` is a string (stored bare, no wrapper, to keep memory per key low),
and the collection classes below are the other Redis types.

Invariants:
- ``expires`` holds a deadline (absolute Unix milliseconds) only for keys in
  ``data``.
- Reads (``get``) never change state: an expired key is hidden and recorded
  in ``expired_seen`` so the node can delete it through the log. Writes
  (``lookup`` during apply) remove an expired key themselves, which is
  deterministic because every replica applies the entry with the same
  ``now_ms``.
- Keys leave ``data`` only through ``delete``, ``flush`` and ``adopt``, which
  count ``removals`` (``flush`` and ``adopt`` as if every key went): with
  ``len(data)`` it tells whether the set of keys changed, and how far a SCAN
  cursor may have to step back.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Any


class ListValue(deque[bytes]):
    __slots__ = ()


class HashValue(dict[bytes, bytes]):
    __slots__ = ()


class SetValue(set[bytes]):
    __slots__ = ()


class ZSetValue(dict[bytes, float]):
    __slots__ = ()


Value = bytes | ListValue | HashValue | SetValue | ZSetValue

_TYPE_NAMES: dict[type, bytes] = {
    bytes: b"string",
    ListValue: b"list",
    HashValue: b"hash",
    SetValue: b"set",
    ZSetValue: b"zset",
}


def type_name(value: Value) -> bytes:
    """Redis's name for the value's type, as TYPE answers."""
    return _TYPE_NAMES[value.__class__]


def copy_value(value: Value) -> Value:
    """An independent copy of ``value`` (COPY): strings are immutable and shared."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, ListValue):
        return ListValue(value)
    if isinstance(value, SetValue):
        return SetValue(value)
    if isinstance(value, HashValue):
        return HashValue(value)
    return ZSetValue(value)


class Keyspace:
    """Keys to values, plus deadlines for the keys that have one."""

    __slots__ = (
        "_deadline_heap",
        "_sample_order",
        "_scan_order",
        "data",
        "expired_seen",
        "expires",
        "hits",
        "misses",
        "removals",
    )

    def __init__(self) -> None:
        self.data: dict[bytes, Value] = {}
        self.expires: dict[bytes, int] = {}
        # (deadline_ms, key) for the active expiry cycle; entries whose key was
        # since deleted or given another deadline are skipped when popped.
        self._deadline_heap: list[tuple[int, bytes]] = []
        self.expired_seen: set[bytes] = set()
        self.hits = 0
        self.misses = 0
        self.removals = 0
        self._scan_order: ScanOrder | None = None
        self._sample_order: ScanOrder | None = None  # RANDOMKEY's (sample_keys)

    def __len__(self) -> int:
        return len(self.data)

    # -- reads: never mutate -------------------------------------------------

    def get(self, key: bytes, now_ms: int) -> Value | None:
        """The live value of ``key``, or None; counts a hit or a miss."""
        value = self.data.get(key)
        if value is not None and self.expires:
            deadline = self.expires.get(key)
            if deadline is not None and deadline <= now_ms:
                self.expired_seen.add(key)
                value = None
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def peek(self, key: bytes, now_ms: int) -> Value | None:
        """Like ``get`` without counting hits (EXISTS, TYPE, TTL, SCAN)."""
        value = self.data.get(key)
        if value is not None and self.expires:
            deadline = self.expires.get(key)
            if deadline is not None and deadline <= now_ms:
                self.expired_seen.add(key)
                return None
        return value

    def deadline(self, key: bytes) -> int | None:
        return self.expires.get(key)

    def is_live(self, key: bytes, now_ms: int) -> bool:
        if key not in self.data:
            return False
        deadline = self.expires.get(key)
        return deadline is None or deadline > now_ms

    def live_keys(self, now_ms: int) -> Iterator[bytes]:
        expires = self.expires
        for key in list(self.data):
            deadline = expires.get(key)
            if deadline is None or deadline > now_ms:
                yield key

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """``count`` keys in SCAN order from ``cursor`` on, and the cursor that
        continues after them (0 at the end). Does not filter expired keys.

        SCAN order is the dict's insertion order, read from a copy (``ScanOrder``)
        taken when an iteration starts (cursor 0) after the set of keys changed
        (O(N), in C), or when there is none; then O(count) per call. A key that
        stays in the keyspace keeps its place in that order, and moves towards
        the front by one place at most per key removed. So a cursor holds a
        position and the removal count of the copy it points into, and a later
        copy resumes that many places earlier: every key present from cursor 0
        to the end of the iteration is returned, some maybe twice if keys were
        removed meanwhile (as Redis allows). A copy may hold keys removed since
        (the caller skips them) and lacks keys added since the iteration began
        (which need not be returned). Cursors do not survive a restart or an
        installed snapshot (``adopt``), which restart the order.
        """
        order = self._scan_order
        if order is None or (cursor == 0 and order.stamp != (len(self.data), self.removals)):
            order = self._scan_order = ScanOrder(self.data, self.removals)
        position = cursor & _POSITION_MASK
        if cursor:
            removed_since = (order.removals - (cursor >> _POSITION_BITS)) & _POSITION_MASK
            position = max(0, position - removed_since)
        end = position + max(count, 1)
        keys = order.keys[position:end]
        if end >= len(order.keys):
            return 0, keys
        return (order.removals & _POSITION_MASK) << _POSITION_BITS | end, keys

    def sample_keys(self) -> list[bytes]:
        """Keys to draw RANDOMKEY's pick from, in O(1) amortized rather than a walk
        of the dict per draw: a copy of the keys, taken again once an eighth of
        the keyspace has changed since (at every change while it is small). It
        may hold keys removed since (the caller checks) and miss keys added since."""
        order = self._sample_order
        if order is not None:
            size = len(self.data)
            changed = abs(size - len(order.keys)) + self.removals - order.removals
            if not changed or (size > SAMPLE_EXACT_BELOW and changed * 8 <= len(order.keys)):
                return order.keys
        order = self._sample_order = ScanOrder(self.data, self.removals)
        return order.keys

    # -- writes: only from apply ---------------------------------------------

    def lookup(self, key: bytes, now_ms: int) -> Value | None:
        """The live value of ``key`` for a write, removing it if it has expired."""
        value = self.data.get(key)
        if value is not None and self.expires:
            deadline = self.expires.get(key)
            if deadline is not None and deadline <= now_ms:
                self.delete(key)
                return None
        return value

    def set(self, key: bytes, value: Value) -> None:
        """Store ``value`` and drop any deadline (SET without KEEPTTL)."""
        self.data[key] = value
        if self.expires:
            self.expires.pop(key, None)

    def replace(self, key: bytes, value: Value) -> None:
        """Store ``value`` keeping the key's deadline (APPEND, INCR, KEEPTTL)."""
        self.data[key] = value

    def set_deadline(self, key: bytes, deadline_ms: int) -> None:
        self.expires[key] = deadline_ms
        heapq.heappush(self._deadline_heap, (deadline_ms, key))
        if len(self._deadline_heap) > 2 * len(self.expires) + 1024:
            self._deadline_heap = [(d, k) for k, d in self.expires.items()]
            heapq.heapify(self._deadline_heap)

    def persist(self, key: bytes) -> bool:
        return self.expires.pop(key, None) is not None

    def delete(self, key: bytes) -> bool:
        if self.data.pop(key, None) is None:
            return False
        if self.expires:
            self.expires.pop(key, None)
        self.removals += 1
        return True

    def delete_if_expired(self, key: bytes, now_ms: int) -> bool:
        """Apply side of a logged expiry: delete only if still past its deadline."""
        deadline = self.expires.get(key)
        if deadline is None or deadline > now_ms:
            return False
        return self.delete(key)

    def adopt(self, other: Keyspace) -> None:
        """Take over ``other``'s contents (an installed snapshot), keeping this object,
        which connections and the state machine hold on to."""
        self.removals += len(self.data) + len(other.data) + 1
        self.data = other.data
        self.expires = other.expires
        self._deadline_heap = other._deadline_heap
        self.expired_seen = set()
        self._scan_order = None
        self._sample_order = None

    def flush(self) -> None:
        self.removals += len(self.data) + 1
        self.data.clear()
        self.expires.clear()
        self._deadline_heap.clear()
        self.expired_seen.clear()
        self._scan_order = None
        self._sample_order = None

    # -- active expiry -------------------------------------------------------

    def due_for_expiry(self, now_ms: int, limit: int) -> list[bytes]:
        """Up to ``limit`` keys whose deadline has passed, oldest first.

        Does not delete them: the caller proposes their deletion through the log.
        Keys returned are popped from the heap; if the deletion is not applied
        (the node lost leadership) the next caller finds them again through
        ``expired_seen`` or ``rebuild_deadline_heap``.
        """
        heap = self._deadline_heap
        expires = self.expires
        due: list[bytes] = []
        while heap and len(due) < limit and heap[0][0] <= now_ms:
            deadline, key = heapq.heappop(heap)
            if expires.get(key) == deadline:
                due.append(key)
        if self.expired_seen:
            seen = self.expired_seen.difference(due)
            due.extend(list(seen)[: max(0, limit - len(due))])
            self.expired_seen.difference_update(due)
        return due

    def rebuild_deadline_heap(self) -> None:
        self._deadline_heap = [(d, k) for k, d in self.expires.items()]
        heapq.heapify(self._deadline_heap)

    # -- snapshots -------------------------------------------------------------

    def snapshot_chunks(self, chunk_keys: int = 50_000) -> Iterator[tuple[int, dict[bytes, Any]]]:
        """The whole keyspace as (kind, {key: plain value}) chunks, then
        (EXPIRES_KIND, {key: deadline}) chunks. Plain values are bytes, lists,
        dicts and sets, which ``marshal`` writes in C."""
        buckets: dict[int, dict[bytes, Any]] = {}
        for key, value in self.data.items():
            kind = _KIND_OF[value.__class__]
            bucket = buckets.setdefault(kind, {})
            bucket[key] = value if kind == STRING_KIND else _PLAIN[kind](value)
            if len(bucket) >= chunk_keys:
                yield kind, buckets.pop(kind)
        yield from buckets.items()
        expires: dict[bytes, Any] = {}
        for key, deadline in self.expires.items():
            expires[key] = deadline
            if len(expires) >= chunk_keys:
                yield EXPIRES_KIND, expires
                expires = {}
        if expires:
            yield EXPIRES_KIND, expires

    def restore_chunk(self, kind: int, chunk: dict[bytes, Any]) -> None:
        """Load one chunk written by ``snapshot_chunks``; call ``rebuild_deadline_heap``
        after the last one."""
        if kind == STRING_KIND:
            self.data.update(chunk)
        elif kind == EXPIRES_KIND:
            self.expires.update(chunk)
            self._deadline_heap.extend((d, k) for k, d in chunk.items())
        else:
            cls = _CLASS_OF[kind]
            self.data.update((key, cls(value)) for key, value in chunk.items())


class ScanOrder:
    """The keys of one moment in insertion order, and the keyspace's removal count then."""

    __slots__ = ("keys", "removals", "stamp")

    def __init__(self, data: dict[bytes, Value], removals: int) -> None:
        self.keys = list(data)
        self.removals = removals
        self.stamp = (len(self.keys), removals)


SAMPLE_EXACT_BELOW = 4096  # keys: below this, RANDOMKEY draws from an exact copy
_POSITION_BITS = 32
_POSITION_MASK = (1 << _POSITION_BITS) - 1


STRING_KIND = 0
EXPIRES_KIND = 9
_KIND_OF: dict[type, int] = {bytes: 0, ListValue: 1, HashValue: 2, SetValue: 3, ZSetValue: 4}
_CLASS_OF: dict[int, type] = {1: ListValue, 2: HashValue, 3: SetValue, 4: ZSetValue}
_PLAIN: dict[int, Any] = {1: list, 2: dict, 3: set, 4: dict}
