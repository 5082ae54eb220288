"""The linearizability checker on known good and bad histories.

Hand-written classic cases, then randomized ones: histories recorded from a
simulated linearizable register (must pass) and the same histories with one
read made stale or impossible (must fail), then a differential test against
a brute-force checker that tries every order of every subset of the
indeterminate operations, on small random histories.
"""

from __future__ import annotations

import itertools
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomadkv.jepsen.history import KINDS, HistoryError, Operation, Value
from nomadkv.jepsen.linearizability import RegisterModel, check, check_key
from nomadkv.jepsen.simulated import impossible_read, linearizable_history, stale_read

# --- a small language for hand-written histories --------------------------------

_next_process = itertools.count()


def op(
    kind: str,
    value: Value,
    invoke: float,
    complete: float | None,
    outcome: str = "ok",
    key: str = "k",
) -> Operation:
    """One operation by a process of its own (so processes never overlap)."""
    return Operation(next(_next_process), key, kind, value, invoke, complete, outcome)  # type: ignore[arg-type]


def w(
    value: int, invoke: float, complete: float | None, outcome: str = "ok", key: str = "k"
) -> Operation:
    return op("write", value, invoke, complete, outcome, key)


def r(
    value: Value, invoke: float, complete: float | None, outcome: str = "ok", key: str = "k"
) -> Operation:
    return op("read", value, invoke, complete, outcome, key)


def inc(
    value: Value, invoke: float, complete: float | None, outcome: str = "ok", key: str = "k"
) -> Operation:
    return op("incr", value, invoke, complete, outcome, key)


def status(*ops: Operation, model: RegisterModel | None = None) -> str:
    return check(list(ops), model).status


# --- classic cases ---------------------------------------------------------------


def test_empty_and_sequential_histories_are_linearizable() -> None:
    assert status() == "ok"
    assert status(r(None, 0, 1), w(1, 2, 3), r(1, 4, 5), w(2, 6, 7), r(2, 8, 9)) == "ok"


def test_stale_read_fails() -> None:
    assert status(w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)) == "fail"


def test_lost_write_fails() -> None:
    # An acknowledged write, then a read that no longer sees it (as after a
    # crash that lost an fsync'd-and-acknowledged record).
    assert status(w(1, 0, 1), r(1, 2, 3), r(None, 4, 5)) == "fail"


def test_read_of_a_value_never_written_fails() -> None:
    assert status(w(1, 0, 1), r(7, 2, 3)) == "fail"
    assert status(r(7, 0, 1)) == "fail"


def test_concurrent_writes_may_land_in_either_order() -> None:
    assert status(w(1, 0, 10), w(2, 0, 10), r(1, 11, 12)) == "ok"
    assert status(w(1, 0, 10), w(2, 0, 10), r(2, 11, 12)) == "ok"
    # ...but in one order only: once 2 was seen after 1, 1 cannot come back.
    assert status(w(1, 0, 10), w(2, 0, 10), r(1, 11, 12), r(2, 13, 14), r(1, 15, 16)) == "fail"


def test_read_concurrent_with_a_write_sees_old_or_new_but_never_new_then_old() -> None:
    assert status(w(1, 0, 1), w(2, 2, 10), r(1, 3, 4)) == "ok"
    assert status(w(1, 0, 1), w(2, 2, 10), r(2, 3, 4)) == "ok"
    assert status(w(1, 0, 1), w(2, 2, 10), r(2, 3, 4), r(1, 5, 6)) == "fail"
    # Two reads overlapping each other and the write may disagree in either order.
    assert status(w(1, 0, 1), w(2, 2, 10), r(2, 3, 6), r(1, 5, 8)) == "ok"


def test_equal_timestamps_count_as_concurrent() -> None:
    assert status(w(1, 0, 5), r(1, 5, 6)) == "ok"
    assert status(w(1, 0, 5), r(None, 5, 6)) == "ok"
    assert status(w(1, 0, 5), r(None, 5.001, 6)) == "fail"


