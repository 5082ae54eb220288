"""``nomadkv cluster up``: a local development cluster in one command.

Starts N cluster-mode nodes on consecutive ports of 127.0.0.1 (bus ports
+10000, HTTP sidecars on their own consecutive ports), waits for a leader,
prints how to connect, and stops them all on Ctrl-C or SIGTERM. Data and
logs stay in the directory, so running it again restarts the same cluster;
the cluster secret is generated once and kept there.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading

from nomadkv.harness import LocalCluster, StartError, port_is_free


def _secret(directory: str) -> str:
    path = os.path.join(directory, "cluster-secret")
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    secret = secrets.token_hex(16)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(secret)
    return secret


def cluster_up(nodes: int, base_port: int, directory: str, http_base_port: int) -> int:
    ports = [base_port + i for i in range(nodes)]
    http_ports = [http_base_port + i for i in range(nodes)] if http_base_port else []
    wanted = ports + [p + 10000 for p in ports] + http_ports
    if nodes < 1 or min(wanted) < 1 or max(wanted) > 65535:
        print(
            "nomadkv: need at least one node, and every port (bus ports are the client "
            "ports + 10000) between 1 and 65535",
            file=sys.stderr,
        )
        return 2
    os.makedirs(directory, exist_ok=True)
    busy = [p for p in wanted if not port_is_free(p)]
    if busy:
        print(f"nomadkv: ports in use: {', '.join(map(str, busy))}", file=sys.stderr)
        return 1
    cluster = LocalCluster(
        directory,
        addresses=[("127.0.0.1", p) for p in ports],
        secret=_secret(directory),
        node_options=[{"http_port": p} for p in http_ports] if http_ports else None,
        proxy_to_leader="yes",
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cluster.start()
        leader = cluster.leader(timeout_s=30)
    except (StartError, TimeoutError) as exc:
        print(f"nomadkv: the cluster did not come up: {exc}", file=sys.stderr)
        cluster.stop()
        return 1
    print(f"NomadKV cluster of {nodes} nodes is up (data and logs in {directory}):")
    for i, node in enumerate(cluster.nodes):
        role = "leader" if node is leader else "follower"
        http = f", http://127.0.0.1:{http_ports[i]}" if http_ports else ""
        print(f"  node {i + 1}: 127.0.0.1:{node.port} ({role}), bus {node.port + 10000}{http}")
    print()
    print("Connect:")
    print(f"  redis-cli -c -p {ports[0]}                      # follows -MOVED to the leader")
    print(f"  redis-cli -p {ports[-1]}                        # any node: followers proxy")
    print(
        f'  .venv/bin/python -c "from redis.cluster import RedisCluster as R; '
        f"print(R(host='127.0.0.1', port={ports[0]}).ping())\""
    )
    # Not --cluster: redis-benchmark 7.0 wants two masters or more (README).
    print(f"  redis-benchmark -p {leader.port} -t set,get            # the leader")
    print("Ctrl-C stops every node.")
    sys.stdout.flush()
    while not stop.wait(0.5):
        dead = [i + 1 for i, node in enumerate(cluster.nodes) if not node.alive()]
        if dead:
            print(
                f"nomadkv: node(s) {dead} exited; see {directory}/node*/server.log", file=sys.stderr
            )
            break
    print("stopping the cluster...")
    cluster.stop()
    return 0
