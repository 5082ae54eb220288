"""docs/commands.md is the command table, rendered: it must be up to date.

Regenerate it with ``nomadkv commands-reference > docs/commands.md``.
"""

from __future__ import annotations

from pathlib import Path

import nomadkv.server.main  # noqa: F401  (registers every command the server serves)
from nomadkv.commands.docs import render
from nomadkv.commands.table import all_commands

DOC = Path(__file__).resolve().parents[2] / "docs" / "commands.md"


def test_commands_doc_is_up_to_date() -> None:
    assert DOC.read_text() == render(all_commands()), (
        "docs/commands.md is stale: run nomadkv commands-reference > docs/commands.md"
    )


def test_every_command_is_documented() -> None:
    for spec in all_commands():
        assert spec.summary, f"{spec.name} has no summary"
        assert f"| `{spec.name.upper()}` |" in DOC.read_text()
