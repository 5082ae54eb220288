"""Linearizability checker for read/write/incr registers, in the style of Porcupine and Knossos.

Owns: deciding whether a `History` is linearizable against a per-key register
model, and explaining a failure (the key, the operations involved, the longest
linearizable prefix found).

Never: does I/O, reads a clock or uses threads. A time budget arrives as a
``should_stop`` callable from the shell; the search itself only counts.

Algorithm (Wing & Gong's search, Lowe's just-in-time linearization, memoized):
- P-compositionality (Herlihy & Wing's locality; Horn & Kroening): a history is
  linearizable iff each key's sub-history is, so every key is checked alone.
- Per key, a depth-first search builds a linearization one operation at a time.
  An operation may go next iff no unlinearized operation returned before it was
  invoked, i.e. its invoke time is at most the earliest completion among the
  unlinearized ``ok`` operations (equal times count as concurrent). When no
  candidate works, the search backtracks.
- Memoization: a configuration is (set of linearized operations, model state);
  a configuration seen before is not explored twice (Lowe). The set is a
  Python int used as a bitset.
- ``info`` operations (may or may not have taken effect) never complete:
  they stay candidates forever and need not be linearized at all. Three rules
  keep them from multiplying the configurations:
  1. dominance: a configuration with the same ``ok`` operations linearized
     and the same state, but more ``info`` operations spent, can do nothing
     the other cannot; the memo keeps, per (ok set, state), an antichain of
     ``info`` sets and prunes every configuration whose set contains one;
  2. after an ``info`` operation that no read observed, no blind write (one
     whose result does not depend on the state: SET) goes next: in such a
     linearization the ``info`` operation can simply be left out. A
     configuration reached that way is "restricted", and the memo tells the
     two apart (an unrestricted one dominates a restricted one);
  3. ``info`` operations with the same kind and value (every ``info`` INCR)
     are interchangeable once invoked: they are spent in invoke order, so a
     swap of two of them is never explored twice.
- A read that matches the current state and is a candidate is linearized at
  once, without branching: moving a read earlier to a point inside its
  interval where it holds changes no state and breaks no real-time order, so
  if any linearization exists, one with the read here exists too. ``info``
  reads constrain nothing and are dropped, as are ``fail`` operations.
- Candidates are tried ``ok`` operations first (in invoke order), then
  ``info`` ones: an indeterminate write usually is not needed to explain what
  came next.

The search counts configurations; past ``budget`` per key, or when
``should_stop()`` says so, the key's verdict is ``unknown`` (never a guess).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from nomadkv.jepsen.history import History, Operation, Value, validate

Status = Literal["ok", "fail", "unknown"]

DEFAULT_BUDGET = 2_000_000  # configurations per key: 5-10 s of search in CPython
STOP_POLL_EVERY = 1024  # configurations between two calls of should_stop


@dataclass(frozen=True, slots=True)
class RegisterModel:
    """One Redis string key used as an integer register.

    ``write`` (SET) replaces the value; ``read`` (GET) returns it, ``missing``
    for a key never written; ``incr`` (INCR) treats a missing key as 0, adds
    one and returns the new value, and fails without effect on a value that is
    not an integer.
    """

    missing: Value = None

    def init(self) -> Value:
        return self.missing

    def step(self, state: Value, op: Operation) -> tuple[bool, Value]:
        """Apply ``op`` to ``state``: (is it legal here, the state after)."""
        if op.kind == "write":
            return True, op.value
        if op.kind == "read":
            return state == op.value, state
        base = 0 if state is None or state == self.missing else state
        if not isinstance(base, int):
            # INCR on a non-integer: an error reply, no effect.
            return op.outcome == "info", state
        if op.outcome == "info":
            return True, base + 1
        return op.value == base + 1, base + 1

    def is_observation(self, op: Operation) -> bool:
        """True for operations that never change the state."""
        return op.kind == "read"

    def is_blind(self, op: Operation) -> bool:
        """True for operations that are always legal and whose resulting state
        does not depend on the state before them."""
        return op.kind == "write"


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict for one key.

    ``linearization`` is a complete linearization when ``status`` is ok, else
    the longest linearizable prefix the search found; ``state`` is the model
    state after it. On a failure, ``blocked`` is the ``ok`` operation whose
    completion no ordering could reach, and ``pending`` the operations that
    were open (could have gone next) at that point: together, the operations
    involved.
    """

    key: str
    status: Status
    operations: int
    configurations: int
    linearization: tuple[Operation, ...]
    state: Value
    blocked: Operation | None = None
    pending: tuple[Operation, ...] = ()

    def explain(self, prefix_tail: int = 8) -> str:
        """A few lines a person can act on."""
        lines = [
            f"key {self.key!r}: {self.status} ({self.operations} operations, "
            f"{self.configurations} configurations searched)"
        ]
        if self.status == "ok":
            return lines[0]
        done = len(self.linearization)
        shown = self.linearization[-prefix_tail:]
        lines.append(
            f"  longest linearizable prefix: {done} operations, state after it: {self.state!r}"
            + (f"; its last {len(shown)}:" if shown else "")
        )
        lines += [f"    {op.describe()}" for op in shown]
        if self.blocked is not None:
            lines.append(f"  cannot be linearized: {self.blocked.describe()}")
        if self.pending:
            lines.append("  open at that point (none of them can go next):")
            lines += [f"    {op.describe()}" for op in self.pending]
        if self.status == "unknown":
            lines.append("  search stopped (budget or time limit) before a verdict")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Status
    keys: dict[str, KeyResult]

    @property
    def failures(self) -> list[KeyResult]:
        return [k for k in self.keys.values() if k.status == "fail"]

    def explain(self) -> str:
        if self.status == "ok":
            return f"linearizable ({len(self.keys)} keys)"
        worst = [k for k in self.keys.values() if k.status != "ok"]
        head = f"{self.status}: {len(worst)} of {len(self.keys)} keys not shown linearizable"
        return "\n".join([head, *(k.explain() for k in worst)])


