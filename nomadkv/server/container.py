"""Container commands (CLIENT, CONFIG, COMMAND): dispatch to a subcommand.

Owns what every container does alike: find the subcommand, check its arity,
count and time it for INFO commandstats (``cmdstat_client|list``), and the
HELP reply. The gate counts the container itself once per call, which is
what ``total_commands_processed`` adds up.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from nomadkv.commands.table import CommandError, CommandSpec, ReplyT
from nomadkv.resp.reply import Array, Status


def run_subcommand(container: CommandSpec, ctx: Any, argv: list[bytes]) -> ReplyT:
    sub = container.subcommands.get(argv[1].lower())
    if sub is None:
        raise CommandError(
            f"ERR unknown subcommand '{argv[1].decode(errors='replace')[:128]}'. "
            f"Try {container.name.upper()} HELP."
        )
    argc = len(argv)
    if (argc != sub.arity) if sub.arity > 0 else (argc < -sub.arity):
        sub.rejected_calls += 1
        raise CommandError(f"ERR wrong number of arguments for '{sub.name}' command")
    ctx.last_subcommand = sub
    started = perf_counter()
    try:
        return sub.handler(ctx, argv)  # type: ignore[call-arg,arg-type]
    except CommandError:
        sub.failed_calls += 1
        raise
    finally:
        # Counted after the call, as Redis does, so CONFIG RESETSTAT counts itself.
        sub.calls += 1
        sub.usec += (perf_counter() - started) * 1e6


def help_reply(container: str, lines: list[str]) -> ReplyT:
    """Redis's HELP layout: a header line, the given lines, then HELP itself."""
    header = f"{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return Array([Status(line) for line in (header, *lines, "HELP", "    Prints this help.")])