def test_indeterminate_write_may_take_effect_much_later() -> None:
    late = (w(1, 0, 1), w(2, 2, 3, "info"), r(1, 4, 5), r(2, 100, 101))
    assert status(*late) == "ok"
    # ...at most once: 1 cannot come back after 2 was seen.
    assert status(*late, r(1, 200, 201)) == "fail"


def test_indeterminate_write_may_never_take_effect() -> None:
    assert status(w(1, 0, 1), w(2, 2, 3, "info"), r(1, 4, 5), r(1, 100, 101)) == "ok"
    assert status(w(2, 0, 3, "info"), r(None, 100, 101)) == "ok"
    assert status(w(2, 0, None, "info"), r(2, 100, 101)) == "ok"


def test_indeterminate_write_cannot_take_effect_before_it_was_sent() -> None:
    assert status(r(2, 0, 1), w(2, 2, 3, "info")) == "fail"


def test_failed_operations_never_happened() -> None:
    assert status(w(1, 0, 1), w(2, 2, 3, "fail"), r(1, 4, 5)) == "ok"
    assert status(w(1, 0, 1), w(2, 2, 3, "fail"), r(2, 4, 5)) == "fail"
    assert status(inc(None, 0, 1, "fail"), r(None, 2, 3)) == "ok"


def test_indeterminate_and_failed_reads_constrain_nothing() -> None:
    assert status(w(1, 0, 1), r(None, 2, 3, "info"), r(5, 4, 5, "fail"), r(1, 6, 7)) == "ok"


def test_incr_sequences() -> None:
    assert status(inc(1, 0, 1), inc(2, 2, 3), r(2, 4, 5)) == "ok"
    assert status(inc(1, 0, 1), inc(1, 2, 3)) == "fail"  # a lost increment
    assert status(w(10, 0, 1), inc(11, 2, 3), inc(12, 4, 5)) == "ok"
    assert status(w(10, 0, 1), inc(1, 2, 3)) == "fail"
    # Concurrent increments return distinct values in either order...
    assert status(inc(2, 0, 10), inc(1, 0, 10), r(2, 11, 12)) == "ok"
    # ...never the same one twice.
    assert status(inc(2, 0, 10), inc(2, 0, 10)) == "fail"
    # A write overlapping increments may land between them.
    assert status(inc(1, 0, 10), w(100, 0, 10), inc(101, 0, 10), r(101, 11, 12)) == "ok"


def test_indeterminate_incr_counts_once_or_not_at_all() -> None:
    assert status(inc(None, 0, 1, "info"), r(1, 5, 6)) == "ok"
    assert status(inc(None, 0, 1, "info"), r(None, 5, 6), r(1, 7, 8)) == "ok"
    assert status(inc(None, 0, 1, "info"), r(2, 5, 6)) == "fail"
    assert status(inc(None, 0, 1, "info"), inc(None, 0, 1, "info"), r(2, 5, 6)) == "ok"
    assert status(inc(None, 0, 1, "info"), inc(1, 2, 3), inc(3, 4, 5)) == "ok"


def test_incr_on_a_non_integer_never_succeeds() -> None:
    assert status(w("abc", 0, 1), inc(1, 2, 3)) == "fail"  # type: ignore[arg-type]
    assert status(w("abc", 0, 1), inc(None, 2, 3, "info"), r("abc", 4, 5)) == "ok"  # type: ignore[arg-type]


def test_missing_value_is_the_models_choice() -> None:
    assert status(r(0, 0, 1)) == "fail"
    assert status(r(0, 0, 1), inc(1, 2, 3), model=RegisterModel(missing=0)) == "ok"


def test_keys_are_checked_independently_and_the_failing_one_is_named() -> None:
    result = check(
        [
            w(1, 0, 1, key="good"),
            r(1, 2, 3, key="good"),
            w(1, 0, 1, key="bad"),
            w(2, 2, 3, key="bad"),
            r(1, 4, 5, key="bad"),
        ]
    )
    assert result.status == "fail"
    assert result.keys["good"].status == "ok"
    assert [k.key for k in result.failures] == ["bad"]


