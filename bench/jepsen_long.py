"""The long Jepsen-style run: minutes of concurrent clients under a nemesis, then the checker.

Starts its own nodes on loopback: a local cluster (``--nodes 3`` or 5, on
127.0.0.2..., faults kill, pause and, when iptables works here, partitions:
isolate, split, asymmetric) or one standalone node (``--nodes 1``: kill and
pause). Clients run SET/GET/INCR on a few keys; the history is saved as JSON
lines under bench/results/ (``jepsen-<time>-seed<seed>.jsonl``) before it is
checked, with a summary in ``jepsen-<time>.json`` and ``jepsen-latest.json``;
also when the run breaks (a node that cannot restart). The nodes' data and
logs stay in a temporary directory (printed) unless the history is linearizable.

Re-check a saved history: ``python -m nomadkv.jepsen check bench/results/<file>.jsonl``.

Run: ``python -m bench.jepsen_long [--minutes 5] [--seed N] [--nodes 3] [--clients 8]
[--keys 5] [--faults kill,pause,isolate,split,asymmetric] [--fault-seconds 0.5 4]
[--timeout 1.0]``. Exit status: 0 linearizable, 1 not, 2 unknown.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from typing import Any

from bench import machine, report
from nomadkv.harness import LocalCluster, ServerProcess, nomadkv_node
from nomadkv.jepsen.nemesis import FAULT_KINDS, PARTITIONS, FaultKind, Firewall
from nomadkv.jepsen.runner import Workload, run

EXIT_CODES = {"ok": 0, "fail": 1, "unknown": 2}


def fault_kinds(text: str | None, nodes: int) -> tuple[FaultKind, ...]:
    """The requested faults, or the default: everything this setup can do."""
    if text is not None:
        kinds = tuple(k.strip() for k in text.split(",") if k.strip())
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise SystemExit(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
        return kinds  # type: ignore[return-value]
    if nodes == 1:
        return ("kill", "pause")
    why_not = Firewall.why_unavailable()
    if why_not:
        print(f"no partitions: {why_not}")
        return ("kill", "pause")
    return FAULT_KINDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jepsen_long", description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the faulty phase")
    parser.add_argument("--seed", type=int, help="schedule seed (default: random, printed)")
    parser.add_argument("--nodes", type=int, default=3, help="1 = standalone node, else cluster")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--faults", help=f"comma-separated, of {', '.join(FAULT_KINDS)}")
    parser.add_argument("--fault-seconds", type=float, nargs=2, default=(0.5, 4.0))
    parser.add_argument("--gap-seconds", type=float, nargs=2, default=(1.0, 5.0))
    parser.add_argument("--timeout", type=float, default=1.0, help="client socket timeout (s)")
    parser.add_argument("--check-minutes", type=float, default=10.0, help="checker time limit")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    kinds = fault_kinds(args.faults, args.nodes)
    if args.nodes < 2 and set(kinds) & set(PARTITIONS):
        raise SystemExit("partitions need --nodes 2 or more")
    workload = Workload(
        keys=tuple(f"jepsen:{i}" for i in range(args.keys)),
        clients=args.clients,
        timeout_s=args.timeout,
        connect_timeout_s=args.timeout,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(report.RESULTS_DIR, exist_ok=True)
    history_path = os.path.join(report.RESULTS_DIR, f"jepsen-{stamp}-seed{seed}.jsonl")
    print(
        f"seed {seed}: {args.minutes} min, {args.nodes} node(s), faults {','.join(kinds)}, "
        f"{args.clients} clients on {args.keys} keys; history -> {history_path}",
        flush=True,
    )
    started = time.monotonic()
    data = tempfile.mkdtemp(prefix="nomadkv-jepsen-")
    print(f"node data and logs in {data} (removed if the history is linearizable)", flush=True)
    with ExitStack() as stack:
        nodes: list[ServerProcess]
        if args.nodes == 1:
            nodes = [nomadkv_node(os.path.join(data, "node"), appendfsync="always").start()]
            stack.callback(nodes[0].stop)
        else:
            cluster = LocalCluster(data, nodes=args.nodes, appendfsync="always").start()
            stack.callback(cluster.stop)
            cluster.leader(timeout_s=30.0)
            nodes = cluster.nodes
        firewall = None
        if set(kinds) & set(PARTITIONS):
            firewall = stack.enter_context(Firewall())
        result = run(
            nodes,
            lambda i: nodes[i].start(),
            duration_s=args.minutes * 60,
            seed=seed,
            faults=kinds,
            workload=workload,
            firewall=firewall,
            fault_s=tuple(args.fault_seconds),
            gap_s=tuple(args.gap_seconds),
            recovery_s=5.0,
            check_timeout_s=args.check_minutes * 60,
            history_path=history_path,
        )
    elapsed = time.monotonic() - started
    if result.check.status == "ok":
        shutil.rmtree(data)
    keys: dict[str, Any] = {
        key: {"status": k.status, "operations": k.operations, "configurations": k.configurations}
        for key, k in result.check.keys.items()
    }
    summary = {
        "machine": machine.describe(),
        "seed": seed,
        "nodes": args.nodes,
        "faults": list(kinds),
        "minutes": args.minutes,
        "elapsed_s": round(elapsed, 1),
        "history": os.path.relpath(history_path),
        "status": result.check.status,
        "counts": result.counts,
        "keys": keys,
    }
    print(f"wrote {report.write_json('jepsen', summary)}")
    print(result.summary())
    print(f"{elapsed:.0f} s in all; re-check: python -m nomadkv.jepsen check {history_path}")
    return EXIT_CODES[result.check.status]


if __name__ == "__main__":
    sys.exit(main())
