"""Throughput of the Raft core alone: entries committed per second, 3 nodes, one process.

Usage: python -m bench.raft_throughput [--seconds 5] [--batch 512] [--payload-bytes 100]
                                        [--nodes 3] [--wire] [--profile]

The cluster is three RawNodes on MemoryStorage in one thread; messages are
handed over directly (with --wire, every message is encoded and decoded, as
over the network). Each round the leader proposes a batch, then every node
runs its Ready loop (persist, send, apply, advance) until the cluster is
quiet: the leader commits once a follower acknowledged, and the followers
apply once the next append tells them the commit index; every 100,000
entries each node snapshots and compacts its log, as a server does. No disk,
no sockets: this measures the core's per-entry and per-message overhead.
Prints entries committed per second on the leader and applied per second on
every node, by wall clock and per CPU second of this (single-threaded)
process, the figure that stays honest on a loaded machine.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
from collections import deque

from nomadkv.raft import (
    Config,
    MemoryStorage,
    Message,
    RawNode,
    StateRole,
    decode_message,
    encode_message,
)

COMPACT_EVERY = 100_000
COMPACT_KEEP = 10_000


class Cluster:
    def __init__(self, n: int, wire: bool) -> None:
        ids = tuple(range(1, n + 1))
        self.storages = {i: MemoryStorage() for i in ids}
        self.nodes = {
            i: RawNode(Config(id=i, voters=ids), self.storages[i], random.Random(i)) for i in ids
        }
        self.wire = wire
        self.applied = dict.fromkeys(ids, 0)
        self.inbox: deque[Message] = deque()

    def pump(self) -> None:
        """Run every node's Ready loop and deliver messages until nothing moves."""
        nodes = self.nodes
        inbox = self.inbox
        while True:
            moved = False
            for node_id, node in nodes.items():
                if not node.has_ready():
                    continue
                moved = True
                rd = node.ready()
                storage = self.storages[node_id]
                if rd.snapshot is not None:
                    storage.apply_snapshot(rd.snapshot)
                if rd.entries:
                    storage.append(rd.entries)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                if self.wire:
                    inbox.extend(decode_message(encode_message(m)) for m in rd.messages)
                else:
                    inbox.extend(rd.messages)
                if rd.committed_entries:
                    self.applied[node_id] = rd.committed_entries[-1].index
                node.advance(rd)
                self.compact(node_id)
            while inbox:
                m = inbox.popleft()
                nodes[m.to].step(m)
                moved = True
            if not moved:
                return

    def compact(self, node_id: int) -> None:
        """Snapshot and drop the applied log now and then, as a server does."""
        storage = self.storages[node_id]
        applied = self.applied[node_id]
        if applied - storage.first_index() >= COMPACT_EVERY:
            storage.create_snapshot(applied, self.nodes[node_id].conf_state(), b"")
            storage.compact(applied - COMPACT_KEEP)

    def elect(self) -> RawNode:
        """Tick until a leader emerges (elections need time to pass, as for real)."""
        for _ in range(1000):
            for node in self.nodes.values():
                node.tick()
            self.pump()
            for node in self.nodes.values():
                if node.role is StateRole.LEADER:
                    return node
        raise SystemExit("no leader")


def run(args: argparse.Namespace) -> None:
    cluster = Cluster(args.nodes, args.wire)
    leader = cluster.elect()
    payloads = [bytes([i % 256]) * args.payload_bytes for i in range(args.batch)]
    start_commit = leader.status().commit_index
    start_applied = min(cluster.applied.values())
    began = time.perf_counter()
    began_cpu = time.process_time()
    rounds = 0
    while time.perf_counter() - began < args.seconds:
        leader.propose_batch(payloads)
        cluster.pump()
        rounds += 1
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - began_cpu
    committed = leader.status().commit_index - start_commit
    applied = min(cluster.applied.values()) - start_applied
    mode = "encoded messages" if args.wire else "direct messages"
    print(
        f"raft core, {args.nodes} nodes, {mode}, batch {args.batch} x {args.payload_bytes} B:"
        f" {committed / elapsed:,.0f} entries/s committed on the leader,"
        f" {applied / elapsed:,.0f} entries/s applied on every node"
        f" ({committed * args.payload_bytes / elapsed / 1e6:.1f} MB/s payload,"
        f" {rounds} rounds in {elapsed:.2f}s);"
        f" per CPU second (unaffected by other load): {committed / cpu:,.0f} entries/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--wire", action="store_true", help="encode and decode every message")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, args)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    else:
        run(args)


if __name__ == "__main__":
    main()