def test_failure_explanation_names_the_blocked_read_and_the_longest_prefix() -> None:
    w1, w2, stale, other = w(1, 0, 1), w(2, 2, 3), r(1, 4, 6), r(5, 5, 9)
    result = check([w1, w2, stale, other])
    (failure,) = result.failures
    assert failure.blocked == stale
    assert failure.linearization == (w1, w2)
    assert failure.state == 2
    assert failure.pending == (other,)
    text = result.explain()
    assert "key 'k'" in text and "cannot be linearized" in text and stale.describe() in text


def test_linearization_of_a_good_history_is_returned_in_order() -> None:
    a, b, c = w(1, 0, 10), w(2, 0, 10), r(1, 11, 12)
    result = check([a, b, c]).keys["k"]
    assert result.linearization == (b, a, c)
    assert result.state == 1


def test_malformed_histories_are_refused() -> None:
    with pytest.raises(HistoryError, match="two operations in flight"):
        check([Operation(1, "k", "write", 1, 0, 5, "ok"), Operation(1, "k", "read", 1, 2, 3, "ok")])
    with pytest.raises(HistoryError, match="completes before"):
        check([r(None, 5, 4)])
    with pytest.raises(HistoryError, match="without a completion"):
        check([r(None, 5, None)])


# --- budget and time limit ------------------------------------------------------


def _hard_history(writers: int) -> list[Operation]:
    """``writers`` mutually concurrent writes, then an impossible read: the
    search must try every subset and order before it can say fail."""
    ops = [w(v, 0, 100) for v in range(1, writers + 1)]
    return [*ops, r(-1, 101, 102)]


def test_budget_exhausted_means_unknown_not_a_guess() -> None:
    ops = _hard_history(10)
    result = check_key("k", ops, RegisterModel(), budget=500)
    assert result.status == "unknown"
    assert result.configurations > 500 - 1
    assert "stopped" in result.explain()
    assert check(ops, budget=10**6).status == "fail"


def test_should_stop_ends_the_search_and_marks_the_remaining_keys_unknown() -> None:
    polls = []

    def stop() -> bool:
        polls.append(1)
        return True

    ops = [*_hard_history(12), w(1, 0, 1, key="later"), r(1, 2, 3, key="later")]
    result = check(ops, should_stop=stop)
    assert polls
    assert result.status == "unknown"
    assert {k: v.status for k, v in result.keys.items()} == {"k": "unknown", "later": "unknown"}


def test_many_indeterminate_operations_do_not_blow_up_the_search() -> None:
    # 18 writes and 18 increments of unknown outcome, open for the whole run,
    # then 50 write/read pairs and a read nothing explains. A search over
    # every subset of the unknown operations would not finish; dominance,
    # "no blind write right after an unobserved unknown write" and "unknown
    # increments are interchangeable" keep it linear.
    unknown = [w(1000 + i, 0, 1, "info") for i in range(18)]
    unknown += [inc(None, 0, 1, "info") for _ in range(18)]
    sequential = []
    for i in range(50):
        sequential += [w(i, 2 + i, 2.5 + i), r(i, 2.6 + i, 2.7 + i)]
    result = check([*unknown, *sequential, r(-5, 100, 101)], budget=20_000)
    assert result.status == "fail"
    assert result.keys["k"].configurations < 20_000
    lucky = check([*unknown, *sequential, r(1007, 100, 101), inc(1018, 102, 103)])
    assert lucky.status == "ok"


# --- randomized: simulated linearizable stores, and mutations -------------------

SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_simulated_linearizable_histories_pass(seed: int) -> None:
    rng = random.Random(seed)
    history = linearizable_history(
        rng, 400, keys=("a", "b", "c"), processes=8, info_rate=0.03, fail_rate=0.03
    )
    result = check(history)
    assert result.status == "ok", f"seed {seed}: {result.explain()}"


