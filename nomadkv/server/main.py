"""Process entry point of a node: loop, listeners, signals, orderly shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

import uvloop

import nomadkv
import nomadkv.server.admin  # registers the server commands
import nomadkv.server.cluster_commands  # registers CLUSTER, READONLY, READWRITE, ASKING
from nomadkv import native
from nomadkv.config import Config
from nomadkv.server.client import Client
from nomadkv.server.cluster_node import ClusterNode
from nomadkv.server.node import Node

log = logging.getLogger("nomadkv")

_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
}


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=_LOG_LEVELS[level],
        format=f"{os.getpid()}:M %(asctime)s.%(msecs)03d %(levelname).1s %(name)s: %(message)s",
        datefmt="%d %b %Y %H:%M:%S",
    )


async def serve(config: Config, config_file: str | None = None) -> None:
    loop = asyncio.get_running_loop()
    node = ClusterNode(config, loop) if config.cluster_enabled else Node(config, loop)
    node.recover()
    # What recovery built (the keyspace, the log's entries) lives as long as the
    # process: keep it out of the cyclic garbage collector's full passes.
    gc.freeze()
    stop = asyncio.Event()
    node.request_shutdown = stop.set
    servers = []
    for address in config.bind.split():
        servers.append(
            await loop.create_server(
                lambda: Client(node),
                address,
                config.port,
                backlog=config.tcp_backlog,
                reuse_address=True,
            )
        )
    sidecar = None
    if config.http_port:
        from nomadkv.http.sidecar import start_sidecar

        sidecar = await start_sidecar(node)
    if isinstance(node, ClusterNode):
        await node.start_cluster()
    node.start_timers()
    nomadkv.server.admin.attach(node, config_file)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "NomadKV %s ready to accept connections on %s port %d (http %s), pid %d, %s",
        nomadkv.__version__,
        config.bind,
        config.port,
        config.http_port or "off",
        os.getpid(),
        "request path compiled" if native.compiled() else "request path interpreted",
    )
    await stop.wait()
    log.info("shutting down")
    for server in servers:
        server.close()
    if sidecar is not None:
        await sidecar.cleanup()  # in-flight HTTP writes still commit: the node runs on
    for client in list(node.clients.values()):
        client.flush()
    await node.shutdown()
    for client in list(node.clients.values()):
        client.close()
    log.info("NomadKV is now ready to exit, bye bye")


def run(config: Config, config_file: str | None = None) -> int:
    configure_logging(config.loglevel)
    stale = native.stale()
    if stale:
        log.error(
            "compiled modules older than their sources (%s) would run old code: "
            "run `make compile` (nomadkv/native.py)",
            ", ".join(stale),
        )
        return 1
    uvloop.run(serve(config, config_file))
    return 0
