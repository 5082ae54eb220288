"""The replicated state machine: log entries in, keyspace changes and replies out.

Owns the entry format and the order of application. Pure: no I/O, no clock.

An entry is a batch of write commands proposed in one event-loop turn,
stamped with the proposer's wall clock (``now_ms``). Every replica applies
the same entry with the same ``now_ms``, so expiry decisions made during
apply agree everywhere. Deadlines inside the commands are already absolute
(``prepare`` rewrote them).

Entries are encoded with ``marshal`` (format version 4, stable since Python
3.4): it is 10x faster than RESP encoding in Python, which matters because
every write pays it (see docs/decisions.md). ``decode_entry`` checks the
shape of what it loads and rejects anything else.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable

from nomadkv.commands.keys import INTERNAL
from nomadkv.commands.table import COMMANDS, CommandError, CommandSpec, ReplyT, lookup
from nomadkv.keyspace import Keyspace

ENTRY_FORMAT = 1


class BadEntry(Exception):
    """A log entry that does not decode to (format, now_ms, [argv, ...])."""


def encode_entry(now_ms: int, commands: list[list[bytes]]) -> bytes:
    return marshal.dumps((ENTRY_FORMAT, now_ms, commands), 4)


def decode_entry(payload: bytes) -> tuple[int, list[list[bytes]]]:
    try:
        entry = marshal.loads(payload)
    except (EOFError, ValueError, TypeError) as exc:
        raise BadEntry(f"undecodable entry: {exc}") from None
    if (
        not isinstance(entry, tuple)
        or len(entry) != 3
        or entry[0] != ENTRY_FORMAT
        or not isinstance(entry[1], int)
        or not isinstance(entry[2], list)
    ):
        raise BadEntry("entry is not (format, now_ms, commands)")
    join = b"".join  # raises TypeError on anything but bytes-like items, in C
    try:
        for argv in entry[2]:
            if argv.__class__ is not list or not argv or argv[0].__class__ is not bytes:
                raise TypeError
            join(argv)
    except TypeError:
        raise BadEntry("entry holds a command that is not a list of bytes") from None
    return entry[1], entry[2]


def write_spec(name: bytes) -> CommandSpec:
    spec = COMMANDS.get(name) or lookup(name) or INTERNAL.get(name)
    if spec is None or not spec.write:
        raise BadEntry(f"entry holds {name!r}, which is not a write command")
    return spec


def write_specs(commands: list[list[bytes]]) -> list[CommandSpec]:
    """Each command's write spec, looked up once per distinct name in the entry."""
    found: dict[bytes, CommandSpec] = {}
    specs: list[CommandSpec] = []
    append = specs.append
    for argv in commands:
        name = argv[0]
        spec = found.get(name)
        if spec is None:
            spec = found[name] = write_spec(name)
        append(spec)
    return specs


def _ignore(index: int, argv: list[bytes], error: Exception) -> None:
    return None


class StateMachine:
    """Applies entries, in index order, exactly once."""

    __slots__ = ("applied_index", "keyspace", "on_internal_error", "stamp_ms")

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace
        self.applied_index = 0
        # The newest now_ms applied: the state's own clock, which never goes back
        # (a restart on a clock stepped back, a new leader whose clock is slower).
        self.stamp_ms = 0
        # Told of a handler bug (an exception other than CommandError); the node logs it.
        self.on_internal_error: Callable[[int, list[bytes], Exception], None] = _ignore

    def apply(self, index: int, now_ms: int, commands: list[list[bytes]]) -> list[ReplyT]:
        """Apply one entry's commands (this node proposed them: checked already)
        and return their replies, in order."""
        table_get = COMMANDS.get
        specs = [table_get(argv[0]) or lookup(argv[0]) or INTERNAL[argv[0]] for argv in commands]
        return self._apply(index, now_ms, commands, specs)

    def apply_payload(self, index: int, payload: bytes) -> None:
        """Apply an entry read back from the log (replay) or from a leader: every
        command must decode and name a write command, or the entry is refused."""
        now_ms, commands = decode_entry(payload)
        self._apply(index, now_ms, commands, write_specs(commands))

    def _apply(
        self, index: int, now_ms: int, commands: list[list[bytes]], specs: list[CommandSpec]
    ) -> list[ReplyT]:
        if index != self.applied_index + 1:
            raise RuntimeError(f"apply of index {index} after {self.applied_index}")
        ks = self.keyspace
        self.stamp_ms = max(self.stamp_ms, now_ms)
        replies: list[ReplyT] = []
        append = replies.append
        for argv, spec in zip(commands, specs, strict=True):
            try:
                append(spec.handler(ks, argv, now_ms))  # type: ignore[call-arg]
            except CommandError as exc:
                append(exc.reply())
            except Exception as bug:  # a handler bug: every replica hits it alike
                self.on_internal_error(index, argv, bug)
                append(b"-ERR internal error\r\n")
        self.applied_index = index
        return replies

    def skip(self, index: int) -> None:
        """Advance past an entry that changes no keys (a Raft no-op)."""
        if index != self.applied_index + 1:
            raise RuntimeError(f"skip of index {index} after {self.applied_index}")
        self.applied_index = index
