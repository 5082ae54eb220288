"""Safety-rule mutations: disable one rule of the core to prove the checkers notice.

Owns: `MUTATIONS`, the rules that can be switched off one at a time, and
`mutated(name)`, a context manager that patches the core for its duration:

- figure8: a leader commits any entry stored on a quorum, whatever its term
  (drops the §5.4.2 rule of Figure 8);
- vote_log_check: a voter grants its vote without comparing logs (drops §5.4.1);
- persist_vote: the hard state handed to storage never carries the vote, so a
  restarted node can vote twice in one term (drops "persist before responding").

Never: runs outside a `with mutated(...)` block; the original methods are restored
on exit, even on error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nomadkv.raft.core import Raft
from nomadkv.raft.entry import NONE, HardState
from nomadkv.raft.log import RaftLog


def _commit_any_term(self: RaftLog, index: int, term: int) -> bool:
    if index > self.commit_index:
        self.commit_to(index)
        return True
    return False


def _always_up_to_date(self: RaftLog, last_index: int, term: int) -> bool:
    return True


def _hard_state_without_vote(self: Raft) -> HardState:
    return HardState(self.term, NONE, self.log.commit_index)


MUTATIONS: dict[str, tuple[type, str, Callable[..., Any]]] = {
    "figure8": (RaftLog, "maybe_commit", _commit_any_term),
    "vote_log_check": (RaftLog, "is_up_to_date", _always_up_to_date),
    "persist_vote": (Raft, "hard_state", _hard_state_without_vote),
}


@contextmanager
def mutated(name: str) -> Iterator[None]:
    owner, attr, replacement = MUTATIONS[name]
    original = getattr(owner, attr)
    setattr(owner, attr, replacement)
    try:
        yield
    finally:
        setattr(owner, attr, original)
