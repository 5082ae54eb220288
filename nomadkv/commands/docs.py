"""docs/commands.md, rendered from the command table. Pure.

The table is the one source of a command's name, arity, flags, key
positions and summary; this module turns it into Markdown, one section per
group, subcommands under their container, so the page cannot drift from
what the server does (a test compares the page with a fresh rendering).
"""

from __future__ import annotations

from collections.abc import Iterable

from nomadkv.commands.table import CommandSpec, KeySpec

GROUP_TITLES = {
    "string": "Strings",
    "generic": "Keys and expiry",
    "server": "Server",
    "connection": "Connection",
    "cluster": "Cluster",
}

HEADER = """\
# Commands

Every command NomadKV serves, from its command table
(`nomadkv/commands/table.py`), which also drives arity checks, `COMMAND`
and key routing. Do not edit by hand: regenerate with
`python tests/commands/test_commands_doc.py`.

Arity follows Redis: a positive number is the exact count of arguments,
the command name included; a negative one is the minimum. Keys gives the
key positions as Redis's (first, last, step). Deliberate differences from
Redis are listed in [compatibility.md](compatibility.md).
"""


def _keys(spec: KeySpec) -> str:
    if spec.first == 0:
        return "-"
    return f"{spec.first}, {spec.last}, {spec.step}"


def _row(name: str, spec: CommandSpec) -> str:
    flags = ", ".join(spec.flags) or "-"
    summary = spec.summary.replace("|", "\\|")
    return f"| `{name}` | {spec.arity} | {flags} | {_keys(spec.keys)} | {spec.since} | {summary} |"


def render(specs: Iterable[CommandSpec]) -> str:
    """The whole page for ``specs`` (each command once)."""
    by_group: dict[str, list[CommandSpec]] = {}
    for spec in specs:
        by_group.setdefault(spec.group, []).append(spec)
    order = [g for g in GROUP_TITLES if g in by_group] + sorted(set(by_group) - set(GROUP_TITLES))
    lines = [HEADER]
    for group in order:
        lines += [
            f"## {GROUP_TITLES.get(group, group.capitalize())}",
            "",
            "| Command | Arity | Flags | Keys | Since | Summary |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for spec in sorted(by_group[group], key=lambda s: s.name):
            lines.append(_row(spec.name.upper(), spec))
            for sub in sorted(spec.subcommands.values(), key=lambda s: s.name):
                lines.append(_row(sub.name.replace("|", " ").upper(), sub))
        lines.append("")
    return "\n".join(lines)