def check(
    history: History | Iterable[Operation],
    model: RegisterModel | None = None,
    budget: int = DEFAULT_BUDGET,
    should_stop: Callable[[], bool] | None = None,
) -> CheckResult:
    """Is the history linearizable? Each key is checked on its own."""
    operations = list(history.operations if isinstance(history, History) else history)
    validate(operations)
    model = model or RegisterModel()
    by_key: dict[str, list[Operation]] = {}
    for op in operations:
        by_key.setdefault(op.key, []).append(op)
    results: dict[str, KeyResult] = {}
    stopped = False
    for key in sorted(by_key):
        if stopped:
            ops = by_key[key]
            results[key] = KeyResult(key, "unknown", len(ops), 0, (), model.init())
            continue
        results[key] = check_key(key, by_key[key], model, budget, should_stop)
        stopped = results[key].status == "unknown" and should_stop is not None and should_stop()
    statuses = {r.status for r in results.values()}
    status: Status = "fail" if "fail" in statuses else "unknown" if "unknown" in statuses else "ok"
    return CheckResult(status, results)


# The set of linearized definite operations (indexes in invoke order), as
# (base, window): every operation before ``base`` is in the set, and bit i of
# ``window`` says whether operation base + i is (bit 0 is always clear). Only
# the window, about as wide as the concurrency, is ever copied or shifted, so
# a step costs the same at operation 100 and at operation 100,000.
Done = tuple[int, int]


def _contains(done: Done, j: int) -> bool:
    base, window = done
    return j < base or (window >> (j - base)) & 1 == 1


def _with(done: Done, j: int) -> Done:
    base, window = done
    window |= 1 << (j - base)
    if window & 1:
        ones = (~window & (window + 1)).bit_length() - 1  # trailing ones
        return base + ones, window >> ones
    return base, window


def _size(done: Done) -> int:
    return done[0] + done[1].bit_count()


