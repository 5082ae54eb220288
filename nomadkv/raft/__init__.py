"""Pure Raft consensus in the style of etcd-io/raft: inputs in, a `Ready` out.

Owns: the replication protocol of one replica (`RawNode`), its messages, log
records and their codec, and the `Storage` protocol it reads persisted state
through. See docs/raft.md for the API and the Ready contract.
Never: does I/O, reads the clock, or uses global randomness (the import-linter
contract in pyproject.toml keeps asyncio, socket, time and the shell out).
"""

from nomadkv.raft.codec import (
    decode_conf_change,
    decode_conf_state,
    decode_entries,
    decode_hard_state,
    decode_message,
    decode_snapshot_meta,
    encode_conf_change,
    encode_conf_state,
    encode_entries,
    encode_hard_state,
    encode_message,
    encode_snapshot_meta,
)
from nomadkv.raft.confchange import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    add_learner,
    add_voter,
    remove_node,
)
from nomadkv.raft.config import Config
from nomadkv.raft.core import StateRole
from nomadkv.raft.entry import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMeta,
)
from nomadkv.raft.errors import (
    CompactedError,
    ConfChangeError,
    ConfigError,
    DecodeError,
    InvariantViolation,
    RaftError,
    RequestDropped,
    UnavailableError,
    check,
)
from nomadkv.raft.message import Message, MessageType, SnapshotChunk
from nomadkv.raft.node import PeerStatus, RawNode, Ready, SoftState, Status
from nomadkv.raft.read_only import ReadState
from nomadkv.raft.storage import MemoryStorage, Storage

__all__ = [
    "NONE",
    "CompactedError",
    "ConfChange",
    "ConfChangeError",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfState",
    "Config",
    "ConfigError",
    "DecodeError",
    "Entry",
    "EntryType",
    "HardState",
    "InvariantViolation",
    "MemoryStorage",
    "Message",
    "MessageType",
    "PeerStatus",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "RequestDropped",
    "Snapshot",
    "SnapshotChunk",
    "SnapshotMeta",
    "SoftState",
    "StateRole",
    "Status",
    "Storage",
    "UnavailableError",
    "add_learner",
    "add_voter",
    "check",
    "decode_conf_change",
    "decode_conf_state",
    "decode_entries",
    "decode_hard_state",
    "decode_message",
    "decode_snapshot_meta",
    "encode_conf_change",
    "encode_conf_state",
    "encode_entries",
    "encode_hard_state",
    "encode_message",
    "encode_snapshot_meta",
    "remove_node",
]
