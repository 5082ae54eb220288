"""Generic key commands and the internal expiry command. Pure."""

from __future__ import annotations

from nomadkv.commands.context import Session
from nomadkv.commands.table import CommandSpec, KeySpec, ReplyT, register
from nomadkv.keyspace import Keyspace
from nomadkv.resp.reply import integer

# Not in the client table: the node proposes it to delete keys past their
# deadline, so that every replica deletes them at the same log position.
EXPIRED = b"nomadkv.expired"


def apply_expired(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    deleted = sum(ks.delete_if_expired(key, now_ms) for key in argv[1:])
    return integer(deleted)


def apply_del(ks: Keyspace, argv: list[bytes], now_ms: int) -> ReplyT:
    """DEL key [key ...]"""
    deleted = 0
    for key in argv[1:]:
        if ks.lookup(key, now_ms) is not None:
            ks.delete(key)
            deleted += 1
    return integer(deleted)


def cmd_exists(ctx: Session, argv: list[bytes]) -> ReplyT:
    """EXISTS key [key ...]"""
    ks, now_ms = ctx.keyspace, ctx.now_ms
    return integer(sum(ks.peek(key, now_ms) is not None for key in argv[1:]))


INTERNAL: dict[bytes, CommandSpec] = {
    EXPIRED: CommandSpec("nomadkv.expired", -2, ("write",), apply_expired, KeySpec(1, -1, 1))
}

register(
    CommandSpec(
        "del",
        -2,
        ("write",),
        apply_del,
        KeySpec(1, -1, 1),
        group="generic",
        summary="Deletes one or more keys.",
        complexity="O(N) where N is the number of keys that will be removed.",
        acl_categories=("@keyspace", "@write", "@slow"),
    ),
    CommandSpec(
        "exists",
        -2,
        ("readonly", "fast"),
        cmd_exists,
        KeySpec(1, -1, 1),
        group="generic",
        summary="Determines whether one or more keys exist.",
        since="1.0.0",
        complexity="O(N) where N is the number of keys to check.",
        acl_categories=("@keyspace", "@read", "@fast"),
    ),
)