@pytest.mark.parametrize("seed", SEEDS)
def test_an_impossible_read_is_caught(seed: int) -> None:
    rng = random.Random(seed)
    history = linearizable_history(
        rng, 400, keys=("a", "b", "c"), processes=8, info_rate=0.03, fail_rate=0.03
    )
    mutated = impossible_read(history, rng)
    assert mutated is not None
    result = check(mutated)
    assert result.status == "fail", f"seed {seed}"
    (changed,) = [m for m, o in zip(mutated, history, strict=True) if m != o]
    (failure,) = result.failures
    assert failure.key == changed.key


@pytest.mark.parametrize("seed", SEEDS)
def test_a_stale_read_is_caught(seed: int) -> None:
    rng = random.Random(seed)
    history = linearizable_history(
        rng, 400, keys=("a", "b"), processes=8, kinds=("read", "write"), info_rate=0.03
    )
    mutated = stale_read(history, rng)
    assert mutated is not None
    assert check(mutated).status == "fail", f"seed {seed}"


def test_thousands_of_operations_with_indeterminate_ones_check_in_seconds() -> None:
    rng = random.Random(7)
    keys = [f"key{i}" for i in range(8)]
    history = linearizable_history(
        rng, 4000, keys=keys, processes=10, info_rate=0.01, fail_rate=0.02
    )
    assert sum(o.outcome == "info" for o in history) >= 20
    started = time.monotonic()
    assert check(history).status == "ok"
    mutated = impossible_read(history, rng)
    assert mutated is not None
    assert check(mutated).status == "fail"
    assert time.monotonic() - started < 10.0


# --- differential: against a brute-force checker on small histories -------------


def _precedes(a: Operation, b: Operation) -> bool:
    return a.outcome == "ok" and a.complete is not None and a.complete < b.invoke


def _some_order_works(ops: list[Operation], model: RegisterModel) -> bool:
    def extend(placed: list[Operation], rest: list[Operation], state: Value) -> bool:
        if not rest:
            return True
        for candidate in rest:
            if any(_precedes(other, candidate) for other in rest if other is not candidate):
                continue
            legal, after = model.step(state, candidate)
            remaining = [o for o in rest if o is not candidate]
            if legal and extend([*placed, candidate], remaining, after):
                return True
        return False

    return extend([], ops, model.init())


def brute_force(history: list[Operation], model: RegisterModel) -> bool:
    """Linearizable iff, for every key, some subset of its indeterminate
    operations plus all its ok ones has a legal order respecting real time."""
    for key in {o.key for o in history}:
        ops = [o for o in history if o.key == key]
        definite = [o for o in ops if o.outcome == "ok"]
        maybe = [o for o in ops if o.outcome == "info"]
        subsets = itertools.chain.from_iterable(
            itertools.combinations(maybe, size) for size in range(len(maybe) + 1)
        )
        if not any(_some_order_works(definite + list(s), model) for s in subsets):
            return False
    return True


@st.composite
def small_histories(draw: st.DrawFn) -> list[Operation]:
    ops = []
    for process in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(KINDS))
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
        invoke = draw(st.integers(0, 12))
        complete = invoke + draw(st.integers(0, 6))
        if kind == "write":
            value: Value = draw(st.integers(1, 3))
        elif outcome != "ok":
            value = None
        elif kind == "read":
            value = draw(st.sampled_from([None, 1, 2, 3, 4]))
        else:
            value = draw(st.integers(1, 4))
        key = draw(st.sampled_from(["a", "a", "b"]))
        ops.append(Operation(process, key, kind, value, invoke, complete, outcome))  # type: ignore[arg-type]
    return ops


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_histories(), st.sampled_from([None, 0]))
def test_agrees_with_brute_force_on_small_histories(
    history: list[Operation], missing: Value
) -> None:
    model = RegisterModel(missing=missing)
    expected = "ok" if brute_force(history, model) else "fail"
    assert check(history, model).status == expected


