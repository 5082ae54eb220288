"""History records: validation and the JSON-lines form (saved runs re-check identically)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomadkv.jepsen.history import (
    KINDS,
    History,
    HistoryError,
    NemesisEvent,
    Operation,
    dump_lines,
    load_lines,
    validate,
)

times = st.floats(0, 1e6, allow_nan=False)
values = st.none() | st.integers(-(2**63), 2**63) | st.text(max_size=20)


@st.composite
def histories(draw: st.DrawFn) -> History:
    ops = []
    for process in range(draw(st.integers(0, 20))):
        kind = draw(st.sampled_from(KINDS))
        outcome = draw(st.sampled_from(["ok", "fail", "info"]))
        invoke = draw(times)
        complete = None if outcome == "info" and draw(st.booleans()) else invoke + draw(times)
        value = draw(st.integers(1, 10**6)) if kind == "write" else draw(values)
        error = draw(st.sampled_from(["", "MOVED 1 127.0.0.2:7000", "TimeoutError: timed out"]))
        key = draw(st.text(min_size=1, max_size=10))
        ops.append(Operation(process, key, kind, value, invoke, complete, outcome, error))  # type: ignore[arg-type]
    events = [NemesisEvent(t, "start", "kill n0") for t in draw(st.lists(times, max_size=3))]
    meta = draw(st.dictionaries(st.sampled_from(["seed", "note"]), st.integers(0, 100)))
    return History(ops, events, meta)


@given(histories())
def test_json_lines_round_trip(history: History) -> None:
    loaded = load_lines(list(dump_lines(history)))
    assert sorted(loaded.operations, key=repr) == sorted(history.operations, key=repr)
    assert sorted(loaded.nemesis, key=repr) == sorted(history.nemesis, key=repr)
    assert loaded.meta == history.meta


def test_each_record_is_one_line_and_operations_come_in_time_order() -> None:
    late = Operation(0, "k", "write", 5, 2.0, 3.0, "ok")
    early = Operation(1, "k\nx", "read", "multi\nline", 1.0, 4.0, "ok")
    lines = list(dump_lines(History([late, early], [NemesisEvent(1.5, "start", "pause n0")])))
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert [line.split('"type": ')[1][:5] for line in lines] == ['"meta', '"op",', '"neme', '"op",']
    assert load_lines(lines).operations == [early, late]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type": "meta", "format": "other/9"}', "unknown format"),
        ('{"type": "op", "process": 1}', "missing field"),
        ('{"type": "what"}', "unknown record type"),
        (
            '{"type": "op", "process": 1, "key": "k", "kind": "read", "value": [1], '
            '"invoke": 1, "complete": 2, "outcome": "ok"}',
            "value must be",
        ),
        (
            '{"type": "op", "process": 1, "key": "k", "kind": "read", "value": 1, '
            '"invoke": "soon", "complete": 2, "outcome": "ok"}',
            "invoke must be a number",
        ),
        (
            '{"type": "op", "process": 1, "key": "k", "kind": "delete", "value": 1, '
            '"invoke": 1, "complete": 2, "outcome": "ok"}',
            "unknown kind",
        ),
    ],
)
def test_malformed_lines_are_refused_with_the_line_number(line: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        load_lines(["", line])


def test_validate_refuses_impossible_shapes() -> None:
    with pytest.raises(HistoryError, match="unknown outcome"):
        validate([Operation(0, "k", "read", 1, 0, 1, "maybe")])  # type: ignore[arg-type]
    with pytest.raises(HistoryError, match="write without a value"):
        validate([Operation(0, "k", "write", None, 0, 1, "ok")])
    # A process that got "info" may still have that request in flight: it
    # must not issue another one (the runner gives the worker a new process id).
    with pytest.raises(HistoryError, match="two operations in flight"):
        validate(
            [Operation(0, "k", "write", 1, 0, 1, "info"), Operation(0, "k", "read", 1, 2, 3, "ok")]
        )
    validate([Operation(0, "k", "write", 1, 0, 1, "ok"), Operation(0, "k", "read", 1, 1, 3, "ok")])


def test_pure_modules_import_no_io_clock_or_threads() -> None:
    # Until import-linter's contract lists nomadkv.jepsen's pure modules.
    import ast
    import pathlib

    import nomadkv.jepsen

    forbidden = {"asyncio", "socket", "threading", "time", "selectors", "subprocess", "os"}
    package = pathlib.Path(nomadkv.jepsen.__file__).parent
    for name in ("history", "linearizability", "simulated"):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        assert not imported & forbidden, name
        assert not any(m.startswith("nomadkv.") and "jepsen" not in m for m in imported), name
        shell = {"nomadkv.jepsen.runner", "nomadkv.jepsen.nemesis"}
        assert not imported & shell, name
