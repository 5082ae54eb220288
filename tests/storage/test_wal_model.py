"""The log against a list, under random appends, Raft-style suffix
truncation, compaction, resets, rolls and reopenings (as after a crash)."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from nomadkv.storage.log import Log

SEGMENT_BYTES = 256


class LogModel(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="wal-model-")
        self.log = Log(self.directory, SEGMENT_BYTES)
        self.log.open()
        self.records: list[tuple[int, int, int, bytes]] = []  # what the log must hold
        self.first = 1  # the model's first index (meaningful when records is empty too)
        self.term = 1

    def teardown(self) -> None:
        if hasattr(self, "log"):
            self.log.close()
            shutil.rmtree(self.directory)

    @property
    def next_index(self) -> int:
        return self.records[-1][0] + 1 if self.records else self.first

    @rule(
        payloads=st.lists(st.binary(max_size=120), min_size=1, max_size=6),
        term_step=st.integers(0, 2),
        kind=st.integers(0, 3),
    )
    def append(self, payloads: list[bytes], term_step: int, kind: int) -> None:
        self.term += term_step
        batch = [(self.next_index + i, self.term, kind, p) for i, p in enumerate(payloads)]
        self.log.append(batch)
        self.records += batch

    @precondition(lambda self: self.records)
    @rule(data=st.data())
    def truncate_suffix(self, data: st.DataObject) -> None:
        cut = data.draw(st.integers(self.first, self.next_index))
        self.log.truncate_suffix(cut)
        self.records = [r for r in self.records if r[0] < cut]
        if not self.records:
            self.first = cut
        self.term = self.records[-1][1] if self.records else self.term

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        upto = data.draw(st.integers(self.first - 1, self.next_index + 2))
        old_first, old_next = self.first, self.next_index
        self.log.compact(upto)
        first = self.log.first_index
        if first > upto:  # whole segments only: what is left starts at most just after upto
            assert first <= max(upto + 1, old_first)
        assert first >= old_first
        if self.log.last_index < self.log.first_index:  # everything was covered
            assert first == max(old_next, upto + 1)
        self.records = [r for r in self.records if r[0] >= first]
        self.first = first

    @rule(step=st.integers(0, 5))
    def reset(self, step: int) -> None:
        self.first = self.next_index + step
        self.log.reset(self.first)
        self.records = []

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        # Without close() nothing is fsync'd, as after a crash of the process:
        # the page cache still holds every write.
        if clean:
            self.log.close()
        self.log = Log(self.directory, SEGMENT_BYTES)
        self.log.open(start_index=self.first)
        if not self.records:
            # An empty log remembers nothing: it starts where it is told.
            assert self.log.last_index < self.log.first_index

    @invariant()
    def same_records(self) -> None:
        if not hasattr(self, "log"):
            return
        log = self.log
        assert (log.first_index, log.last_index) == (self.first, self.next_index - 1)
        assert [tuple(r) for r in log.read(log.first_index)] == self.records
        for index, term, _kind, _payload in self.records:
            assert log.term_at(index) == term
        assert log.term_at(self.first - 1) is None
        assert log.term_at(self.next_index) is None


LogModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLogModel = LogModel.TestCase
