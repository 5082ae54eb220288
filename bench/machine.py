"""Facts about the machine and the measured processes.

Owns what a benchmark records besides its own numbers: core count, CPU
model, load average, tool versions, the git commit, and the resident memory
and CPU time of a process read from /proc. Read-only: never changes anything.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from typing import Any

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by ``pid``, all threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5) (utime, stime); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def cpu_stalled_us() -> int | None:
    """Microseconds so far during which some runnable task waited for a CPU (the
    "some total" of /proc/pressure/cpu, PSI); None where the kernel has no PSI.
    Its growth over a run, divided by the run's length, says how contended the
    machine was (0: never a task waiting; 1: always one)."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def uptime_line() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)
    except OSError:
        return "unavailable"
    lines = result.stdout.strip().splitlines()
    return lines[0] if lines else "unavailable"


def git_commit() -> str:
    """HEAD, with "+dirty" when tracked files in nomadkv/ have uncommitted changes
    (the code measured is then not exactly the commit)."""
    commit = _first_line(["git", "rev-parse", "--short", "HEAD"])
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "nomadkv"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    return commit + ("+dirty" if status.stdout.strip() else "")


def describe() -> dict[str, Any]:
    """Everything a result needs to be read later: where, when, with what."""
    import nomadkv

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "nomadkv": nomadkv.__version__,
        "commit": git_commit(),
        "redis_server": _first_line(["redis-server", "--version"]),
        "redis_benchmark": _first_line(["redis-benchmark", "--version"]),
        "load_average": load_average(),
        "uptime": uptime_line(),
    }
