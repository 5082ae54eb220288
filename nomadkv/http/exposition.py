"""The Prometheus text exposition format (version 0.0.4), written by hand.

Owns the text of ``/metrics``: ``# HELP`` and ``# TYPE`` lines, label
escaping, number formatting, histogram series. Pure: no I/O, no clock; it
formats what it is given.

Invariants: each metric family is declared once, before its samples; label
values are escaped (backslash, double quote, newline) as the format requires;
a histogram's buckets are cumulative and end with ``le="+Inf"``, whose count
equals ``_count``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_number(value: float) -> str:
    """Integers without a fraction, floats as Python's repr, infinities as Go spells them."""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())
    return "{" + body + "}"


class Exposition:
    """Collects metric families and renders them as one text document."""

    __slots__ = ("_declared", "_lines")

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._declared: set[str] = set()

    def _declare(self, name: str, kind: str, help_text: str) -> None:
        if name in self._declared:
            raise ValueError(f"metric family {name} declared twice")
        self._declared.add(name)
        escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self._lines.append(f"# HELP {name} {escaped}")
        self._lines.append(f"# TYPE {name} {kind}")

    def _sample(self, name: str, labels: Labels, value: float) -> None:
        self._lines.append(f"{name}{format_labels(labels)} {format_number(value)}")

    def gauge(self, name: str, help_text: str, value: float, labels: Labels | None = None) -> None:
        self._declare(name, "gauge", help_text)
        self._sample(name, labels or {}, value)

    def counter(self, name: str, help_text: str, value: float) -> None:
        """A counter without labels; ``name`` ends with ``_total``."""
        self.counter_family(name, help_text, [({}, value)])

    def counter_family(
        self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]
    ) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end with _total")
        self._declare(name, "counter", help_text)
        for labels, value in samples:
            self._sample(name, labels, value)

    def histogram(
        self,
        name: str,
        help_text: str,
        cumulative: Iterable[tuple[float, int]],
        total: float,
        labels: Labels | None = None,
    ) -> None:
        """One histogram: ``cumulative`` is (upper bound, count <= bound), ending with +Inf."""
        self._declare(name, "histogram", help_text)
        labels = dict(labels or {})
        bound, count = -math.inf, 0
        for bound, count in cumulative:
            self._sample(f"{name}_bucket", {**labels, "le": format_number(bound)}, count)
        if bound != math.inf:
            raise ValueError(f"histogram {name} must end with a +Inf bucket")
        self._sample(f"{name}_sum", labels, total)
        self._sample(f"{name}_count", labels, count)

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"
