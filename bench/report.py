"""Where results go and how they are printed: JSON files in bench/results/
(ignored by git) and plain-text tables. Never measures anything."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

# NOMADKV_BENCH_RESULTS redirects them (the tests of these scripts use it, so
# that their tiny runs never replace the *-latest.json of a real one).
RESULTS_DIR = os.environ.get("NOMADKV_BENCH_RESULTS") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results"
)


def write_json(kind: str, data: dict[str, Any]) -> str:
    """Write ``data`` to bench/results/<kind>-<timestamp>.json and <kind>-latest.json."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    path = os.path.join(RESULTS_DIR, f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    for target in (path, os.path.join(RESULTS_DIR, f"{kind}-latest.json")):
        with open(target, "w") as f:
            f.write(text)
    return path


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, the rest right."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def machine_lines(info: dict[str, Any]) -> list[str]:
    load = ", ".join(f"{value:.2f}" for value in info["load_average"])
    return [
        f"date {info['date']}, commit {info['commit']}, NomadKV {info['nomadkv']}, "
        f"Python {info['python']}",
        f"{info['cores']} cores ({info['cpu']}), kernel {info['kernel']}, load average {load}",
        f"{info['redis_server']}; {info['redis_benchmark']}",
    ]
