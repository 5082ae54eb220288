"""Configuration of one Raft replica.

Owns: `Config`, its defaults and their validation.
Never: reads files or the environment; the server builds a Config from its TOML.
Invariants (checked by `validate`): ticks and limits are positive, heartbeats
are more frequent than elections, lease reads run only with CheckQuorum and a
lease that stays shorter than the election timeout minus the drift margin.
"""

from __future__ import annotations

from dataclasses import dataclass

from nomadkv.raft.entry import NONE
from nomadkv.raft.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Config:
    """
    id: this replica's node id (>= 1).
    voters, learners: the initial configuration, used only to bootstrap a replica
        whose storage is empty; every founding member must get the same sets. A
        replica started with empty storage and no voters waits to be sent a
        snapshot (a node joining an existing group).
    election_ticks: the election timeout; each election waits a random number of
        ticks in [election_ticks, 2 * election_ticks) drawn from the injected RNG.
    heartbeat_ticks: the leader's heartbeat interval.
    max_inflight_msgs: appends in flight per follower in REPLICATE state.
    max_size_per_msg: payload bytes per append (at least one entry is always sent).
    max_committed_size_per_ready: payload bytes of committed entries per Ready.
    snapshot_chunk_bytes, max_inflight_snapshot_chunks: how snapshots are streamed.
    pre_vote: run a PreVote round before disrupting the cluster with a new term.
    check_quorum: a leader that has not heard from a quorum for an election
        timeout steps down, and followers ignore votes while they have a leader.
    lease_reads: serve reads from a leader lease instead of a ReadIndex round.
        Assumes every node's tick rate differs from any other's by less than
        lease_drift_margin_ticks per election timeout (see docs/raft.md).
    applied: the index the state machine has applied when restarting.
    """

    id: int
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_inflight_msgs: int = 256
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = 64 << 20
    snapshot_chunk_bytes: int = 1 << 20
    max_inflight_snapshot_chunks: int = 4
    pre_vote: bool = True
    check_quorum: bool = True
    lease_reads: bool = False
    lease_drift_margin_ticks: int = 1
    applied: int = 0

    def lease_ticks(self) -> int:
        """How long a quorum's heartbeat acknowledgement keeps the lease, in ticks.

        A voter that acknowledged a heartbeat sent at leader tick t grants no vote
        until it has counted election_ticks of its own ticks; tick phases differ by
        less than one tick, so the leader is safe while its tick count is below
        t + election_ticks - 1, minus the drift margin.
        """
        return self.election_ticks - 1 - self.lease_drift_margin_ticks

    def validate(self) -> None:
        if self.id <= NONE:
            raise ConfigError("id must be >= 1")
        if any(v <= NONE for v in self.voters + self.learners):
            raise ConfigError("node ids must be >= 1")
        if set(self.voters) & set(self.learners):
            raise ConfigError("a node cannot be both voter and learner")
        if self.learners and not self.voters:
            raise ConfigError("learners need at least one voter")
        if self.heartbeat_ticks <= 0:
            raise ConfigError("heartbeat_ticks must be > 0")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError("election_ticks must be greater than heartbeat_ticks")
        for name in (
            "max_inflight_msgs",
            "max_size_per_msg",
            "max_committed_size_per_ready",
            "snapshot_chunk_bytes",
            "max_inflight_snapshot_chunks",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        if self.applied < 0:
            raise ConfigError("applied must be >= 0")
        if self.lease_reads:
            if not self.check_quorum:
                raise ConfigError(
                    "lease_reads needs check_quorum (followers must honour the lease)"
                )
            if self.lease_drift_margin_ticks < 0 or self.lease_ticks() < 1:
                raise ConfigError("the lease margin leaves no lease: raise election_ticks")
