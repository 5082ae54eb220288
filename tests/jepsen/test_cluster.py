"""The Jepsen-style test of issue 4, short form: a 3-node cluster under kills,
pauses and partitions yields a linearizable history.

Concurrent clients do GET/SET/INCR on a few keys for 20 s while the nemesis
plays a seeded schedule of kill -9 + restart, SIGSTOP/SIGCONT, an isolated
node, a majority/minority split and an asymmetric cut (iptables rules between
the nodes' 127.0.0.x addresses, scoped to this cluster's ports). Set
``JEPSEN_SEED`` to replay a schedule; the history is saved under the test's
temporary directory. The long run is ``python -m bench.jepsen_long``.
"""

from __future__ import annotations

import os

from nomadkv.harness import LocalCluster
from nomadkv.jepsen.nemesis import Firewall
from nomadkv.jepsen.runner import run

SEED = int(os.environ.get("JEPSEN_SEED", "20261127"))


def test_cluster_history_is_linearizable_under_faults(tmp_path) -> None:
    cluster = LocalCluster(str(tmp_path / "cluster")).start()
    history_path = str(tmp_path / f"history-seed{SEED}.jsonl")
    try:
        cluster.leader(timeout_s=15)
        with Firewall() as firewall:
            result = run(
                cluster.nodes,
                lambda i: cluster.nodes[i].start(),
                duration_s=20,
                seed=SEED,
                faults=("kill", "pause", "isolate", "split", "asymmetric"),
                firewall=firewall,
                history_path=history_path,
            )
    finally:
        cluster.stop()
    assert result.check.status == "ok", f"seed {SEED}: {result.summary()} ({history_path})"
    ok = result.counts
    assert ok.get("write:ok", 0) > 100 and ok.get("read:ok", 0) > 100, result.summary()
    assert any(k.startswith("nemesis:") for k in ok), "the nemesis injected no fault"
