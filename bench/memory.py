"""Memory per key and restart time, NomadKV against redis-server.

Owns the memory and restart figures of the foundation issue: load the same
N keys with random V-byte values (default 1,000,000 keys of 16 bytes) into a NomadKV
node (default options: appendfsync always) and an in-memory redis-server,
compare their resident memory (VmRSS from /proc/<pid>/status; target: NomadKV
at most 2.5x redis), then restart NomadKV and time how long until it answers
PING again with every key back (target: under 5 s):

- from the log alone (no snapshot exists: automatic snapshots are off);
- after a snapshot: SAVE where the node has it; otherwise the node is
  restarted once with ``snapshot-after-log-bytes 1`` so its size policy
  takes a snapshot (which truncates the log), before the timed restart.

Restart time is measured from spawning the process to the first PONG, so it
includes starting Python; the node's own "recovered ... in X s" log line is
reported next to it. redis-server's restart from an RDB file (SAVE) of the
same keys is measured the same way, for reference.

Run alone: ``python -m bench.memory [--keys 1000000] [--value-size 16]``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis

from bench import dataset, machine, report
from nomadkv.harness import ServerProcess, nomadkv_node, redis_server, wait_until
from nomadkv.storage.log import stored_bytes
from nomadkv.storage.snapshot import list_snapshots

RSS_RATIO_TARGET = 2.5
RESTART_TARGET_S = 5.0
KEY_FORMAT = b"key:%012d"  # 16 bytes
NO_AUTOMATIC_SNAPSHOTS: dict[str, Any] = {
    "snapshot_after_log_bytes": "0",
    "snapshot_interval_seconds": "0",
}
VALUE_SEED = 20260101
RECOVERED = re.compile(rb"recovered (\d+) keys, applied index (\d+), in ([0-9.]+) s")


def values(count: int, size: int) -> Callable[[int], bytes]:
    """Distinct-looking values of exactly ``size`` bytes, random (seeded) so that
    neither server nor the snapshot's compressor profits from a pattern."""
    blob = random.Random(VALUE_SEED).randbytes(count * size)
    return lambda i: blob[i * size : (i + 1) * size]


def mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def dbsize(server: ServerProcess) -> int:
    client = server.client()
    try:
        return int(client.dbsize())
    finally:
        client.close()


def timed_start(server: ServerProcess) -> float:
    """Start ``server``; the seconds from spawning it to its first PONG."""
    started = time.perf_counter()
    server.start(timeout_s=120)
    return time.perf_counter() - started


def reported_recovery_s(node: ServerProcess) -> float | None:
    """The node's own figure from its last "recovered N keys ... in X s" log line."""
    try:
        with open(node.log_path, "rb") as f:
            matches = RECOVERED.findall(f.read())
    except OSError:
        return None
    return float(matches[-1][2]) if matches else None


def take_snapshot(node: ServerProcess, data_dir: str) -> str:
    """Leave a snapshot covering every key in ``data_dir``, the node stopped.
    Returns how it was taken."""
    client = node.client()
    try:
        client.execute_command("SAVE")
        method = "SAVE"
    except redis.ResponseError as exc:
        if "unknown command" not in str(exc):
            raise
        method = ""
    finally:
        client.close()
    node.stop()
    if method:
        return method
    # No SAVE yet: let the size policy take one on the node's first second tick.
    policy = nomadkv_node(data_dir, port=node.port, snapshot_after_log_bytes="1")
    policy.start(timeout_s=120)
    try:
        wait_until(lambda: snapshot_covers_log(data_dir), 120, "a snapshot that truncates the log")
    finally:
        policy.stop()
    return "snapshot-after-log-bytes 1 (the node has no SAVE yet)"


def snapshot_covers_log(data_dir: str) -> bool:
    """A complete snapshot exists and no log segment holds entries it covers
    (the node truncates the log right after the snapshot is durable)."""
    snapshots = list_snapshots(os.path.join(data_dir, "snapshots"))
    if not snapshots:
        return False
    newest = max(index for index, _path in snapshots)
    log_dir = os.path.join(data_dir, "log")
    segments = [int(name.split(".")[0]) for name in os.listdir(log_dir) if name.endswith(".seg")]
    return all(first > newest for first in segments)


