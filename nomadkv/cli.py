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
        help="make a node whose log or snapshots are damaged start again",
        description="Use it, with the node stopped, when the server refuses to start because "
        "its log is damaged before its tail. It cuts the log under DIR/log at its first "
        "damaged record, sets damaged snapshots aside, and if the log then no longer "
        "connects to the newest intact snapshot, sets the log aside (the node starts from "
        "that snapshot). Nothing is deleted: what it takes out of service moves to "
        "DIR/damaged/<time>/. The writes after the damage are lost on this node (a cluster "
        "member catches up from its leader). See docs/storage.md.",
    )
    repair.add_argument("--dir", required=True, help="the node's data directory")
    sub.add_parser("config-reference", help="print the commented reference configuration")
    sub.add_parser("commands-reference", help="print docs/commands.md, from the command table")
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
    if args.command == "commands-reference":
        import nomadkv.server.main  # noqa: F401  (registers every command the server serves)
        from nomadkv.commands.docs import render
        from nomadkv.commands.table import all_commands

        print(render(all_commands()), end="")
        return 0
    if args.command == "repair-log":
        from nomadkv.storage.recovery import DataDirInUse, RepairRefused, repair

        if not os.path.isdir(args.dir):
            print(f"nomadkv: {args.dir} is not a directory", file=sys.stderr)
            return 2
        try:
            report = repair(args.dir)
        except DataDirInUse as exc:
            print(f"nomadkv: {exc}; stop the node first", file=sys.stderr)
            return 1
        except RepairRefused as exc:
            print(f"nomadkv: {exc}", file=sys.stderr)
            return 1
        for line in report.lines():
            print(line)
        return 0
    overrides = {o.name: getattr(args, o.field) for o in OPTIONS}
    try:
        config = load(args.config, overrides)
    except ConfigError as exc:
        print(f"nomadkv: {exc}", file=sys.stderr)
        return 2
    from nomadkv.server.main import run
    from nomadkv.storage.log import CorruptLog
    from nomadkv.storage.recovery import DataDirInUse

    try:
        return run(config, args.config)
    except (CorruptLog, DataDirInUse, OSError) as exc:  # OSError: a port in use, a bad address
        print(f"nomadkv: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