def porcupine_style(ops: list[Operation], model: RegisterModel) -> bool:
    """A second, independent checker: Porcupine's checkSingle (Lowe's
    just-in-time linearization over a linked list of call/return entries,
    memoized on (linearized bitset, state)), with indeterminate operations
    returning at +inf, and none of our checker's shortcuts."""
    ops = [o for o in ops if o.outcome == "ok" or (o.outcome == "info" and o.kind != "read")]
    events = sorted(
        (t, kind, i)
        for i, o in enumerate(ops)
        for t, kind in (
            (o.invoke, 0),
            (float("inf") if o.outcome == "info" or o.complete is None else o.complete, 1),
        )
    )
    head = len(events)
    after: list[int | None] = [None] * (head + 1)
    before: list[int | None] = [None] * (head + 1)
    chain = [head, *range(len(events))]
    for a, b in itertools.pairwise(chain):
        after[a], before[b] = b, a
    return_of = {i: e for e, (_, kind, i) in enumerate(events) if kind == 1}

    def unlink(e: int) -> None:
        prev, nxt = before[e], after[e]
        if prev is not None:
            after[prev] = nxt
        if nxt is not None:
            before[nxt] = prev

    def relink(e: int) -> None:
        prev, nxt = before[e], after[e]
        if prev is not None:
            after[prev] = e
        if nxt is not None:
            before[nxt] = e

    state, linearized = model.init(), 0
    seen: set[tuple[int, Value]] = set()
    calls: list[tuple[int, Value]] = []
    entry = after[head]
    while after[head] is not None:
        assert entry is not None
        _, kind, i = events[entry]
        if kind == 0:
            legal, new_state = model.step(state, ops[i])
            if legal and (linearized | 1 << i, new_state) not in seen:
                seen.add((linearized | 1 << i, new_state))
                calls.append((entry, state))
                state, linearized = new_state, linearized | 1 << i
                unlink(entry)
                unlink(return_of[i])
                entry = after[head]
            else:
                entry = after[entry]
        else:
            if not calls:
                return False
            entry, state = calls.pop()
            i = events[entry][2]
            linearized &= ~(1 << i)
            relink(return_of[i])
            relink(entry)
            entry = after[entry]
    return True


def test_agrees_with_a_porcupine_style_search_on_medium_histories() -> None:
    rng = random.Random(2024)
    verdicts = []
    for _ in range(1500):
        kinds = rng.choice([KINDS, ("read", "write"), ("read", "incr")])
        ops = []
        for process in range(rng.randrange(5, 16)):
            kind = rng.choice(kinds)
            outcome = rng.choice(["ok", "ok", "info", "info", "fail"])
            invoke = rng.randrange(30)
            if kind == "write":
                value: Value = rng.randrange(1, 4)
            elif outcome != "ok":
                value = None
            else:
                value = rng.choice([None, 1, 2, 3, 4, 5]) if kind == "read" else rng.randrange(1, 6)
            complete = invoke + rng.randrange(10)
            ops.append(Operation(process, "k", kind, value, invoke, complete, outcome))  # type: ignore[arg-type]
        expected = porcupine_style(ops, RegisterModel())
        assert check(ops).status == ("ok" if expected else "fail"), ops
        verdicts.append(expected)
    assert 0.1 < sum(verdicts) / len(verdicts) < 0.9


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.booleans())
def test_agrees_with_brute_force_on_simulated_histories(seed: int, mutate: bool) -> None:
    rng = random.Random(seed)
    history = linearizable_history(rng, 9, processes=4, info_rate=0.15, fail_rate=0.1)
    if mutate:
        history = impossible_read(history, rng) or history
        changed = history[rng.randrange(len(history))]
        if changed.kind == "read" and changed.outcome == "ok":
            index = history.index(changed)
            history[index] = Operation(
                changed.process,
                changed.key,
                "read",
                rng.choice([None, 1000, 2000, 1, 2]),
                changed.invoke,
                changed.complete,
                "ok",
            )
    model = RegisterModel()
    expected = "ok" if brute_force(history, model) else "fail"
    assert check(history, model).status == expected
