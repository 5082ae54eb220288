"""The ``nomadkv`` command: run a node, repair a log, print the reference config."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from nomadkv import __version__
from nomadkv.config import OPTIONS, ConfigError, load, reference_toml


def _server_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    server = sub.add_parser(
        "server",
        help="run a node",
        description="Run a NomadKV node. Flags override the --config file, which overrides "
        "the defaults. Every option of conf/nomadkv.toml is also a flag.",
    )
    server.add_argument("--config", metavar="FILE", help="TOML configuration file")
    for option in OPTIONS:
        server.add_argument(
            f"--{option.name}",
            dest=option.field,
            metavar=option.name.upper().replace("-", "_"),
            help=f"{option.help} (default: {option.default!r})",
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nomadkv",
        description="NomadKV: a Redis-compatible, strongly consistent, shardable key-value store.",
    )
    parser.add_argument("--version", action="version", version=f"nomadkv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _server_parser(sub)
    repair = sub.add_parser(
        "repair-log",
        help="cut a damaged log at its first bad record",
        description="Cut the write-ahead log under DIR/log at its first damaged record, "
        "deleting every record after it. Use it when the server refuses to start because "
        "of corruption in the middle of the log; the entries after the damage are lost on "
        "this node.",
    )
    repair.add_argument("--dir", required=True, help="the node's data directory")
    sub.add_parser("config-reference", help="print the commented reference configuration")
    cluster = sub.add_parser("cluster", help="local development clusters")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = cluster_sub.add_parser(
        "up",
        help="start a local cluster in the foreground",
        description="Start N cluster-mode nodes on consecutive ports of 127.0.0.1 (bus ports "
        "+10000), wait for a leader, print how to connect; Ctrl-C stops them all.",
    )
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument("--base-port", type=int, default=7001, help="first client port (7001)")
    up.add_argument(
        "--http-base-port",
        type=int,
        default=3001,
        help="first HTTP sidecar port (3001); 0 turns the sidecars off",
    )
    up.add_argument("--dir", default="./cluster-data", help="data directory (./cluster-data)")
    args = parser.parse_args(argv)

    if args.command == "cluster":
        from nomadkv.devcluster import cluster_up

        return cluster_up(args.nodes, args.base_port, args.dir, args.http_base_port)

    if args.command == "config-reference":
        print(reference_toml(), end="")
        return 0
    if args.command == "repair-log":
        from nomadkv.storage.log import repair

        result = repair(os.path.join(args.dir, "log"))
        if result.problem:
            print(
                f"cut the log at {result.problem}: kept {result.records} records, "
                f"removed {result.torn_bytes} bytes"
            )
        else:
            print(f"the log is intact: {result.records} records")
        return 0
    overrides = {o.name: getattr(args, o.field) for o in OPTIONS}
    try:
        config = load(args.config, overrides)
    except ConfigError as exc:
        print(f"nomadkv: {exc}", file=sys.stderr)
        return 2
    from nomadkv.server.main import run

    return run(config, args.config)


if __name__ == "__main__":
    sys.exit(main())
