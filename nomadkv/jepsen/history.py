"""The history of a Jepsen-style run: what clients asked for, when, and what they learnt.

Owns: `Operation` (one client request and its outcome), `History` (the operations
plus the nemesis events and run metadata), validation of a history's shape, and
its JSON-lines form, so a long run can be saved and re-checked later.

Never: does I/O or reads a clock. Times are numbers the shell recorded (seconds
of ``time.monotonic`` since the run started); lines in, lines out.

Invariants of a valid history:
- an operation is ``read``, ``write`` or ``incr`` on one key, with an outcome:
  ``ok`` (it took effect, once, between invoke and complete, and ``value`` is
  what it returned or wrote), ``fail`` (it definitely did not take effect), or
  ``info`` (unknown: a timeout or a lost connection; it may take effect at any
  moment after its invocation, or never);
- ``ok`` and ``fail`` operations have ``invoke <= complete``; an ``info``
  operation's ``complete`` is only when the client gave up, not a bound;
- one process has at most one operation in flight: its operations do not
  overlap, and a process that got ``info`` issues nothing more (its request
  may still be in flight; as in Jepsen, the client goes on as a new process).

Values: ``write`` carries the value written; ``read`` the value read (``None``
for a missing key); ``incr`` the value INCR returned. Values are ints when the
server's reply parsed as one, else the reply's text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["read", "write", "incr"]
Outcome = Literal["ok", "fail", "info"]
Value = int | str | None

KINDS: tuple[Kind, ...] = ("read", "write", "incr")
OUTCOMES: tuple[Outcome, ...] = ("ok", "fail", "info")
FORMAT = "nomadkv-jepsen-history/1"


class HistoryError(ValueError):
    """A history (or one of its lines) is malformed."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One client request and what came of it."""

    process: int
    key: str
    kind: Kind
    value: Value
    invoke: float
    complete: float | None
    outcome: Outcome
    error: str = ""  # the error text, for fail and info

    def describe(self) -> str:
        """A one-line human form: ``p3 write k1 7 ok [1.204, 1.209]``."""
        end = "..." if self.complete is None else f"{self.complete:.6f}"
        text = f"p{self.process} {self.kind} {self.key} {self.value!r} {self.outcome}"
        text += f" [{self.invoke:.6f}, {end}]"
        return f"{text} ({self.error})" if self.error else text


@dataclass(frozen=True, slots=True)
class NemesisEvent:
    """Something the nemesis did (or undid), for the reader of a failed run."""

    time: float
    action: str
    detail: str = ""


@dataclass(slots=True)
class History:
    operations: list[Operation] = field(default_factory=list)
    nemesis: list[NemesisEvent] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def validate(operations: Iterable[Operation]) -> None:
    """Raise HistoryError unless the operations form a well-formed history."""
    last_complete: dict[int, float] = {}
    for op in sorted(operations, key=lambda o: o.invoke):
        where = op.describe()
        if op.kind not in KINDS:
            raise HistoryError(f"unknown kind {op.kind!r}: {where}")
        if op.outcome not in OUTCOMES:
            raise HistoryError(f"unknown outcome {op.outcome!r}: {where}")
        if op.outcome != "info" and op.complete is None:
            raise HistoryError(f"{op.outcome} operation without a completion time: {where}")
        if op.complete is not None and op.complete < op.invoke:
            raise HistoryError(f"completes before it is invoked: {where}")
        if op.kind == "write" and op.value is None:
            raise HistoryError(f"write without a value: {where}")
        previous = last_complete.get(op.process)
        if previous is not None and op.invoke < previous:
            raise HistoryError(f"process p{op.process} has two operations in flight: {where}")
        # An info operation may still be in flight: forever, as far as we know.
        in_flight_until = op.complete
        if op.outcome == "info" or in_flight_until is None:
            in_flight_until = float("inf")
        last_complete[op.process] = in_flight_until


def _op_to_json(op: Operation) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "op",
        "process": op.process,
        "key": op.key,
        "kind": op.kind,
        "value": op.value,
        "invoke": op.invoke,
        "complete": op.complete,
        "outcome": op.outcome,
    }
    if op.error:
        record["error"] = op.error
    return record


def dump_lines(history: History) -> Iterator[str]:
    """The history as JSON lines (each ending in a newline): meta, then
    operations and nemesis events in time order."""
    yield json.dumps({"type": "meta", "format": FORMAT, **history.meta}) + "\n"
    records = [(op.invoke, _op_to_json(op)) for op in history.operations]
    records += [
        (e.time, {"type": "nemesis", "time": e.time, "action": e.action, "detail": e.detail})
        for e in history.nemesis
    ]
    records.sort(key=lambda pair: pair[0])
    for _, record in records:
        yield json.dumps(record) + "\n"


def _value(raw: Any, line_no: int) -> Value:
    if raw is None or (isinstance(raw, (int, str)) and not isinstance(raw, bool)):
        return raw
    raise HistoryError(f"line {line_no}: value must be an int, a string or null, not {raw!r}")


def _time(raw: Any, line_no: int, name: str) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    raise HistoryError(f"line {line_no}: {name} must be a number, not {raw!r}")


def load_lines(lines: Iterable[str]) -> History:
    """Parse what `dump_lines` wrote (blank lines are skipped); validates the result."""
    history = History()
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise HistoryError(f"line {line_no}: not JSON: {e}") from None
        if not isinstance(record, dict):
            raise HistoryError(f"line {line_no}: not a JSON object")
        kind = record.get("type")
        try:
            if kind == "meta":
                if record.get("format") != FORMAT:
                    raise HistoryError(f"line {line_no}: unknown format {record.get('format')!r}")
                history.meta = {k: v for k, v in record.items() if k not in ("type", "format")}
            elif kind == "nemesis":
                event_time = _time(record["time"], line_no, "time")
                event = NemesisEvent(event_time, str(record["action"]), str(record["detail"]))
                history.nemesis.append(event)
            elif kind == "op":
                complete = record["complete"]
                op = Operation(
                    process=int(record["process"]),
                    key=str(record["key"]),
                    kind=record["kind"],
                    value=_value(record["value"], line_no),
                    invoke=_time(record["invoke"], line_no, "invoke"),
                    complete=None if complete is None else _time(complete, line_no, "complete"),
                    outcome=record["outcome"],
                    error=str(record.get("error", "")),
                )
                history.operations.append(op)
            else:
                raise HistoryError(f"line {line_no}: unknown record type {kind!r}")
        except KeyError as e:
            raise HistoryError(f"line {line_no}: missing field {e}") from None
    validate(history.operations)
    return history
