"""Errors of the Raft core and `check`, its invariant guard.

Owns: the exception types the core raises and `check`, the assertion that
survives `python -O`.
Never: catches or hides an error. A broken invariant stops the replica (the
caller should crash it and restart from storage) rather than let it limp on.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error raised by `nomadkv.raft`."""


class InvariantViolation(RaftError):
    """A Raft invariant does not hold: a bug, or storage that lost acknowledged data."""


class RequestDropped(RaftError):
    """The node cannot take this request now; retry, usually against `leader_id`.

    Raised by propose, read_index, propose_conf_change and transfer_leadership
    when this replica is not the leader, a leadership transfer is in progress, or
    a configuration change is still pending. `leader_id` is 0 when unknown.
    """

    def __init__(self, reason: str, leader_id: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.leader_id = leader_id


class ConfChangeError(RaftError, ValueError):
    """A configuration change is invalid against the current configuration."""


class ConfigError(RaftError, ValueError):
    """A `Config` value is out of range or inconsistent."""


class DecodeError(RaftError, ValueError):
    """Bytes from a peer or from disk are not a valid encoding; never applied."""


class CompactedError(RaftError):
    """Storage: the requested index is below the first index (compacted away)."""


class UnavailableError(RaftError):
    """Storage: the requested index is above the last index."""


def check(cond: bool, msg: str) -> None:
    """Raise `InvariantViolation(msg)` unless `cond` holds (an assert `-O` keeps)."""
    if not cond:
        raise InvariantViolation(msg)
