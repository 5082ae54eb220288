"""Where a node's time goes under redis-benchmark: a profile, summarised.

Owns the hot-path profile that the throughput work is steered by: a NomadKV
node holding redis-benchmark's keys is driven by ``redis-benchmark -c 50``
(default ``-t get -P 16``, ``appendfsync no``) while a profiler samples it.

Two profilers, because each is blind where the other sees:

- ``py-spy`` (default): Python functions and lines. It samples wall-clock
  time of the running thread, so time the node spends preempted (runnable
  but another process on its core, common on a loaded 2-core machine) is
  charged to the line it was preempted on, mostly the socket write that
  woke redis-benchmark. Read its shares of Python code relative to each
  other. Install it for profiling only: ``.venv/bin/pip install py-spy``.
- ``perf`` (``--profiler perf``): CPU time only, by shared object and C
  symbol (kernel, libpython's eval loop and dict lookups, hiredis, uvloop),
  without Python function names. Needs ``perf`` (linux-perf) and root.

Raw output is saved in bench/results/. Not part of ``make bench``.

Run: ``python -m bench.hotpath [--test get] [--pipeline 16] [--appendfsync no]
[--profiler py-spy|perf] [--seconds 10] [--native]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

from bench import dataset, loadgen, report
from nomadkv.harness import nomadkv_node

KEYSPACE = 100_000
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")
STEADY_STATE_S = 1.0  # redis-benchmark connects its clients before sampling starts


def tool(name: str, install: str) -> str:
    binary = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if binary is None:
        raise SystemExit(f"{name} is not installed: {install}")
    return binary


def short(frame: str) -> tuple[str, str]:
    """(function with its file, function with its file and line) of a py-spy frame."""
    match = FRAME.match(frame)
    if match is None:
        return frame, frame
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    function = f"{match['function']} ({path})"
    line = f"{match['function']} ({path}:{match['line']})" if match["line"] else function
    return function, line


def summarise_py_spy(raw_path: str, top: int) -> str:
    """Self time per function and per line, and inclusive time per function."""
    self_function: Counter[str] = Counter()
    self_line: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(raw_path) as f:
        for entry in f:
            stack, _, count_text = entry.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            total += count
            frames = [short(frame) for frame in stack.split(";")]
            self_function[frames[-1][0]] += count
            self_line[frames[-1][1]] += count
            for function in {function for function, _line in frames}:
                inclusive[function] += count
    if not total:
        return "no samples (was the node busy?)"

    def rows(counter: Counter[str]) -> list[list[str]]:
        return [[name, f"{100 * n / total:5.1f}%"] for name, n in counter.most_common(top)]

    return "\n\n".join(
        [
            f"{total} samples",
            report.table(["self time, by function", "share"], rows(self_function)),
            report.table(["self time, by line", "share"], rows(self_line)),
            report.table(["time including callees", "share"], rows(inclusive)),
        ]
    )


def summarise_perf(data_path: str, top: int) -> str:
    """CPU time by shared object, then by symbol."""
    perf = tool("perf", "apt-get install linux-perf")
    parts = []
    for sort in ("dso", "dso,sym"):
        argv = [perf, "report", "-i", data_path, "--no-children", "--sort", sort, "--stdio"]
        result = subprocess.run([*argv, "-g", "none"], capture_output=True, text=True, check=True)
        lines = [x for x in result.stdout.splitlines() if x.strip() and not x.startswith("#")]
        parts.append("\n".join(lines[:top]))
    return "\n\n".join(parts)


def profiler_argv(profiler: str, pid: int, seconds: int, output: str, native: bool) -> list[str]:
    if profiler == "perf":
        perf = tool("perf", "apt-get install linux-perf")
        argv = [perf, "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-p", str(pid)]
        return [*argv, "-o", output, "--", "sleep", str(seconds)]
    argv = [tool("py-spy", ".venv/bin/pip install py-spy"), "record", "--pid", str(pid)]
    argv += ["--duration", str(seconds), "--rate", "250", "--format", "raw", "--output", output]
    return [*argv, "--native"] if native else argv


def run(
    test: str,
    pipeline: int,
    appendfsync: str,
    profiler: str,
    seconds: int,
    native: bool,
    top: int,
) -> str:
    os.makedirs(report.RESULTS_DIR, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = "perf.data" if profiler == "perf" else "py-spy.txt"
    name = f"hotpath-{test}-P{pipeline}-fsync-{appendfsync}-{stamp}.{suffix}"
    output = os.path.join(report.RESULTS_DIR, name)
    with tempfile.TemporaryDirectory(prefix="nomadkv-bench-") as workdir:
        node = nomadkv_node(os.path.join(workdir, "nomadkv"), appendfsync=appendfsync)
        try:
            node.start()
            dataset.load(node, dataset.set_batches(KEYSPACE, lambda i: b"xxx"))
            # Far more requests than the profile lasts; stopped when the profiler is done.
            argv = loadgen.benchmark_argv(node, test, 100_000_000, 50, pipeline, KEYSPACE)
            sampler = profiler_argv(profiler, node.pid, seconds, output, native)
            print(f"load:    {shlex.join(argv)}")
            print(f"profile: {shlex.join(sampler)}")
            benchmark = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(STEADY_STATE_S)
                subprocess.run(sampler, check=True, stdout=subprocess.DEVNULL)
            finally:
                benchmark.terminate()
                benchmark.wait()
        finally:
            node.stop()
    if profiler == "perf":
        text = summarise_perf(output, top)
    else:
        text = summarise_py_spy(output, top)
    print(f"\n{text}\n\nraw profile: {output}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--test", default="get", help="redis-benchmark -t (get)")
    parser.add_argument("--pipeline", type=int, default=16, help="redis-benchmark -P (16)")
    parser.add_argument("--appendfsync", default="no", choices=("always", "everysec", "no"))
    parser.add_argument("--profiler", default="py-spy", choices=("py-spy", "perf"))
    parser.add_argument("--seconds", type=int, default=10, help="profile length (10)")
    parser.add_argument("--native", action="store_true", help="py-spy: include C frames")
    parser.add_argument("--top", type=int, default=25, help="rows per table (25)")
    args = parser.parse_args(argv)
    run(
        args.test,
        args.pipeline,
        args.appendfsync,
        args.profiler,
        args.seconds,
        args.native,
        args.top,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
