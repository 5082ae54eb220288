"""Run commands through the table in-process, the way a node does, without a socket.

``InProcess`` looks a command up, checks its arity, then for a read calls its
handler with a session; for a write runs ``prepare``, encodes the prepared
command as a log entry, decodes it again, checks it names a write command
and applies it with the entry's time. Every entry is kept, so ``replay``
can apply them to a fresh keyspace and show that a replica ends up equal.
Time only moves when a test moves it (``now_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass

import nomadkv.commands  # noqa: F401  (registers the data commands)
from nomadkv.commands.machine import StateMachine, decode_entry, encode_entry, write_spec
from nomadkv.commands.table import CommandError, arity_error, lookup, unknown_command
from nomadkv.keyspace import Keyspace

START_MS = 1_700_000_000_000


@dataclass
class Session:
    keyspace: Keyspace
    now_ms: int
    resp3: bool = False


class InProcess:
    def __init__(self, resp3: bool = False) -> None:
        self.keyspace = Keyspace()
        self.machine = StateMachine(self.keyspace)
        self.now_ms = START_MS
        self.resp3 = resp3
        self.entries: list[bytes] = []
        self.logged: list[list[bytes]] = []  # the prepared commands, as logged

    def __call__(self, *args: bytes | str | int) -> bytes:
        """The encoded reply to one command."""
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        spec = lookup(argv[0])
        if spec is None:
            return unknown_command(argv)
        if len(argv) != spec.arity if spec.arity > 0 else len(argv) < -spec.arity:
            return arity_error(spec)
        try:
            if not spec.write:
                reply = spec.handler(Session(self.keyspace, self.now_ms, self.resp3), argv)  # type: ignore[call-arg,arg-type]
            else:
                prepared = spec.prepare(argv, self.now_ms) if spec.prepare else argv
                entry = encode_entry(self.now_ms, [prepared])
                self.entries.append(entry)
                now_ms, commands = decode_entry(entry)
                write_spec(commands[0][0])
                self.logged.append(commands[0])
                reply = self.machine.apply(len(self.entries), now_ms, commands)[0]
        except CommandError as exc:
            return exc.reply()
        return reply if isinstance(reply, bytes) else reply.encode(self.resp3)

    def replay(self) -> Keyspace:
        """A fresh keyspace with every logged entry applied again, as on a replica."""
        replica = StateMachine(Keyspace())
        for index, entry in enumerate(self.entries, start=1):
            replica.apply_payload(index, entry)
        return replica.keyspace
