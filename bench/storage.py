"""Snapshot and recovery figures of one NomadKV node (docs/storage.md).

Owns the storage figures: load N keys with V-byte values (default 1,000,000
keys of 16 bytes) into a node with automatic snapshots off, then measure

- the node's resident memory once loaded (VmRSS);
- a restart from the log alone: spawn to first PONG with every key back,
  and the node's own "recovered ... in X s" figure;
- BGSAVE: the snapshot child's write time (the node's "snapshot at index N
  written in X s" line), the file's size, the child's peak RSS and peak
  private memory (the pages copy-on-write had to copy), sampled, and the
  slowest PING answered while the child was writing (clients are not
  blocked);
- a restart from that snapshot (and the short log after it), with the
  node's own figures for loading the snapshot and for the whole recovery;
- the worst case for replay: a log of N entries of one SET each (a single
  client without pipelining, so no group commit; written with the node's
  own log code in this process, the node itself would take hours under
  appendfsync always), and the restart time from it.

Run alone: ``python -m bench.storage [--keys 1000000] [--value-size 16]``.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from typing import Any

from bench import dataset, machine
from nomadkv.commands.machine import encode_entry
from nomadkv.harness import ServerProcess, nomadkv_node, wait_until
from nomadkv.server.node import KIND_COMMANDS, TERM
from nomadkv.storage.log import Log, stored_bytes

KEY_FORMAT = b"key:%012d"
RECOVERED = re.compile(rb"recovered (\d+) keys, applied index (\d+), in ([0-9.]+) s")
SNAPSHOT_LOADED = re.compile(rb"loaded snapshot \S+: (\d+) keys at index \d+ in ([0-9.]+) s")
SNAPSHOT_WRITTEN = re.compile(rb"snapshot at index (\d+) written in ([0-9.]+) s")


def last_match(node: ServerProcess, pattern: re.Pattern[bytes]) -> tuple[bytes, ...] | None:
    with open(node.log_path, "rb") as f:
        found = pattern.findall(f.read())
    return found[-1] if found else None


def timed_start(node: ServerProcess) -> float:
    started = time.perf_counter()
    node.start(timeout_s=300)
    return time.perf_counter() - started


def dbsize(node: ServerProcess) -> int:
    client = node.client()
    try:
        return int(client.dbsize())
    finally:
        client.close()


def private_bytes(pid: int) -> int:
    """Memory only ``pid`` maps: for a forked child, the pages it had to copy."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Dirty:", "Private_Clean:")):
                total += int(line.split()[1]) * 1024
    return total


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def bgsave_figures(node: ServerProcess) -> dict[str, Any]:
    """BGSAVE, and while the child writes: its peak RSS and the slowest PING."""
    client = node.client(socket_timeout=120)
    before = last_match(node, SNAPSHOT_WRITTEN)
    client.bgsave()
    child = children_of(node.pid)
    peak_child_rss = 0
    peak_child_private = 0
    slowest_ping = 0.0
    pings = 0
    done = threading.Event()

    def ping_loop() -> None:
        nonlocal slowest_ping, pings
        pinger = node.client(socket_timeout=120)
        while not done.is_set():
            started = time.perf_counter()
            pinger.ping()
            slowest_ping = max(slowest_ping, time.perf_counter() - started)
            pings += 1
        pinger.close()

    thread = threading.Thread(target=ping_loop)
    thread.start()
    try:
        while child and os.path.exists(f"/proc/{child[0]}"):
            try:
                peak_child_rss = max(peak_child_rss, machine.rss_bytes(child[0]))
                peak_child_private = max(peak_child_private, private_bytes(child[0]))
            except (FileNotFoundError, RuntimeError, ProcessLookupError, ValueError):
                break
            time.sleep(0.01)
        wait_until(lambda: last_match(node, SNAPSHOT_WRITTEN) != before, 300, "the snapshot")
    finally:
        done.set()
        thread.join()
        client.close()
    written = last_match(node, SNAPSHOT_WRITTEN)
    assert written is not None
    return {
        "snapshot_index": int(written[0]),
        "snapshot_write_seconds": float(written[1]),
        "snapshot_child_peak_rss_bytes": peak_child_rss,
        "snapshot_child_peak_private_bytes": peak_child_private,
        "slowest_ping_during_snapshot_seconds": slowest_ping,
        "pings_during_snapshot": pings,
    }


