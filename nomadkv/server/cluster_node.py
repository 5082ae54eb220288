"""A node in cluster mode: the keyspace replicated by a Raft group.

Owns the Ready loop that drives ``nomadkv.raft.RawNode`` for real: ticks on
a timer, messages from the bus, durable storage, applying committed entries
and releasing linearizable reads. Everything else (connections, the command
table, snapshots by fork) is the standalone ``Node``'s.

The Ready loop, in the order the Raft core requires:

1. persist: install a snapshot, append entries, write the hard state; fsync
   when the Ready says so (entries only under appendfsync always, a new term
   or vote always);
2. send messages. A leader sends before its own fsync, so that the followers
   write their copies while it writes its own (Raft thesis §10.2.1): an
   entry counts as committed only once a later Ready, which exists only
   after this fsync, reports it, so the leader's own copy is durable before
   anything is applied or acknowledged.
   Followers send after the fsync, since their acknowledgements promise
   durability;
3. apply committed entries in order (replies go to the clients waiting on
   them), release reads whose index has been applied;
4. advance, and look for the next Ready.

Writes are proposed once per loop turn as one entry. A reply means the
entry was committed by a majority and applied. A proposal whose index ends
up holding another entry (leadership changed before it committed) is
answered with an error: it can never be applied.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from typing import Any

from nomadkv.cluster.slots import key_slot
from nomadkv.cluster.topology import Member, Topology, node_name
from nomadkv.commands.keys import EXPIRED
from nomadkv.commands.machine import encode_entry
from nomadkv.commands.table import CommandSpec, lookup
from nomadkv.config import Config
from nomadkv.raft.codec import decode_conf_change, decode_message, encode_message
from nomadkv.raft.confchange import (
    ConfChange,
    ConfChangeType,
    add_learner,
    add_voter,
    remove_node,
)
from nomadkv.raft.config import Config as RaftConfig
from nomadkv.raft.core import StateRole
from nomadkv.raft.entry import ConfState, Entry, EntryType
from nomadkv.raft.errors import DecodeError, InvariantViolation, RequestDropped, check
from nomadkv.raft.message import Message, MessageType
from nomadkv.raft.node import RawNode, Ready
from nomadkv.server.bus import PeerBus
from nomadkv.server.node import (
    Node,
    Reader,
    Waiter,
    keyspace_from_chunks,
    load_snapshot,
)
from nomadkv.server.proxy import LeaderProxy
from nomadkv.storage.identity import PeerIdentities, load_or_create_identity
from nomadkv.storage.raft_storage import RaftStorage, conf_state_meta
from nomadkv.storage.recovery import lock_data_dir
from nomadkv.storage.recovery import recover as recover_storage
from nomadkv.storage.snapshot import (
    CorruptSnapshot,
    list_snapshots,
    snapshot_path,
    write_bytes_atomically,
    write_snapshot,
)

log = logging.getLogger("nomadkv.cluster")

CLUSTERDOWN = b"-CLUSTERDOWN The cluster is down\r\n"
# Sent in a term the sender has not persisted (a pre-vote asks for the next one).
PRE_VOTES = (MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP)
LOST = b"-ERR the write was not committed: leadership changed, retry\r\n"
# A learner is promoted once it is this close to the leader's log.
PROMOTE_LAG_ENTRIES = 16
# A leader's next entry waits (loop turn by loop turn) for writes still arriving:
# at most this long in all, and no longer than this since the last one came in.
GATHER_MAX_S = 0.0005
GATHER_IDLE_S = 0.0001


def note_sender_term(identities: PeerIdentities, message: Message) -> None:
    """Record the term of a message from a peer, which the peer persisted before it
    sent anything in that term (pre-votes aside: they name a term not yet taken)."""
    if message.term > identities.highest_term(message.sender) and message.type not in PRE_VOTES:
        try:
            identities.saw_term(message.sender, message.term)
        except OSError as exc:
            log.warning("could not record node %d's term: %s", message.sender, exc)


class ClusterNode(Node):
    """One member of the shard group that owns all 16384 slots."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(config, loop)
        self.raft_id = config.node_id
        self.storage = RaftStorage(config.dir, config.log_segment_bytes)
        self.log = self.storage.log
        bind = config.bind.split()[0]
        # Where peers and clients are told to find this node (MOVED, CLUSTER NODES).
        self.host = config.cluster_announce_ip or bind
        self.members: dict[int, Member] = {}
        self.raw: RawNode | None = None
        self.role = StateRole.FOLLOWER
        self.leader_id = 0
        self.term = 0
        self.is_leader = False
        advertise = f"{self.host}:{config.port}:{config.bus_port}".encode()
        self.bus = PeerBus(
            loop,
            str(self.raft_id).encode(),
            config.cluster_secret.encode(),
            self._on_bus_message,
            source_host="" if bind in ("0.0.0.0", "::") else bind,
            advertise=advertise,
            on_address=self._on_peer_address,
            on_identity=self._on_peer_identity,
            current_term=lambda: self.storage.hard_state.term,
        )
        self.peer_identities: PeerIdentities | None = None  # loaded by recover()
        # index -> (entry data, its now_ms, commands, waiters, perf_counter when
        # proposed): this node's proposals in flight.
        self._inflight: dict[
            int, tuple[bytes, int, list[list[bytes]], list[Waiter | None], float]
        ] = {}
        self._ready_scheduled = False
        # Gathering the next entry (_writes_still_arriving): since when, how many
        # writes at the last look, when the last one arrived, and the size of this
        # node's last committed entry.
        self._gathering = False
        self._gather_started = 0.0
        self._gathered = 0
        self._last_arrival = 0.0
        self._last_cohort = 0
        # Linearizable reads: gathered during a loop turn, one ReadIndex round each turn.
        self.reads: list[tuple[Reader, CommandSpec, list[bytes]]] = []
        self._reads_scheduled = False
        self._read_rounds: dict[bytes, list[tuple[Reader, CommandSpec, list[bytes]]]] = {}
        self._reads_waiting_apply: list[
            tuple[int, list[tuple[Reader, CommandSpec, list[bytes]]]]
        ] = []
        self._read_seq = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._ticked_until = 0.0  # monotonic time the core's tick count stands for
        self.proxy = LeaderProxy(self)
        # The membership each snapshot in progress was taken at, by index.
        self._snapshot_conf_states: dict[int, ConfState] = {}
        self.messages_sent = 0
        self.messages_received = 0
        # Loop time of the last message from each peer, for the failed members that
        # CLUSTER NODES, SLOTS, SHARDS, ROLE and INFO report (topology()).
        self.heard_from: dict[int, float] = {}
        self._started_at = loop.time()

    # -- start-up ----------------------------------------------------------------------------

    def recover(self) -> None:
        started = time.perf_counter()
        storage = self.storage
        self._dir_lock = lock_data_dir(self.config.dir)
        self.bus.identity = load_or_create_identity(self.config.dir).encode()
        self.peer_identities = PeerIdentities(self.config.dir)
        recovered = recover_storage(self.log, self.snapshot_dir, keyspace_from_chunks)
        for damaged in recovered.damaged_snapshots:
            log.warning("set aside a damaged snapshot (renamed *.damaged): %s", damaged)
        storage.open(recovered)
        if recovered.state is not None:
            self.keyspace.adopt(recovered.state)
            self.machine.applied_index = recovered.snapshot_index
            self.snapshot_index = recovered.snapshot_index
            self._learn_members(recovered.snapshot_meta.get("members", []))
        founding = self.config.peer_addresses()
        for raft_id, (host, bus_port) in founding.items():
            if raft_id not in self.members:
                self.members[raft_id] = Member(raft_id, host, bus_port - 10000, bus_port)
        self.members[self.raft_id] = Member(
            self.raft_id, self.host, self.config.port, self.config.bus_port
        )
        bootstrap = storage.is_empty and not self.config.cluster_join
        raft_config = RaftConfig(
            id=self.raft_id,
            voters=tuple(sorted(founding)) if bootstrap else (),
            election_ticks=self.config.raft_election_ticks,
            heartbeat_ticks=self.config.raft_heartbeat_ticks,
            pre_vote=True,
            check_quorum=True,
            lease_reads=self.config.raft_lease_reads,
            applied=self.machine.applied_index,
        )
        raft_config.validate()
        self.raw = RawNode(raft_config, storage, random.Random(os.urandom(16)))
        self.term = self.raw.status().term
        for member in self.members.values():
            if member.raft_id != self.raft_id:
                self.bus.set_peer(str(member.raft_id).encode(), member.host, member.bus_port)
        self.loading_seconds = time.perf_counter() - started
        log.info(
            "cluster node %d: %s, snapshot index %d, log %d..%d, term %d",
            self.raft_id,
            "bootstrapping" if bootstrap else "recovering",
            self.snapshot_index,
            self.log.first_index,
            self.log.last_index,
            self.term,
        )

    async def start_cluster(self) -> None:
        """Listen on the bus and start ticking (after ``recover``)."""
        for address in self.config.bind.split():
            await self.bus.listen(address, self.config.bus_port)
        self._ticked_until = time.monotonic()
        self._tick()

    def _tick(self) -> None:
        if self.shutting_down or self.raw is None:
            return
        self._run_due_ticks()
        period_s = self.config.raft_tick_ms / 1000
        delay_s = max(0.0, self._ticked_until + period_s - time.monotonic())
        self._tick_handle = self.loop.call_later(delay_s, self._tick)

    def _run_due_ticks(self) -> None:
        """Tick the core once for every tick period the monotonic clock says has
        passed. A timer alone undercounts: a process that was paused (SIGSTOP, a VM
        or GC stall) fires one late timer, and its core would believe only one tick
        went by. A leader would then serve lease reads after the others elected a
        new leader, or keep leading for an election timeout it did not count. So
        this also runs before every read decision and every peer message."""
        raw = self.raw
        if raw is None:
            return
        period_s = self.config.raft_tick_ms / 1000
        due = int((time.monotonic() - self._ticked_until) / period_s)
        if due <= 0:
            return
        self._ticked_until += due * period_s
        # Past two election timeouts, more ticks change nothing the core decides.
        for _ in range(min(due, 2 * self.config.raft_election_ticks + 1)):
            raw.tick()
        if self.is_leader:
            self._promote_caught_up_learners()
        self._schedule_ready()

    # -- the bus -----------------------------------------------------------------------------

    def _on_bus_message(self, peer: bytes, payload: bytes) -> None:
        try:
            message = decode_message(payload)
        except DecodeError as exc:
            log.warning("undecodable message from %s: %s", peer.decode(), exc)
            return
        if str(message.sender).encode() != peer or self.raw is None:
            log.warning("message claiming to be from %d arrived from %s", message.sender, peer)
            return
        self.messages_received += 1
        self.heard_from[message.sender] = self.loop.time()
        if self.peer_identities is not None:
            note_sender_term(self.peer_identities, message)
        self._run_due_ticks()
        try:
            self.raw.step(message)
        except InvariantViolation as exc:
            self._halt(f"{exc} (on a message from node {message.sender})")
            return
        self._schedule_ready()

    def _halt(self, why: str) -> None:
        """A broken Raft invariant stops this replica rather than let it limp on
        (nomadkv.raft.errors): nothing more goes into or out of the core, and the
        process shuts down. Restarted, it recovers from its own storage; if that is
        what lost data (a wiped or truncated log), it must leave the group and
        join again (CLUSTER FORGET, then CLUSTER MEET with --cluster-join)."""
        log.critical("Raft invariant broken: %s; stopping this node", why)
        self.raw = None
        self.request_shutdown()

    def _on_peer_address(self, peer: bytes, address: bytes) -> None:
        """A peer told us (authenticated) where it listens; dial back if new."""
        try:
            host, port, bus_port = address.decode().rsplit(":", 2)
            raft_id = int(peer)
            member = Member(raft_id, host, int(port), int(bus_port))
        except ValueError:
            return
        if self.members.get(raft_id) != member:
            self.members[raft_id] = member
            self.bus.set_peer(peer, host, member.bus_port)

    def _on_peer_identity(self, peer: bytes, identity: bytes, term: int) -> str | None:
        """A peer authenticated on the bus, showing its data directory's identity and
        its term: why it is refused, or None. The first identity a member shows is
        recorded; a different one later is a new incarnation (its data was lost or
        replaced), which must not vote or acknowledge as the old one did. A term
        below one it has sent messages in means its data directory is older than
        the one it ran on (restored from a copy): it may have voted or
        acknowledged what it no longer holds (docs/cluster.md)."""
        raw, known_ids = self.raw, self.peer_identities
        if raw is None or known_ids is None:
            return "this node is not started"
        try:
            raft_id = int(peer)
        except ValueError:
            return "not a node id"
        if raft_id not in raw.status().conf_state.members():
            return None  # not a member here (yet): its messages count for nothing
        shown = identity.decode("ascii", errors="replace")
        known = known_ids.get(raft_id)
        if known is None:
            try:
                known_ids.record(raft_id, shown)
            except OSError as exc:
                return f"its identity could not be recorded: {exc}"
            return None
        if known == shown:
            highest = known_ids.highest_term(raft_id)
            if term >= highest:
                return None
            return (
                f"node {raft_id} shows term {term} but sent messages in term {highest}: "
                f"its data directory is older than the one it ran on (restored from a "
                f"copy?), so it must rejoin as a new member (CLUSTER FORGET "
                f"{node_name(raft_id)} on the leader, wipe its data directory, start it "
                f"with --cluster-join yes, then CLUSTER MEET it; docs/cluster.md)"
            )
        return (
            f"node {raft_id} ran here on data directory {known} and now shows {shown}: "
            f"its data was lost or replaced, so it must rejoin as a new member "
            f"(CLUSTER FORGET {node_name(raft_id)} on the leader, start it with "
            f"--cluster-join yes, then CLUSTER MEET it; docs/cluster.md)"
        )

    def _send(self, messages: list[Message]) -> None:
        by_peer: dict[int, list[bytes]] = {}
        for message in messages:
            by_peer.setdefault(message.to, []).append(encode_message(message))
        for to, payloads in by_peer.items():
            self.messages_sent += len(payloads)
            if not self.bus.send(str(to).encode(), payloads) and self.raw is not None:
                self.raw.report_unreachable(to)

    # -- the Ready loop ----------------------------------------------------------------------

    def _schedule_ready(self) -> None:
        if not self._ready_scheduled:
            self._ready_scheduled = True
            self.loop.call_soon(self._handle_ready)

    def _handle_ready(self) -> None:
        self._ready_scheduled = False
        raw = self.raw
        if raw is None or self.failed or not raw.has_ready():
            return
        rd = raw.ready()
        if rd.soft_state is not None:
            self._role_changed(rd.soft_state.leader_id, rd.soft_state.role)
        # A vote or a new term is fsync'd whatever appendfsync says: Raft's safety
        # rests on never voting twice in a term. Entries follow appendfsync.
        vote_changed = rd.hard_state is not None and (
            rd.hard_state.term != self.storage.hard_state.term
            or rd.hard_state.vote != self.storage.hard_state.vote
        )
        try:
            # The hard state first: a log (or snapshot) on disk then always comes with
            # the term it was written in, so an empty raft-state beside a log is damage
            # (RaftStorage refuses to start on it). A commit index ahead of the log is
            # clamped on restart.
            if rd.hard_state is not None:
                self.storage.set_hard_state(rd.hard_state)
                self.term = rd.hard_state.term
            if rd.snapshot is not None:
                self._install_snapshot(rd)
            self.storage.append(rd.entries)
        except OSError as exc:
            self.fail_stop(f"cannot write the Raft log or hard state: {exc}")
            return
        early = self.role is StateRole.LEADER
        if early:
            self._send(rd.messages)
        if rd.must_sync and (self.config.appendfsync == "always" or vote_changed):
            # On the loop's thread, as a standalone node does (Node.sync_log); a
            # leader's messages are already in its sockets' buffers meanwhile.
            try:
                self.storage.sync()
            except OSError as exc:
                self.stats.fsync_errors += 1
                self.fail_stop(f"fsync of the Raft log failed: {exc!r}")
                return
            self.stats.fsyncs += 1
        elif rd.must_sync:
            self._everysec_dirty = True
        self._after_persist(rd, early)

    def _after_persist(self, rd: Ready, sent: bool) -> None:
        if not sent:
            self._send(rd.messages)
        if rd.committed_entries:
            self._apply(rd.committed_entries)
        for read_state in rd.read_states:
            batch = self._read_rounds.pop(read_state.context, None)
            if batch is not None:
                self._reads_waiting_apply.append((read_state.index, batch))
        if self.reads and not self._read_rounds:
            self._flush_reads()
        if self.raw is not None:
            self.raw.advance(rd)
        if self._inflight and not self.is_leader and rd.entries:
            self._answer_overwritten()
        self.synced_index = self.log.last_index
        if self._reads_waiting_apply:
            if self._read_rounds:
                # The round just started has its heartbeat in the core: send it
                # before writing these replies, so that the follower answers while
                # this node writes them (the nested Ready releases them too).
                self._handle_ready()
            self._release_reads()
        self._schedule_ready()

    def _answer_overwritten(self) -> None:
        """Proposals of a former term whose log position now holds another entry,
        or lies past a log the new leader cut short, can never commit: say so now
        rather than when (if ever) that position is applied."""
        storage = self.storage
        last = storage.last_index()
        first = storage.first_index()
        for index in sorted(self._inflight):
            data = self._inflight[index][0]
            if (
                index <= last
                and index >= first
                and storage.entries(index, index + 1, 1)[0].data is data
            ):
                continue
            if index < first:
                continue  # compacted: a snapshot covers it, applying decides
            self._answer(self._inflight.pop(index)[3], LOST)

    def _role_changed(self, leader_id: int, role: StateRole) -> None:
        was_leader = self.is_leader
        self.leader_id = leader_id
        self.role = role
        self.is_leader = role is StateRole.LEADER
        log.info("node %d is now %s (leader %d)", self.raft_id, role.name.lower(), leader_id)
        if was_leader and not self.is_leader:
            self._redirect_reads()
            if self.proposed:
                self.schedule_flush()  # writes held for the next entry: redirect them
        # Commands forwarded to a former leader may or may not have run there:
        # the proxy disconnects their clients (a new leader gets a new link).
        self.proxy.close()

    # -- writes ------------------------------------------------------------------------------

    def _flush(self) -> None:
        self.flush_scheduled = False
        if not self.proposed:
            return
        if self.is_leader and self._inflight:
            # One entry of this leader's in flight at a time: writes arriving
            # meanwhile wait and go out together once it commits (_apply calls
            # back), so that every node pays one fsync for all of them. With
            # three nodes on two cores, each entry's fixed cost is what limits
            # throughput (docs/benchmarks.md, Cluster).
            return
        if self._writes_still_arriving():
            return
        commands, waiters = self.proposed[:], self.waiters[:]
        self.proposed.clear()
        self.waiters.clear()
        now_ms = self.entry_stamp_ms()
        data = encode_entry(now_ms, commands)
        if len(data) > self.config.raft_max_entry_bytes:
            commands, waiters = self._take_entry_sized(commands, waiters)
            if not commands:
                return
            data = encode_entry(now_ms, commands)
        try:
            if self.raw is None:
                raise RequestDropped("not started")
            index = self.raw.propose(data)
        except RequestDropped:
            # the writes _take_entry_sized put back go the same way, or nothing flushes them
            commands, waiters = commands + self.proposed, waiters + self.waiters
            self.proposed.clear()
            self.waiters.clear()
            for client, argv in zip(waiters, commands, strict=True):
                if client is not None:
                    client.deliver(self.redirect_command(lookup(argv[0]), argv))
                elif argv[0] == EXPIRED:
                    # Refused (a leadership transfer under way): the next cycle, here
                    # or on the next leader, proposes these again.
                    self.keyspace.expired_seen.update(argv[1:])
            for client in set(waiters):
                if client is not None:
                    client.commit_done()
            return
        self._last_entry_ms = now_ms
        self._inflight[index] = (data, now_ms, commands, waiters, time.perf_counter())
        self.stats.log_bytes_written += len(data)
        self._schedule_ready()

    def _take_entry_sized(
        self, commands: list[list[bytes]], waiters: list[Waiter | None]
    ) -> tuple[list[list[bytes]], list[Waiter | None]]:
        """The first writes that fit in one entry of raft-max-entry-bytes; the rest go
        back to wait for the next entry, and a write that alone exceeds the limit is
        refused once it is first in line, so after the replies of the writes before it.
        Writing, fsyncing and sending one huge entry stalls every node's loop: a 64 MB
        SET cost a leader its leadership (docs/cluster.md)."""
        limit = self.config.raft_max_entry_bytes
        taken: list[list[bytes]] = []
        taken_waiters: list[Waiter | None] = []
        size = 0
        for i, (argv, client) in enumerate(zip(commands, waiters, strict=True)):
            need = sum(len(arg) + 16 for arg in argv)  # marshal adds a few bytes per argument
            if need > limit and not taken:
                if client is not None:
                    client.deliver(
                        b"-ERR the write of %d bytes exceeds raft-max-entry-bytes (%d)\r\n"
                        % (need, limit)
                    )
                    client.commit_done()
                continue
            if taken and size + need > limit:
                self.proposed[:0] = commands[i:]
                self.waiters[:0] = waiters[i:]
                break
            taken.append(argv)
            taken_waiters.append(client)
            size += need
        return taken, taken_waiters

    def _writes_still_arriving(self) -> bool:
        """Whether the next entry waits one more loop turn for writes still coming in:
        until it holds as many as this node's last committed entry did, or no write
        came for GATHER_IDLE_S, or it waited GATHER_MAX_S. Clients answered by a
        commit send their next writes over a few hundred microseconds; an entry
        proposed before they do leaves them for the next round, and 50 clients at
        -P 1 split into cohorts that take turns (docs/decisions.md). A rule that
        counted loop turns instead (three) stopped too early once the request path
        was compiled: 33 writes per entry, against 49 now."""
        count = len(self.proposed)
        now = time.perf_counter()
        if not self._gathering:
            self._gathering = True
            self._gather_started = self._last_arrival = now
        elif count != self._gathered:
            self._last_arrival = now
        self._gathered = count
        if (
            count < self._last_cohort
            and now - self._gather_started < GATHER_MAX_S
            and now - self._last_arrival < GATHER_IDLE_S
        ):
            self.schedule_flush()
            return True
        self._gathering = False
        return False

    def _apply(self, entries: list[Entry]) -> None:
        machine = self.machine
        touched: set[Waiter] = set()
        for entry in entries:
            if entry.index <= machine.applied_index:
                continue
            mine = self._inflight.pop(entry.index, None)
            if entry.type is EntryType.CONF_CHANGE:
                machine.skip(entry.index)
                self._conf_change_applied(decode_conf_change(entry.data))
            elif mine is not None and mine[0] is entry.data:
                _, now_ms, commands, waiters, proposed_at = mine
                self._last_cohort = len(commands)
                replies = machine.apply(entry.index, now_ms, commands)
                self.stats.write_latency.observe(time.perf_counter() - proposed_at, len(commands))
                for client, reply in zip(waiters, replies, strict=True):
                    if client is not None:
                        client.deliver(reply)
                        touched.add(client)
                continue
            elif entry.data:
                machine.apply_payload(entry.index, entry.data)
            else:
                machine.skip(entry.index)
            if mine is not None:  # another entry took our proposal's place
                for client in mine[3]:
                    if client is not None:
                        client.deliver(LOST)
                        touched.add(client)
        for client in touched:
            client.commit_done()
        if self.proposed and not self._inflight:
            self.schedule_flush()  # the writes that waited for this entry

    def _answer(self, waiters: list[Waiter | None], reply: bytes) -> None:
        for client in waiters:
            if client is not None:
                client.deliver(reply)
        for client in set(waiters):
            if client is not None:
                client.commit_done()

    def oldest_unapplied_stamp_ms(self) -> int | None:
        # Proposals are in index order; their stamps never decrease.
        return next(iter(self._inflight.values()))[1] if self._inflight else None

    def _expiry_cycle(self) -> None:
        # Only the leader expires keys, through the log; followers hide them on
        # read and forget which they hid (the leader's deletions will come).
        if self.is_leader:
            super()._expiry_cycle()
        else:
            self.keyspace.expired_seen.clear()

    # -- linearizable reads ------------------------------------------------------------------

    def read(self, client: Reader, spec: CommandSpec, argv: list[bytes]) -> None:
        """Queue a read; it runs once a ReadIndex round confirms this node still leads
        and the state machine has applied that index."""
        self.reads.append((client, spec, argv))
        if not self._reads_scheduled:
            self._reads_scheduled = True
            self.loop.call_soon(self._flush_reads)

    def _flush_reads(self) -> None:
        self._reads_scheduled = False
        if not self.reads or self._read_rounds:
            # One ReadIndex round at a time: reads arriving meanwhile share the next
            # one, which starts when this one returns. Under load this trades a
            # little latency for far fewer heartbeat rounds (each costs every
            # follower a message to decode and answer).
            return
        batch, self.reads = self.reads, []
        self._read_seq += 1
        context = b"%d" % self._read_seq
        try:
            if self.raw is None:
                raise RequestDropped("not started")
            self._run_due_ticks()  # a lease must count the time this process was paused
            self.raw.read_index(context)
        except RequestDropped:
            self._redirect_batch(batch)
            return
        self._read_rounds[context] = batch
        self._schedule_ready()

    def _release_reads(self) -> None:
        applied = self.machine.applied_index
        waiting, self._reads_waiting_apply = self._reads_waiting_apply, []
        touched: set[Reader] = set()
        for index, batch in waiting:
            if index > applied:
                self._reads_waiting_apply.append((index, batch))
                continue
            for reader, spec, argv in batch:
                reader.answer_read(spec, argv)
                touched.add(reader)
        for reader in touched:
            reader.commit_done()

    def _redirect_reads(self) -> None:
        batches = list(self._read_rounds.values()) + [b for _, b in self._reads_waiting_apply]
        self._read_rounds.clear()
        self._reads_waiting_apply.clear()
        for batch in batches:
            self._redirect_batch(batch)

    def _redirect_batch(self, batch: list[tuple[Reader, CommandSpec, list[bytes]]]) -> None:
        for client, spec, argv in batch:
            client.deliver(self.redirect_command(spec, argv))
        for client in {c for c, _, _ in batch}:
            client.commit_done()

    # -- routing -----------------------------------------------------------------------------

    def redirect_command(self, spec: CommandSpec | None, argv: list[bytes]) -> bytes:
        """redirect_error for a command this node can no longer run: -MOVED with
        the slot of its first key, which clients remap to the new leader."""
        keys = spec.keys.keys(argv) if spec is not None else []
        return self.redirect_error(keys[0] if keys else None)

    def redirect_error(self, key: bytes | None) -> bytes:
        """What a client that must talk to the leader is told: -MOVED to it, or
        -CLUSTERDOWN while there is none."""
        leader = self.members.get(self.leader_id) if self.leader_id else None
        if leader is None or self.leader_id == self.raft_id:
            return CLUSTERDOWN
        slot = key_slot(key) if key is not None else 0
        return b"-MOVED %d %b:%d\r\n" % (slot, leader.host.encode(), leader.port)

    def topology(self) -> Topology:
        raw = self.raw
        status = raw.status() if raw is not None else None
        conf = status.conf_state if status is not None else ConfState()
        match = {i: p.match_index for i, p in status.progress.items()} if status else {}
        # A node removed from the group while it runs still lists itself ("myself"),
        # as a forgotten Redis node does; redis-cli --cluster check needs that line.
        members = tuple(
            m
            for _, m in sorted(self.members.items())
            if m.raft_id in conf.members() or m.raft_id == self.raft_id
        ) or tuple(m for _, m in sorted(self.members.items()))
        return Topology(
            self.raft_id,
            members,
            frozenset(conf.voters + conf.voters_outgoing),
            frozenset(conf.learners + conf.learners_next),
            self.leader_id,
            self.term,
            match,
            self._failed_members(members),
        )

    def _failed_members(self, members: tuple[Member, ...]) -> frozenset[int]:
        """Members not heard from for two election timeouts: every other member on
        the leader (each answers its heartbeats), the leader on a follower. What a
        follower knows of the other followers is nothing, so it reports none."""
        if self.is_leader:
            watched = [m.raft_id for m in members if m.raft_id != self.raft_id]
        elif self.leader_id and self.leader_id != self.raft_id:
            watched = [self.leader_id]
        else:
            return frozenset()
        now = self.loop.time()
        timeout_s = 2 * self.config.raft_election_ticks * self.config.raft_tick_ms / 1000
        return frozenset(
            raft_id
            for raft_id in watched
            if now - self.heard_from.get(raft_id, self._started_at) > timeout_s
        )

    # -- membership --------------------------------------------------------------------------

    def _address_book(self, extra: Member | None = None) -> bytes:
        members = dict(self.members)
        if extra is not None:
            members[extra.raft_id] = extra
        book = [[m.raft_id, m.host, m.port, m.bus_port] for _, m in sorted(members.items())]
        return json.dumps({"members": book}).encode()

    def _member_list(self) -> list[list[Any]]:
        return [[m.raft_id, m.host, m.port, m.bus_port] for _, m in sorted(self.members.items())]

    def _learn_members(self, book: list[list[Any]]) -> None:
        for raft_id, host, port, bus_port in book:
            member = Member(int(raft_id), str(host), int(port), int(bus_port))
            if self.members.get(member.raft_id) != member:
                self.members[member.raft_id] = member
                if member.raft_id != self.raft_id:
                    self.bus.set_peer(str(member.raft_id).encode(), member.host, member.bus_port)

    def _conf_change_applied(self, change: ConfChange) -> None:
        if change.context:
            try:
                self._learn_members(json.loads(change.context)["members"])
            except (ValueError, KeyError, TypeError):
                log.warning("conf change with an unreadable address book")
        for single in change.changes:
            if single.type is ConfChangeType.REMOVE_NODE and single.node_id != self.raft_id:
                self.members.pop(single.node_id, None)
                self.bus.remove_peer(str(single.node_id).encode())
                if self.peer_identities is not None:
                    # Whoever joins with this id next is a new member, with a new identity.
                    self.peer_identities.forget({single.node_id})

    def add_member(self, member: Member) -> None:
        """CLUSTER MEET: add ``member`` as a learner; it is promoted once caught up."""
        if self.raw is None:
            raise RequestDropped("not started")
        change = ConfChange((add_learner(member.raft_id),), context=self._address_book(member))
        self.raw.propose_conf_change(change)
        self.members[member.raft_id] = member
        self.bus.set_peer(str(member.raft_id).encode(), member.host, member.bus_port)
        self._schedule_ready()

    def remove_member(self, raft_id: int) -> None:
        """CLUSTER FORGET: remove a member from the group."""
        if self.raw is None:
            raise RequestDropped("not started")
        change = ConfChange((remove_node(raft_id),), context=self._address_book())
        self.raw.propose_conf_change(change)
        self._schedule_ready()

    def transfer_leadership(self, to: int) -> None:
        if self.raw is None:
            raise RequestDropped("not started")
        self.raw.transfer_leadership(to)
        self._schedule_ready()

    def _promote_caught_up_learners(self) -> None:
        raw = self.raw
        if raw is None:
            return
        status = raw.status()
        for raft_id, progress in status.progress.items():
            # Caught up means it answered (REPLICATE: it acknowledged an append, so it
            # holds the snapshot and the log up to match_index; recently active: it is
            # still there) and is close to the end of the log. Closeness alone is not
            # enough: when the log is short, a learner that never received anything
            # would look close, and a voter that cannot answer costs fault tolerance.
            if (
                progress.is_learner
                and progress.state == "REPLICATE"
                and progress.recent_active
                and progress.match_index + PROMOTE_LAG_ENTRIES >= status.last_index
            ):
                try:
                    raw.propose_conf_change(
                        ConfChange((add_voter(raft_id),), context=self._address_book())
                    )
                except RequestDropped:
                    return  # a change is pending; try again next tick
                log.info("promoting learner %d to voter", raft_id)
                return

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot_meta(self, index: int) -> tuple[int, dict[str, Any]]:
        term, meta = super().snapshot_meta(index)
        if self.raw is not None:
            term = self.storage.term(index) if index else 0
            conf_state = self.raw.conf_state()  # as of the applied index: the snapshot's
            self._snapshot_conf_states[index] = conf_state
            meta["raft_conf_state"] = conf_state_meta(conf_state)
            meta["members"] = self._member_list()
        return term, meta

    def snapshot_written(self, index: int) -> None:
        """As a standalone node, keep the log back to the snapshot before this one;
        the Raft storage also forgets the entries this one covers."""
        conf_state = self._snapshot_conf_states.pop(index, None)
        self._snapshot_conf_states.clear()
        if conf_state is None:
            return
        older = [i for i, _ in list_snapshots(self.snapshot_dir) if i < index]
        path = snapshot_path(self.snapshot_dir, index)
        self.storage.snapshot_taken(
            index, conf_state, path, {"index": index}, older[0] if older else 0
        )

    def _install_snapshot(self, rd: Ready) -> None:
        """A snapshot from the leader replaces this node's state (step 1 of the Ready)."""
        snapshot = rd.snapshot
        if snapshot is None:
            return
        index = snapshot.meta.index
        path = snapshot_path(self.snapshot_dir, index)
        if snapshot.data:
            write_bytes_atomically(path, snapshot.data)
        else:
            # A founding member's first snapshot: the initial configuration, no keys.
            check(
                self.machine.applied_index == 0 and not len(self.keyspace),
                "an empty snapshot can only start a new member",
            )
            meta: dict[str, Any] = {
                "raft_conf_state": conf_state_meta(snapshot.meta.conf_state),
                "members": self._member_list(),
            }
            write_snapshot(self.snapshot_dir, index, snapshot.meta.term, iter(()), meta)
        try:
            meta, keyspace = load_snapshot(path)
        except CorruptSnapshot:
            os.unlink(path)
            raise
        self.keyspace.adopt(keyspace)
        self.machine.applied_index = index
        self.machine.stamp_ms = max(self.machine.stamp_ms, meta.get("stamp_ms", 0))
        self.snapshot_index = index
        self.storage.install_snapshot(snapshot, path, meta)
        self._learn_members(meta.get("members", []))
        if self.peer_identities is not None:  # members removed while this node was behind
            current = snapshot.meta.conf_state.members()
            self.peer_identities.forget(set(self.peer_identities.known) - current)
        # The snapshot holds these proposals' outcome but not whose entries sat at
        # their indexes: a deposed leader's entries often committed under the next
        # leader. Their fate cannot be told, so their connections are closed, as when
        # a server dies mid-request, rather than answered "not committed".
        unknown: set[Waiter] = set()
        for stale in [i for i in self._inflight if i <= index]:
            unknown.update(c for c in self._inflight.pop(stale)[3] if c is not None)
        for client in unknown:
            client.flush()  # the replies settled before them still go out
            client.close()
        log.info("installed a snapshot at index %d (%d keys)", index, len(self.keyspace))

    # -- shutdown and introspection ----------------------------------------------------------

    async def shutdown(self) -> None:
        if self.shutting_down:
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        await super().shutdown()
        self.proxy.close()
        await self.bus.close()
        self.storage.close()

    def info_replication(self) -> dict[str, Any]:
        """INFO replication's role-specific fields, from the topology, as a Redis
        master or replica reports them (the shared tail is in server/info.py)."""
        topology = self.topology()
        now = self.loop.time()
        if self.is_leader:
            replicas = topology.live_replicas()
            fields: dict[str, Any] = {"role": "master", "connected_slaves": len(replicas)}
            for i, member in enumerate(replicas):
                offset = topology.match_index.get(member.raft_id, 0)
                lag = int(now - self.heard_from.get(member.raft_id, self._started_at))
                fields[f"slave{i}"] = (
                    f"ip={member.host},port={member.port},state=online,offset={offset},lag={lag}"
                )
            return fields
        leader = topology.leader
        up = leader is not None and leader.raft_id not in topology.failed
        heard = self.heard_from.get(self.leader_id)
        return {
            "role": "slave",
            "master_host": leader.host if leader is not None else "?",
            "master_port": leader.port if leader is not None else -1,
            "master_link_status": "up" if up else "down",
            "master_last_io_seconds_ago": int(now - heard) if heard is not None else -1,
            "master_sync_in_progress": 0,
            "slave_repl_offset": self.machine.applied_index,
            "slave_read_only": 1,
            "connected_slaves": 0,
        }

    def info_raft(self) -> dict[str, Any]:
        raw = self.raw
        if raw is None:
            return {}
        status = raw.status()
        info: dict[str, Any] = {
            "raft_id": self.raft_id,
            "role": "learner"
            if self.raft_id in status.conf_state.learners
            else (status.role.name.lower().replace("pre_candidate", "candidate")),
            "term": status.term,
            "leader_id": status.leader_id,
            "commit_index": status.commit_index,
            "applied_index": self.machine.applied_index,
            "first_index": status.first_index,
            "last_index": status.last_index,
            "voters": ",".join(map(str, status.conf_state.voters)),
            "learners": ",".join(map(str, status.conf_state.learners)),
            # Peers refused on the bus: without the cluster secret, or with a data
            # directory other than the one they ran on (nomadkv.storage.identity).
            "bus_auth_failures": self.bus.auth_failures,
            "bus_identity_refusals": self.bus.identity_refusals,
        }
        for peer_id, progress in status.progress.items():
            if peer_id != self.raft_id:
                # bytes_sent: everything this node sent on its bus link to the peer
                # (appends, heartbeats, snapshot chunks); bench.cluster times catch-up by it.
                link = self.bus.links.get(str(peer_id).encode())
                info[f"peer{peer_id}"] = (
                    f"match={progress.match_index},next={progress.next_index},"
                    f"state={progress.state.lower()},learner={int(progress.is_learner)},"
                    f"bytes_sent={link.bytes_sent if link is not None else 0}"
                )
        return info
