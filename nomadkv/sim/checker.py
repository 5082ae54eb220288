"""Safety checkers run after every simulated step.

Owns: `SafetyChecker`, a global observer that records what every replica
persisted, committed and applied, and raises `Violation` the moment one of
Raft's safety properties (Raft paper, Figure 3) fails:

- Election Safety: at most one leader per term;
- Log Matching: an (index, term) pair names one entry, with one predecessor
  term, on every replica (by induction: equal prefixes);
- Leader Completeness: a leader holds every entry committed before its term;
- State Machine Safety: a committed entry never changes or disappears, every
  replica applies exactly the committed entries, in order, and reaches the
  same state (a digest chained over the applied entries) at each index.

Never: influences the run; it only reads replicas and the records it keeps.
All checks are incremental, so running them after every step stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nomadkv.raft import Entry, EntryType, StateRole
from nomadkv.raft.entry import NO_LIMIT

if TYPE_CHECKING:
    from nomadkv.raft.log import RaftLog


class Violation(Exception):
    """A safety or liveness property failed in a simulated run."""


class SafetyChecker:
    __slots__ = (
        "commit_cursor",
        "committed",
        "committed_at_term",
        "digests",
        "entries",
        "leader_cursor",
        "leaders",
        "max_committed",
    )

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}
        self.entries: dict[tuple[int, int], tuple[bytes, int, EntryType]] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        self.committed_at_term: dict[int, int] = {}
        self.max_committed = 0
        self.commit_cursor: dict[int, int] = {}
        self.leader_cursor: dict[tuple[int, int], int] = {}
        self.digests: dict[int, int] = {}

    def on_persist(self, node_id: int, log: RaftLog, entries: list[Entry]) -> None:
        """Log Matching: record or compare every persisted (index, term)."""
        prev_term = log.term(entries[0].index - 1)
        known = self.entries
        for e in entries:
            key = (e.index, e.term)
            record = (e.data, prev_term, e.type)
            seen = known.setdefault(key, record)
            if seen != record:
                raise Violation(
                    f"log matching: node {node_id} has entry {key} with a different"
                    f" payload or predecessor term than another replica"
                )
            prev_term = e.term

    def on_commit(self, node_id: int, log: RaftLog, term: int) -> None:
        """A committed entry never changes: compare against (or extend) the record."""
        commit = log.commit_index
        cursor = min(self.commit_cursor.get(node_id, 0), commit)
        lo = max(cursor + 1, log.first_index())
        if lo <= commit:
            committed = self.committed
            for e in log.slice(lo, commit + 1, NO_LIMIT):
                seen = committed.get(e.index)
                if seen is None:
                    committed[e.index] = (e.term, e.data)
                    self.committed_at_term[e.index] = term
                    self.max_committed = max(self.max_committed, e.index)
                elif seen != (e.term, e.data):
                    raise Violation(
                        f"state machine safety: committed entry {e.index} changed on node"
                        f" {node_id}: term {seen[0]} -> {e.term}"
                    )
        self.commit_cursor[node_id] = commit

    def on_leader(self, node_id: int, term: int, log: RaftLog) -> None:
        """Election Safety and Leader Completeness for a replica that is leader now."""
        leader = self.leaders.setdefault(term, node_id)
        if leader != node_id:
            raise Violation(f"election safety: nodes {leader} and {node_id} both lead term {term}")
        key = (node_id, term)
        cursor = self.leader_cursor.get(key, 0)
        top = self.max_committed
        if cursor >= top:
            return
        first = log.first_index()
        committed = self.committed
        at_term = self.committed_at_term
        for index in range(max(cursor + 1, first), top + 1):
            seen = committed.get(index)
            # Entries seen committed by a node in a later term may postdate this (stale) leader.
            if seen is None or at_term[index] > term:
                continue
            if log.term(index) != seen[0]:
                raise Violation(
                    f"leader completeness: leader {node_id} of term {term} lacks committed"
                    f" entry {index} (term {seen[0]})"
                )
        self.leader_cursor[key] = top

    def on_apply(self, node_id: int, entry: Entry, digest: int) -> None:
        seen = self.committed.get(entry.index)
        if seen != (entry.term, entry.data):
            raise Violation(
                f"state machine safety: node {node_id} applied entry {entry.index}"
                f" (term {entry.term}) that is not the committed one"
            )
        self._check_digest(node_id, entry.index, digest)

    def on_restore(self, node_id: int, index: int, digest: int) -> None:
        self._check_digest(node_id, index, digest)

    def _check_digest(self, node_id: int, index: int, digest: int) -> None:
        seen = self.digests.setdefault(index, digest)
        if seen != digest:
            raise Violation(
                f"state machine safety: node {node_id} reached a different state at index {index}"
            )

    def check_roles(self, nodes: list[tuple[int, StateRole, int, RaftLog]]) -> None:
        for node_id, role, term, log in nodes:
            if role is StateRole.LEADER:
                self.on_leader(node_id, term, log)