class _Search:
    """The search over one key's operations (see the module docstring)."""

    def __init__(self, ops: list[Operation], model: RegisterModel) -> None:
        self.model = model
        self.definite = sorted(
            (op for op in ops if op.outcome == "ok"), key=lambda o: (o.invoke, o.complete)
        )
        self.maybe = sorted(
            (op for op in ops if op.outcome == "info" and not model.is_observation(op)),
            key=lambda o: o.invoke,
        )
        self.invoke = [op.invoke for op in self.definite]
        complete = [op.complete for op in self.definite]
        self.complete = [float("inf") if c is None else c for c in complete]
        self.by_completion = sorted(range(len(self.definite)), key=self.complete.__getitem__)
        self.observation = [model.is_observation(op) for op in self.definite]
        self.blind = [model.is_blind(op) for op in self.definite]
        self.path: list[int] = []  # entry j >= 0: definite[j]; j < 0: maybe[-j - 1]
        # (definite set, state, restricted) -> antichain of the info sets explored with it
        self.memo: dict[tuple[Done, Value, bool], list[int]] = {}

    def settle(self, done: Done, state: Value, cursor: int) -> tuple[Done, int]:
        """Linearize every candidate read that holds in ``state`` (no branching
        needed, see the module docstring); return (done, cursor), where cursor
        indexes the earliest-completing unlinearized definite operation in
        ``by_completion`` (len(definite) when all are linearized)."""
        n = len(self.definite)
        step = self.model.step
        while True:
            while cursor < n and _contains(done, self.by_completion[cursor]):
                cursor += 1
            if cursor == n:
                return done, cursor
            deadline = self.complete[self.by_completion[cursor]]
            progressed = False
            j = done[0]
            while j < n and self.invoke[j] <= deadline:
                if (
                    self.observation[j]
                    and not _contains(done, j)
                    and step(state, self.definite[j])[0]
                ):
                    done = _with(done, j)
                    self.path.append(j)
                    progressed = True
                j += 1
            if not progressed:
                return done, cursor

    def open_operations(
        self, done: Done, info_done: int, cursor: int
    ) -> tuple[list[int], list[int]]:
        """The operations that may go next: unlinearized definite ones and
        unspent maybe-ones invoked by the earliest pending completion, each
        list in invoke order."""
        deadline = self.complete[self.by_completion[cursor]]
        open_definite = []
        j = done[0]
        while j < len(self.definite) and self.invoke[j] <= deadline:
            if not _contains(done, j):
                open_definite.append(j)
            j += 1
        open_maybe = []
        i = 0
        while i < len(self.maybe) and self.maybe[i].invoke <= deadline:
            if not (info_done >> i) & 1:
                open_maybe.append(i)
            i += 1
        return open_definite, open_maybe

    def explored_before(self, done: Done, info_done: int, state: Value, restricted: bool) -> bool:
        """Memoize the configuration; True if it, or one that dominates it, was
        seen: same definite set and state, a subset of its info set, and no
        more restricted."""
        if restricted and self._dominated((done, state, False), info_done):
            return True
        seen = self.memo.setdefault((done, state, restricted), [])
        if self._dominated((done, state, restricted), info_done):
            return True
        seen[:] = [m for m in seen if info_done & ~m != 0]  # drop supersets of the new one
        seen.append(info_done)
        return False

    def _dominated(self, memo_key: tuple[Done, Value, bool], info_done: int) -> bool:
        return any(m & ~info_done == 0 for m in self.memo.get(memo_key, ()))

    def candidates(self, done: Done, info_done: int, cursor: int, restricted: bool) -> list[int]:
        """Path entries to try from a configuration, the first to try last
        (the stack pops from the end): definite writes and incrs in invoke
        order, then maybe-ops, the earliest unspent one of each signature only.
        ``restricted``: the configuration was reached by a maybe-op nothing has
        observed yet, so no blind write may follow (it would hide that op)."""
        open_definite, open_maybe = self.open_operations(done, info_done, cursor)
        order = [
            j
            for j in open_definite
            if not self.observation[j] and not (restricted and self.blind[j])
        ]
        signatures = set()
        for i in open_maybe:
            op = self.maybe[i]
            signature = (op.kind, op.value)
            if signature not in signatures and not (restricted and self.model.is_blind(op)):
                signatures.add(signature)
                order.append(-i - 1)
        order.reverse()
        return order

    def operation(self, entry: int) -> Operation:
        return self.definite[entry] if entry >= 0 else self.maybe[-entry - 1]

    def run(self, key: str, budget: int, should_stop: Callable[[], bool] | None) -> KeyResult:
        n = len(self.definite)
        considered = n + len(self.maybe)
        path = self.path
        step = self.model.step
        state = self.model.init()
        done, cursor = self.settle((0, 0), state, 0)
        if cursor == n:
            return self.linearizable(key, considered, 1)
        self.explored_before(done, 0, state, False)
        configurations = 1
        # A frame: a configuration, the path length that reached it, the
        # candidates still to try from it.
        stack = [(done, 0, state, cursor, len(path), self.candidates(done, 0, cursor, False))]
        best = _Prefix(-1, [], state, done, 0, cursor)
        while stack:
            done, info_done, state, cursor, path_len, todo = stack[-1]
            if not todo:
                # A dead end: everything from here failed. The deepest one is
                # the explanation (copied only when it beats the last one).
                if _size(done) > best.count:
                    best = _Prefix(_size(done), path[:path_len], state, done, info_done, cursor)
                stack.pop()
                continue
            entry = todo.pop()
            legal, new_state = step(state, self.operation(entry))
            if not legal:
                continue
            configurations += 1
            if configurations > budget or (
                should_stop is not None and configurations % STOP_POLL_EVERY == 0 and should_stop()
            ):
                if _size(done) > best.count:
                    best = _Prefix(_size(done), path[:path_len], state, done, info_done, cursor)
                return self.partial(key, "unknown", considered, configurations, best)
            del path[path_len:]
            path.append(entry)
            if entry >= 0:
                new_done, new_info = _with(done, entry), info_done
            else:
                new_done, new_info = done, info_done | (1 << (-entry - 1))
            new_done, new_cursor = self.settle(new_done, new_state, cursor)
            if new_cursor == n:
                return self.linearizable(key, considered, configurations)
            # A maybe-op that no read observed right away must not be followed
            # by a blind write: the same linearization without it is valid too.
            restricted = entry < 0 and len(path) == path_len + 1
            if not self.explored_before(new_done, new_info, new_state, restricted):
                todo_next = self.candidates(new_done, new_info, new_cursor, restricted)
                stack.append((new_done, new_info, new_state, new_cursor, len(path), todo_next))
        return self.partial(key, "fail", considered, configurations, best)

    def linearizable(self, key: str, considered: int, configurations: int) -> KeyResult:
        linearization = tuple(self.operation(e) for e in self.path)
        final = self.model.init()
        for op in linearization:
            final = self.model.step(final, op)[1]
        return KeyResult(key, "ok", considered, configurations, linearization, final)

    def partial(
        self, key: str, status: Status, considered: int, configurations: int, best: _Prefix
    ) -> KeyResult:
        open_definite, open_maybe = self.open_operations(best.done, best.info_done, best.cursor)
        blocked = self.definite[self.by_completion[best.cursor]]
        pending = [self.definite[j] for j in open_definite if self.definite[j] is not blocked]
        pending += [self.maybe[i] for i in open_maybe]
        return KeyResult(
            key,
            status,
            considered,
            configurations,
            tuple(self.operation(e) for e in best.path),
            best.state,
            blocked,
            tuple(pending),
        )


@dataclass(frozen=True, slots=True)
class _Prefix:
    """The deepest dead end so far: the configuration with the most definite
    operations linearized from which nothing worked."""

    count: int
    path: list[int]
    state: Value
    done: Done
    info_done: int
    cursor: int


def check_key(
    key: str,
    ops: list[Operation],
    model: RegisterModel,
    budget: int = DEFAULT_BUDGET,
    should_stop: Callable[[], bool] | None = None,
) -> KeyResult:
    """Is this one key's sub-history linearizable?"""
    return _Search(ops, model).run(key, budget, should_stop)
