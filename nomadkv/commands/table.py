"""The command table: every command declares its arity, flags and keys once.

Owns ``CommandSpec``, the registry the connection gate looks commands up in,
and the errors handlers raise. Pure: no I/O.

Two kinds of handler:
- a read (no ``write`` flag) is ``handler(ctx, argv) -> reply`` and runs on
  the connection at once; ``ctx`` is the client's session (see
  ``commands.context.Session``);
- a write is ``apply(keyspace, argv, now_ms) -> reply`` and runs when its log
  entry is committed, on every replica, so it must depend on nothing but its
  arguments, ``now_ms`` (the timestamp in the entry) and the keyspace. Its
  optional ``prepare(argv, now_ms) -> argv`` runs before proposing: it rejects
  bad syntax (nothing invalid reaches the log) and rewrites relative times
  into absolute ones so that replay gives the same result.

A reply is ``bytes`` (encoded already) or a ``resp.reply.Reply``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nomadkv.keyspace import Keyspace
from nomadkv.resp.reply import Reply

ReplyT = bytes | Reply
ReadHandler = Callable[[Any, list[bytes]], ReplyT]
ApplyHandler = Callable[[Keyspace, list[bytes], int], ReplyT]
PrepareHandler = Callable[[list[bytes], int], list[bytes]]


class CommandError(Exception):
    """A Redis error reply; the message starts with its code (``ERR``, ``WRONGTYPE``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def reply(self) -> bytes:
        # surrogateescape: a message may quote a client's bytes (see quoted()).
        return b"-%b\r\n" % self.message.encode(errors="surrogateescape")


WRONGTYPE_MESSAGE = "WRONGTYPE Operation against a key holding the wrong kind of value"
WRONGTYPE = b"-" + WRONGTYPE_MESSAGE.encode() + b"\r\n"
SYNTAX_ERROR = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Key positions as Redis's legacy (first, last, step) triple; ``last`` < 0
    counts from the end, 0 means no keys."""

    first: int
    last: int
    step: int

    def keys(self, argv: list[bytes]) -> list[bytes]:
        if self.first == 0:
            return []
        last = self.last if self.last >= 0 else len(argv) + self.last
        return argv[self.first : last + 1 : self.step]


NO_KEYS = KeySpec(0, 0, 0)


@dataclass(slots=True, eq=False)
class CommandSpec:
    """One command (or subcommand) and everything generic code needs to know of it."""

    name: str
    arity: int
    flags: tuple[str, ...]
    handler: ReadHandler | ApplyHandler
    keys: KeySpec = NO_KEYS
    prepare: PrepareHandler | None = None
    group: str = "generic"
    summary: str = ""
    since: str = "1.0.0"
    complexity: str = "O(1)"
    acl_categories: tuple[str, ...] = ()
    subcommands: dict[bytes, CommandSpec] = field(default_factory=dict)
    # A write whose prepare has nothing to do at this many arguments (SET key value:
    # no options to check or rewrite); 0 when prepare must always run.
    plain_arity: int = 0
    # Hot-path fields derived from the others, so the gate tests one attribute.
    write: bool = False
    needs_auth: bool = True
    plain_read_arity: int = -1  # argc of a read that needs no check beyond arity
    # argc of a plain read of exactly one key: on a cluster leader it goes straight
    # to a ReadIndex round (one key: no CROSSSLOT, no keyless local answer).
    one_key_read_arity: int = -1
    # argc of a write that can be proposed as sent: fixed arity, one key (so in
    # cluster mode the leader has no CROSSSLOT to check), nothing to prepare.
    plain_write_arity: int = -1
    # Counters for INFO commandstats.
    calls: int = 0
    usec: float = 0.0
    rejected_calls: int = 0
    failed_calls: int = 0

    def __post_init__(self) -> None:
        self.write = "write" in self.flags
        self.needs_auth = "no_auth" not in self.flags
        # Variadic commands and containers of subcommands take the full gate.
        fixed = self.arity > 0 and not self.subcommands
        self.plain_read_arity = self.arity if fixed and not self.write else -1
        one_key = self.keys.first == self.keys.last == 1
        if one_key:
            self.one_key_read_arity = self.plain_read_arity
        if self.write and one_key and self.prepare is None and fixed:
            self.plain_write_arity = self.arity
        elif self.write and one_key and self.plain_arity:
            self.plain_write_arity = self.plain_arity

    @property
    def full_name(self) -> str:
        return self.name


# Looked up by the command name exactly as sent, upper or lower case first.
COMMANDS: dict[bytes, CommandSpec] = {}


def register(*specs: CommandSpec) -> None:
    for spec in specs:
        name = spec.name.encode()
        if name.lower() in COMMANDS:
            raise ValueError(f"command {spec.name} registered twice")
        COMMANDS[name.lower()] = spec
        COMMANDS[name.upper()] = spec


def lookup(name: bytes) -> CommandSpec | None:
    spec = COMMANDS.get(name)
    if spec is None:
        spec = COMMANDS.get(name.lower())
    return spec


def all_commands() -> list[CommandSpec]:
    """Each command once, in name order."""
    return sorted({id(s): s for s in COMMANDS.values()}.values(), key=lambda s: s.name)


def arity_error(spec: CommandSpec) -> bytes:
    return b"-ERR wrong number of arguments for '%b' command\r\n" % spec.name.encode()


def unknown_command(argv: list[bytes]) -> bytes:
    """Redis's text: the name and the first arguments, each quoted, cut at 128 chars."""
    name = argv[0].decode(errors="replace")[:128]
    args = ""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += "'{}' ".format(arg.decode(errors="replace")[: 128 - len(args)])
    message = f"ERR unknown command '{name}', with args beginning with: {args}"
    return b"-%b\r\n" % message.replace("\r", " ").replace("\n", " ").encode()


INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def option_name(arg: bytes) -> bytes:
    """An option as Redis compares it (strcasecmp on a C string): upper-cased,
    cut at the first NUL byte."""
    name = arg.upper()
    return name if b"\0" not in name else name[: name.index(b"\0")]


def quoted(arg: bytes) -> str:
    """A client's argument inside an error message, as Redis's %s formatting puts
    it there: cut at the first NUL, CR and LF turned into spaces; bytes kept as
    they are (they are encoded back by ``CommandError.reply``)."""
    if b"\0" in arg:
        arg = arg[: arg.index(b"\0")]
    return arg.replace(b"\r", b" ").replace(b"\n", b" ").decode(errors="surrogateescape")


def parse_int(value: bytes, message: str = NOT_INTEGER) -> int:
    """A signed 64-bit integer as Redis's string2ll accepts it."""
    digits = value[1:] if value[:1] == b"-" else value
    if not digits.isdigit() or len(value) > 20 or (digits[:1] == b"0" and value != b"0"):
        raise CommandError(message)
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise CommandError(message)
    return number