def run(keys: int, value_size: int) -> dict[str, Any]:
    template = b"v%0" + str(value_size - 1).encode() + b"d"
    result: dict[str, Any] = {"keys": keys, "value_size": value_size}
    with tempfile.TemporaryDirectory(prefix="nomadkv-storage-bench-") as workdir:
        data_dir = os.path.join(workdir, "node")
        node = nomadkv_node(data_dir, snapshot_after_log_bytes="0", snapshot_interval_seconds="0")
        try:
            node.start(timeout_s=60)
            result["command"] = " ".join(node.argv)
            load_s = dataset.load(
                node, dataset.set_batches(keys, lambda i: template % i, KEY_FORMAT)
            )
            assert dbsize(node) == keys
            result["load_seconds"] = load_s
            result["rss_loaded_bytes"] = machine.rss_bytes(node.pid)
            node.stop()
            result["log_bytes"] = stored_bytes(os.path.join(data_dir, "log"))

            result["restart_from_log_seconds"] = timed_start(node)
            assert dbsize(node) == keys
            recovered = last_match(node, RECOVERED)
            result["restart_from_log_recovery_seconds"] = float(recovered[2]) if recovered else None
            result["rss_after_log_restart_bytes"] = machine.rss_bytes(node.pid)

            result.update(bgsave_figures(node))
            result["snapshot_bytes"] = stored_bytes(os.path.join(data_dir, "snapshots"))
            node.stop()

            result["restart_from_snapshot_seconds"] = timed_start(node)
            assert dbsize(node) == keys
            loaded = last_match(node, SNAPSHOT_LOADED)
            recovered = last_match(node, RECOVERED)
            result["snapshot_load_seconds"] = float(loaded[1]) if loaded else None
            result["restart_from_snapshot_recovery_seconds"] = (
                float(recovered[2]) if recovered else None
            )
            result["rss_after_snapshot_restart_bytes"] = machine.rss_bytes(node.pid)
        finally:
            node.stop()
        result.update(worst_case_replay(os.path.join(workdir, "worst"), keys, template))
    return result


def worst_case_replay(data_dir: str, keys: int, template: bytes) -> dict[str, Any]:
    """Restart from a log of ``keys`` entries holding one SET each."""
    log = Log(os.path.join(data_dir, "log"))
    log.open()
    now_ms = int(time.time() * 1000)
    for index in range(1, keys + 1):
        entry = encode_entry(now_ms, [[b"SET", KEY_FORMAT % index, template % index]])
        log.append([(index, TERM, KIND_COMMANDS, entry)])
    log.close()
    node = nomadkv_node(data_dir, snapshot_after_log_bytes="0", snapshot_interval_seconds="0")
    try:
        restart_s = timed_start(node)
        assert dbsize(node) == keys
        recovered = last_match(node, RECOVERED)
    finally:
        node.stop()
    return {
        "single_entry_log_bytes": stored_bytes(os.path.join(data_dir, "log")),
        "restart_from_single_entry_log_seconds": restart_s,
        "restart_from_single_entry_log_recovery_seconds": float(recovered[2])
        if recovered
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-size", type=int, default=16)
    args = parser.parse_args()
    result = run(args.keys, args.value_size)
    mib = 1 << 20
    print(f"== storage: {args.keys:,} keys, {args.value_size}-byte values ==")
    print(f"node: {result['command']}")
    print(f"load:                       {result['load_seconds']:.1f} s")
    print(f"RSS loaded:                 {result['rss_loaded_bytes'] / mib:.1f} MiB")
    print(f"log on disk:                {result['log_bytes'] / mib:.1f} MiB")
    print(
        f"restart from the log:       {result['restart_from_log_seconds']:.2f} s to PONG "
        f"(recovery {result['restart_from_log_recovery_seconds']:.2f} s)"
    )
    print(
        f"snapshot (BGSAVE):          written in {result['snapshot_write_seconds']:.2f} s, "
        f"{result['snapshot_bytes'] / mib:.1f} MiB, child peak RSS "
        f"{result['snapshot_child_peak_rss_bytes'] / mib:.1f} MiB of which private "
        f"(copied) {result['snapshot_child_peak_private_bytes'] / mib:.1f} MiB"
    )
    print(
        f"PING while it wrote:        {result['pings_during_snapshot']} answered, slowest "
        f"{result['slowest_ping_during_snapshot_seconds'] * 1000:.1f} ms"
    )
    print(
        f"restart from the snapshot:  {result['restart_from_snapshot_seconds']:.2f} s to PONG "
        f"(snapshot loaded in {result['snapshot_load_seconds']:.2f} s, recovery "
        f"{result['restart_from_snapshot_recovery_seconds']:.2f} s)"
    )
    print(f"RSS after that restart:     {result['rss_after_snapshot_restart_bytes'] / mib:.1f} MiB")
    print(
        f"worst-case log ({args.keys:,} one-SET entries, "
        f"{result['single_entry_log_bytes'] / mib:.1f} MiB): restart "
        f"{result['restart_from_single_entry_log_seconds']:.2f} s to PONG (recovery "
        f"{result['restart_from_single_entry_log_recovery_seconds']:.2f} s)"
    )


if __name__ == "__main__":
    main()
