"""Keyspace.scan keeps SCAN's promise: a full iteration returns every key present
from its first call to its last, whatever other writes and other iterations
(which rebuild the order) happen in between, and it ends once writes stop."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nomadkv.keyspace import Keyspace

KEYS = [b"k%d" % i for i in range(40)]
OPERATION = st.tuples(st.sampled_from(["set", "delete", "scan0", "flush"]), st.sampled_from(KEYS))


@settings(max_examples=400, deadline=None)
@given(
    st.sets(st.sampled_from(KEYS)),
    st.lists(st.tuples(st.integers(1, 6), st.lists(OPERATION, max_size=4)), max_size=30),
)
def test_every_key_present_throughout_is_returned(
    initial: set[bytes], rounds: list[tuple[int, list[tuple[str, bytes]]]]
) -> None:
    ks = Keyspace()
    for key in initial:
        ks.set(key, b"v")
    present_throughout = set(initial)
    returned: list[bytes] = []
    cursor, keys = ks.scan(0, 3)
    returned += keys
    for count, operations in rounds:
        if cursor == 0:
            break
        for operation, key in operations:
            if operation == "set":
                ks.set(key, b"w")
            elif operation == "delete":
                ks.delete(key)
                present_throughout.discard(key)
            elif operation == "flush" and key == b"k0":  # rarely
                ks.flush()
                present_throughout.clear()
            else:
                ks.scan(0, 1)  # another client starts an iteration
        cursor, keys = ks.scan(cursor, count)
        returned += keys
    calls = 0
    while cursor != 0:  # no more writes: the iteration must come to an end
        cursor, keys = ks.scan(cursor, 2)
        returned += keys
        calls += 1
        assert calls <= len(KEYS) * 2
    assert present_throughout <= set(returned)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(KEYS), min_size=1), st.integers(1, 10))
def test_without_writes_each_key_comes_once(keys: set[bytes], count: int) -> None:
    ks = Keyspace()
    for key in keys:
        ks.set(key, b"v")
    returned: list[bytes] = []
    cursor = None
    while cursor != 0:
        cursor, page = ks.scan(cursor or 0, count)
        assert page
        returned += page
    assert sorted(returned) == sorted(keys)


def test_cursors_from_elsewhere_end_or_restart() -> None:
    ks = Keyspace()
    for key in KEYS:
        ks.set(key, b"v")
    assert ks.scan(2**64 - 1, 10) == (0, [])
    cursor, page = ks.scan(5, 10)  # a small number: a position in the current order
    assert page == KEYS[5:15] and cursor == 15
    ks.delete(b"k0")
    ks.scan(0, 1)  # rebuilt: the old cursor steps back one place, so nothing is missed
    cursor, page = ks.scan(cursor, 10)
    assert page[0] == b"k15"
