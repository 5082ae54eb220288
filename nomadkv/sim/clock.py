"""Simulated time: a queue of future events ordered by (time, insertion order).

Owns: `EventQueue`, the only notion of time in a simulation (`now_ms`).
Never: reads the wall clock. Ties are broken by insertion order, so a run is a
pure function of its seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count
from typing import Any


class EventQueue:
    __slots__ = ("_heap", "_seq", "now_ms")

    def __init__(self) -> None:
        self.now_ms = 0
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = count()

    def after(self, delay_ms: int, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (self.now_ms + delay_ms, next(self._seq), fn, args))

    def run_until(self, end_ms: int, after_each: Callable[[], bool]) -> bool:
        """Run events up to `end_ms`; stop early (True) when `after_each()` says so."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end_ms:
            when, _, fn, args = pop(heap)
            self.now_ms = when
            fn(*args)
            if after_each():
                return True
        self.now_ms = max(self.now_ms, end_ms)
        return False