def run(keys: int = 1_000_000, value_size: int = 16) -> dict[str, Any]:
    before = machine.describe()
    print(f"== memory and restart: {keys:,} keys, {value_size}-byte values ==")
    print("\n".join(report.machine_lines(before)))
    result: dict[str, Any] = {"keys": keys, "value_size": value_size}
    value_of = values(keys, value_size)
    with tempfile.TemporaryDirectory(prefix="nomadkv-bench-") as workdir:
        redis_dir = os.path.join(workdir, "redis")
        node_dir = os.path.join(workdir, "nomadkv")
        reference = redis_server(redis_dir)
        node = nomadkv_node(node_dir, **NO_AUTOMATIC_SNAPSHOTS)
        try:
            for name, server in (("redis", reference), ("nomadkv", node)):
                server.start(timeout_s=120)
                print(f"{name}: {shlex.join(server.argv)}")
                empty = machine.rss_bytes(server.pid)
                batches = dataset.set_batches(keys, value_of, KEY_FORMAT)
                load_s = dataset.load(server, batches)
                count = dbsize(server)
                if count != keys:
                    raise RuntimeError(f"{name} holds {count} keys after loading {keys}")
                loaded = machine.rss_bytes(server.pid)
                result[name] = {
                    "command": shlex.join(server.argv),
                    "rss_empty_bytes": empty,
                    "rss_loaded_bytes": loaded,
                    "bytes_per_key": loaded / keys,
                    "added_bytes_per_key": (loaded - empty) / keys,
                    "load_seconds": load_s,
                }
                print(
                    f"  loaded in {load_s:.1f} s; RSS empty {mib(empty)}, loaded {mib(loaded)}, "
                    f"{(loaded - empty) / keys:.0f} bytes per key added"
                )

            redis_client = reference.client()
            redis_client.execute_command("SAVE")
            redis_client.close()
            reference.stop()
            redis_restart_s = timed_start(reference)
            if dbsize(reference) != keys:
                raise RuntimeError("redis-server lost keys over its restart")
            result["redis"]["restart_from_rdb_seconds"] = redis_restart_s
            reference.stop()

            node.stop()
            result["nomadkv"]["log_bytes"] = stored_bytes(os.path.join(node_dir, "log"))
            from_log_s = timed_start(node)
            if dbsize(node) != keys:
                raise RuntimeError("NomadKV lost keys over a restart from its log")
            result["nomadkv"]["restart_from_log_seconds"] = from_log_s
            result["nomadkv"]["restart_from_log_reported_seconds"] = reported_recovery_s(node)
            result["nomadkv"]["rss_after_log_restart_bytes"] = machine.rss_bytes(node.pid)

            result["nomadkv"]["snapshot_method"] = take_snapshot(node, node_dir)
            result["nomadkv"]["snapshot_bytes"] = stored_bytes(os.path.join(node_dir, "snapshots"))
            from_snapshot_s = timed_start(node)
            if dbsize(node) != keys:
                raise RuntimeError("NomadKV lost keys over a restart from its snapshot")
            result["nomadkv"]["restart_from_snapshot_seconds"] = from_snapshot_s
            result["nomadkv"]["restart_from_snapshot_reported_seconds"] = reported_recovery_s(node)
            result["nomadkv"]["rss_after_snapshot_restart_bytes"] = machine.rss_bytes(node.pid)
        finally:
            node.stop()
            reference.stop()

    ours, theirs = result["nomadkv"], result["redis"]
    result["rss_ratio"] = ours["rss_loaded_bytes"] / theirs["rss_loaded_bytes"]
    result["rss_ratio_passed"] = result["rss_ratio"] <= RSS_RATIO_TARGET
    restart_worst = max(ours["restart_from_log_seconds"], ours["restart_from_snapshot_seconds"])
    result["restart_passed"] = restart_worst < RESTART_TARGET_S
    result["table"] = results_table(result)
    result["machine"] = before
    result["load_average_after"] = machine.load_average()
    print(f"\n{result['table']}")
    print(f"before: {before['uptime']}\nafter:  {machine.uptime_line()}")
    result["path"] = report.write_json("memory", result)
    print(f"results: {result['path']}")
    return result


def results_table(result: dict[str, Any]) -> str:
    ours, theirs = result["nomadkv"], result["redis"]

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    def verdict(passed: bool) -> str:
        return "pass" if passed else "FAIL"

    rows = [
        [
            "RSS loaded",
            mib(theirs["rss_loaded_bytes"]),
            mib(ours["rss_loaded_bytes"]),
            f"{result['rss_ratio']:.2f}x",
            f"<= {RSS_RATIO_TARGET}x",
            verdict(result["rss_ratio_passed"]),
        ],
        [
            "bytes per key (RSS / keys)",
            f"{theirs['bytes_per_key']:.0f}",
            f"{ours['bytes_per_key']:.0f}",
            f"{ours['bytes_per_key'] / theirs['bytes_per_key']:.2f}x",
            "",
            "",
        ],
        [
            "bytes per key added by the load",
            f"{theirs['added_bytes_per_key']:.0f}",
            f"{ours['added_bytes_per_key']:.0f}",
            f"{ours['added_bytes_per_key'] / theirs['added_bytes_per_key']:.2f}x",
            "",
            "",
        ],
        [
            "load time (pipelined SETs)",
            seconds(theirs["load_seconds"]),
            seconds(ours["load_seconds"]),
            "",
            "",
            "",
        ],
        [
            "restart from log (node's own figure)",
            "",
            f"{seconds(ours['restart_from_log_seconds'])} "
            f"({seconds(ours['restart_from_log_reported_seconds'])})",
            "",
            f"< {RESTART_TARGET_S:.0f} s",
            verdict(ours["restart_from_log_seconds"] < RESTART_TARGET_S),
        ],
        [
            "restart from snapshot (node's own figure)",
            seconds(theirs["restart_from_rdb_seconds"]) + " (RDB)",
            f"{seconds(ours['restart_from_snapshot_seconds'])} "
            f"({seconds(ours['restart_from_snapshot_reported_seconds'])})",
            "",
            f"< {RESTART_TARGET_S:.0f} s",
            verdict(ours["restart_from_snapshot_seconds"] < RESTART_TARGET_S),
        ],
    ]
    headers = ["", "redis-server", "nomadkv", "ratio", "target", ""]
    notes = (
        f"log {mib(ours['log_bytes'])}, snapshot {mib(ours['snapshot_bytes'])} "
        f"(taken by {ours['snapshot_method']})"
    )
    return report.table(headers, rows) + "\n" + notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys to load (1,000,000)")
    parser.add_argument("--value-size", type=int, default=16, help="bytes per value (16)")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    if args.value_size < 1:
        parser.error("--value-size must be at least 1")
    result = run(args.keys, args.value_size)
    missed = not (result["rss_ratio_passed"] and result["restart_passed"])
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
