"""The compiled build (nomadkv/native.py): the patterns mypyc compiles into
different behaviour are absent from the compiled modules, and the paths they
broke behave as in Python. Runs against whichever build is installed."""

from __future__ import annotations

import ast
import os

import pytest

import nomadkv.server.main  # noqa: F401  (registers every command)
from nomadkv import native
from nomadkv.commands.machine import StateMachine, write_specs
from nomadkv.keyspace import Keyspace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Attribute names whose C struct field mypyc names "_" + name: a GCC keyword.
GCC_KEYWORDS = {
    "_inline", "_const", "_signed", "_volatile", "_asm", "_typeof", "_attribute",
    "_restrict", "_real", "_imag", "_complex", "_thread", "_alignof", "_int128",
}  # fmt: skip


def hazards(source: str, path: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # mypyc gives a name one type per function: a second "except B as e"
            # after "except A as e" fails with TypeError when B is caught.
            types: dict[str, set[str]] = {}
            for sub in ast.walk(node):
                if isinstance(sub, ast.ExceptHandler) and sub.name:
                    caught = ast.unparse(sub.type) if sub.type else "BaseException"
                    types.setdefault(sub.name, set()).add(caught)
            found += [
                f"{path}:{node.lineno} {node.name}: 'except ... as {name}' for {sorted(caught)}"
                for name, caught in types.items()
                if len(caught) > 1
            ]
        elif isinstance(node, ast.ClassDef):
            # A class-level default of a compiled exception class is not seen by
            # its instances (AttributeError): set it in __init__.
            if any("Error" in ast.unparse(b) or "Exception" in ast.unparse(b) for b in node.bases):
                found += [
                    f"{path}:{stmt.lineno} {node.name}: class-level attribute on an exception"
                    for stmt in node.body
                    if isinstance(stmt, ast.Assign | ast.AnnAssign)
                ]
        elif isinstance(node, ast.Attribute) and node.attr in GCC_KEYWORDS:
            found.append(f"{path}:{node.lineno} attribute {node.attr}: a C keyword once compiled")
    return found


@pytest.mark.parametrize("path", native.COMPILED)
def test_compiled_modules_avoid_what_mypyc_compiles_differently(path: str) -> None:
    with open(os.path.join(ROOT, path)) as f:
        assert hazards(f.read(), path) == []


def test_the_hazard_check_finds_each_pattern() -> None:
    source = (
        "def f():\n"
        "    try:\n        pass\n    except KeyError as e:\n        pass\n"
        "    except ValueError as e:\n        pass\n"
        "class E(Exception):\n    flag = False\n"
        "def g(x):\n    return x._inline\n"
    )
    assert len(hazards(source, "m.py")) == 3


def test_a_handler_bug_during_apply_is_reported_and_answered() -> None:
    """Found compiled: the second 'except ... as exc' of StateMachine._apply raised
    TypeError for a handler's ValueError instead of reporting it."""
    machine = StateMachine(Keyspace())
    reported: list[Exception] = []
    machine.on_internal_error = lambda index, argv, error: reported.append(error)
    [spec] = write_specs([[b"SET", b"k", b"v"]])
    handler = spec.handler

    def broken(*args: object) -> bytes:
        raise ValueError("a handler bug")

    spec.handler = broken
    try:
        replies = machine.apply(1, 0, [[b"SET", b"k", b"v"]])
    finally:
        spec.handler = handler
    assert replies == [b"-ERR internal error\r\n"]
    assert [str(error) for error in reported] == ["a handler bug"]
    assert machine.applied_index == 1


def test_no_compiled_module_is_older_than_its_source() -> None:
    assert native.stale() == []


def test_stale_means_a_source_edited_after_its_extension_in_a_source_tree(
    tmp_path, monkeypatch
) -> None:
    source = tmp_path / "nomadkv" / "resp" / "request.py"
    source.parent.mkdir(parents=True)
    extension = source.with_name("request.cpython-311-x86_64-linux-gnu.so")
    extension.write_bytes(b"")
    source.write_text("")
    os.utime(extension, (1_000, 1_000))
    monkeypatch.setattr(native, "_ROOT", str(tmp_path))
    assert native.stale() == []  # an installed wheel: no setup.py beside the package
    (tmp_path / "setup.py").write_text("")
    assert native.stale() == ["nomadkv/resp/request.py"]
