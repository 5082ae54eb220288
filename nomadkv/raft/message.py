"""Messages that replicas exchange.

Owns: `MessageType`, `Message` and `SnapshotChunk`, one flat record for every
kind of message, as in etcd-io/raft. Which fields a type uses:

==============  ====================================================================
APPEND          index/log_term: the entry preceding `entries` (§5.3); commit
APPEND_RESP     index: last index now matching; on reject: index is the rejected
                prev index, reject_hint/log_term the follower's hint (fast backtracking)
HEARTBEAT       commit: min(leader commit, follower match); index: the read round
HEARTBEAT_RESP  index: the read round echoed back; reject: the commit could not be taken
                (beyond what matched this leader), reject_hint: the follower's last index
VOTE, PRE_VOTE  index/log_term: the candidate's last entry (§5.4.1); context:
                CAMPAIGN_TRANSFER when a leadership transfer asked for the election
*_VOTE_RESP     reject: vote refused
SNAPSHOT        snapshot: one chunk of the leader's snapshot (§7)
SNAPSHOT_ACK    index/log_term: the snapshot; reject_hint: bytes received so far;
                reject: the chunk did not follow the bytes received (resend from hint)
READ_INDEX      context: the read's id (a follower asks the leader for a read index)
READ_INDEX_RESP index: the read index; context: the read's id
TIMEOUT_NOW     the leader asks the transfer target to campaign now (§3.10 thesis)
==============  ====================================================================

Never: carries local-only requests; every message crosses the network and
round-trips through `nomadkv.raft.codec`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nomadkv.raft.entry import Entry, SnapshotMeta

CAMPAIGN_TRANSFER = b"transfer"
"""Vote context of an election started by TimeoutNow; voters bypass leader stickiness."""


class MessageType(enum.IntEnum):
    APPEND = 1
    APPEND_RESP = 2
    HEARTBEAT = 3
    HEARTBEAT_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    PRE_VOTE = 7
    PRE_VOTE_RESP = 8
    SNAPSHOT = 9
    SNAPSHOT_ACK = 10
    READ_INDEX = 11
    READ_INDEX_RESP = 12
    TIMEOUT_NOW = 13


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Bytes [offset, offset + len(data)) of the snapshot `meta`; `done` on the last chunk."""

    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int
    sender: int
    term: int
    log_term: int = 0
    index: int = 0
    commit: int = 0
    entries: tuple[Entry, ...] = ()
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotChunk | None = None
