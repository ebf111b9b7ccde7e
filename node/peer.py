"""A durable mesh peer (the relay): merge, ack, elect, act, repair.

One trio task per duty, all around one store and one :class:`~mesh.gossip.Gossip`:

- **receive**: every validated message is decoded and applied: a ``report``
  is merged into the store and then acked on the control topic (the ack
  means "durably stored here", DESIGN section 7); ``occ`` and ``state``
  merge; ``issue`` records the leader's links; ``hb`` feeds the election;
  ``digest`` is answered with the states the sender lacks.
- **tick**: the election's clock. Heartbeats go out when due; while this
  peer leads it runs one leader round (``node.leader.act``) per heartbeat
  with its term and announces the links it wrote.
- **drain**: reports left in this machine's spool (by CLIs whose delivery
  failed, or handed over through the local nudge socket) are merged and
  published, so nothing spooled is stranded.
- **digest**: every few seconds, and whenever the set of peers changes, a
  summary goes out so that dropped gossip and healed partitions converge.

Validation (before any of this, inside gossipsub): a payload must decode
under the cluster key (:func:`make_validator`), and a message that names its
sender must name its libp2p signer. Rejections are counted by reason; a
peer that keeps sending rejected messages is banned.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import math
import os
import random
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from github_sink.errors import SinkError
from github_sink.sink import Replica, Sink
from mesh import wire
from mesh.aggregate import OriginCount, SigState, state_fingerprint
from mesh.election import (
    BecameLeader,
    Election,
    ElectionConfig,
    LeaderChanged,
    SendHeartbeat,
    SteppedDown,
)
from mesh.errors import StoreUnavailable
from mesh.gossip import Gossip, Validator
from mesh.report import Occurrence, Report
from mesh.store import Store
from node.handover import take as take_handovers
from node.leader import RoundResult, act

__all__ = ["MeshPeer", "PeerOptions", "RejectionCounter", "make_validator", "state_of_occurrence"]

log = logging.getLogger("errmesh.peer")

#: Rejections from one signer before it is banned.
BAN_AFTER = 20
#: Occurrences per ``occ`` message, and the pause between messages of a burst.
OCC_BATCH = 256
PACE = 0.002
#: Sink actions per leader round, and the time the leader may spend per tick.
LEAD_BATCH = 8
#: States sent per digest answer (the rest go with the next digest).
ANSWER_MAX = 1024
#: Seconds between two answers with one signature's state: an answer goes to
#: the whole topic, so it serves every digest that asked meanwhile.
ANSWER_QUIET = 2.0
#: A difference this young (seconds since our state of that signature last
#: changed) is left unanswered: the message that changed ours is most likely
#: still on its way to the digest's sender. Answered anyway once deferred
#: for ANSWER_DEFER_MAX, so a signature that changes all the time is still
#: repaired.
ANSWER_YOUNG = 1.0
ANSWER_DEFER_MAX = 5.0
#: Up to this long (random) before answering, so that the answer of one relay
#: can reach the others and spare theirs (scalable reliable multicast's trick).
ANSWER_JITTER = 0.2
#: A loop's repeated failure (or the store's) is logged at most once per this many seconds.
FAULT_LOG_EVERY = 60.0
#: Entries per digest message.
DIGEST_BATCH = 512
#: Seconds between rebuilds of the digest cache from the store.
REBUILD_EVERY = 600.0
#: Data messages merged per store transaction, report ids per ``ack``. (16
#: per transaction, tried to shorten loop stalls, made propagation.py
#: collapse: a transaction per few messages is a commit per few messages.)
APPLY_BATCH = 256
ACK_BATCH = 64
#: Data messages waiting to be merged before new ones are dropped.
BACKLOG_MAX = 50_000


@dataclass
class RejectionCounter:
    """Rejected messages by reason and by signer (for status and banning)."""

    by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    by_signer: collections.Counter[str] = field(default_factory=collections.Counter)
    banned: set[str] = field(default_factory=set)

    def add(self, reason: str, signer: str) -> int:
        self.by_reason[reason] += 1
        self.by_signer[signer] += 1
        return self.by_signer[signer]


def make_validator(
    key: bytes | None,
    rejections: RejectionCounter,
    on_ban: Callable[[str], None] | None = None,
) -> Validator:
    """The gossipsub validator: decodes under ``key``, checks the claimed sender.

    Never raises; a refused message is counted by its reason.
    """

    def validate(topic: str, signer: str, data: bytes) -> bool:
        decoded = wire.decode(data, key)
        reason = ""
        if isinstance(decoded, wire.Rejected):
            reason = decoded.reason
        elif _forged(decoded, signer):
            reason = "forged-sender"
        if not reason:
            return True
        count = rejections.add(reason, signer)
        if count % BAN_AFTER == 0 and on_ban is not None:  # every 20 refusals: (re)ban
            rejections.banned.add(signer)
            on_ban(signer)
        return False

    return validate


def _forged(msg: wire.Message, signer: str) -> bool:
    """Whether a message claims a sender, heartbeat peer or acker other than its signer."""
    if msg.sender and msg.sender != signer:
        return True
    if isinstance(msg, wire.AckMsg) and msg.acker and msg.acker != signer:
        return True
    return isinstance(msg, wire.HeartbeatMsg) and msg.heartbeat.peer != signer


def _unspecified(maddr: str) -> bool:
    """A wildcard listen address, which no other machine can dial."""
    return maddr.startswith(("/ip4/0.0.0.0/", "/ip6/::/"))


def _digest_entry(state: SigState) -> wire.DigestEntry:
    return wire.DigestEntry(
        signature=state.signature,
        total=state.total,
        link_term=state.link.term if state.link else -1,
        link_synced_total=state.link.synced_total if state.link else -1,
        fingerprint=state_fingerprint(state),
    )


def state_of_occurrence(occ: Occurrence) -> SigState:
    """The state an ``occ`` record adds (no detail: that comes with the report)."""
    return SigState(
        signature=occ.signature,
        counts={
            occ.origin: OriginCount(
                count=occ.count, first_seen=occ.first_seen, last_seen=occ.last_seen, host=occ.host
            )
        },
        severity=occ.severity,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerOptions:
    """How this durable peer takes part."""

    reports_topic: str
    control_topic: str
    key: bytes | None = None
    eligible: bool = True
    priority: int = 0
    heartbeat: float = 0.5
    digest_every: float = 5.0
    status_path: Path | None = None


class MeshPeer:
    """A relay's duties over one store and one gossip handle."""

    def __init__(
        self,
        *,
        store: Store,
        gossip: Gossip,
        options: PeerOptions,
        sink: Sink | None,
        rejections: RejectionCounter,
        clock: Callable[[], float] = time.time,
        replica: Replica | None = None,
    ) -> None:
        self.store = store
        self.replica = replica  # this machine's copy of the file sink's issues
        self.gossip = gossip
        self.options = options
        self.sink = sink if options.eligible else None
        self.rejections = rejections
        self.clock = clock
        self.election = Election(
            me=gossip.peer_id,
            priority=options.priority,
            eligible=options.eligible and sink is not None,
            config=ElectionConfig(heartbeat=options.heartbeat),
            now=clock(),
            term=store.max_link_term(),
        )
        self.nudged = trio.Event()
        self._lead_wanted = trio.Event()
        self._believed: str | None = None
        self._worker_store: Store | None = None  # the rounds' own handle (worker threads)
        self._in_round = False
        self._lead_not_before = -math.inf
        gate = getattr(self.sink, "set_gate", None)
        if callable(gate):  # the GitHub sink checks before every write that we still lead
            gate(lambda: self.election.role == "leader")
        self.stats: collections.Counter[str] = collections.Counter()
        #: Exceptions each loop survived (by loop), and when each was last logged.
        self.faults: collections.Counter[str] = collections.Counter()
        self._fault_logged: dict[str, float] = {}
        #: None while the store takes writes; else what failed and since when.
        self.store_error: dict[str, Any] | None = None
        self.status_url = ""
        # One digest entry per signature, kept current by every write this
        # peer makes; rebuilt from the store (in batches) now and then, so a
        # digest never decodes the whole aggregate.
        self._entries: dict[bytes, wire.DigestEntry] = {}
        self._entries_built_at = -math.inf
        # The receive loop's hand-offs (see _receive_loop).
        self._backlog: collections.deque[tuple[wire.Message, str]] = collections.deque()
        self._apply_wanted = trio.Event()
        self._digests: dict[tuple[str, bytes], wire.DigestMsg] = {}
        self._digest_wanted = trio.Event()
        #: The longest a message of each kind waited in our receive channel.
        self.lag_max: dict[str, float] = {}
        self._candidate_addrs: dict[str, tuple[str, ...]] = {}
        self._answered_at: dict[bytes, float] = {}  # signature -> trio time of the last answer
        self._changed_at: dict[bytes, float] = {}  # signature -> trio time our entry changed
        self._deferred_since: dict[bytes, float] = {}  # signature -> first young answer skipped
        self._status_belief: tuple[str, str | None, int] | None = None
        self._peers_changed = trio.Event()  # set by _watch_peers, awaited by _digest_loop
        self._status_at = -math.inf

    # -- the loops --------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._apply_loop)
            nursery.start_soon(self._answer_loop)
            nursery.start_soon(self._tick_loop)
            nursery.start_soon(self._drain_loop)
            nursery.start_soon(self._digest_loop)
            nursery.start_soon(self._lead_loop)
            nursery.start_soon(self._watch_peers)
            if self.election.role != "observer":
                nursery.start_soon(self._connect_candidates)
            task_status.started()

    async def _guarded(self, loop: str, step: Callable[[], Awaitable[object]]) -> bool:
        """Run one step of ``loop``; an exception is counted and logged, never fatal.

        One message, one signature or a full disk must not stop a relay: the
        step's work is lost (reports are not acked, so their senders keep
        them; states come again by anti-entropy), the loop goes on. The
        store's failure is kept for /status until a write succeeds again.
        Cancellation (a BaseException) passes. Returns whether it succeeded.
        """
        try:
            await step()
        except StoreUnavailable as exc:
            self.faults[loop] += 1
            if self.store_error is None:
                self.store_error = {"ok": False, "error": str(exc), "since": self.clock()}
            self.store_error["error"] = str(exc)
            self._log_fault("store", "store unavailable, not acking reports: %s", exc)
            return False
        except Exception as exc:
            self.faults[loop] += 1
            self._log_fault(loop, f"{loop} loop: %s (survived)", exc, trace=True)
            return False
        return True

    def _store_wrote(self) -> None:
        """A write committed: a store that was failing has recovered."""
        if self.store_error is not None:
            log.warning(
                "store recovered after %.0f s: %s",
                self.clock() - self.store_error["since"],
                self.store_error["error"],
            )
            self.store_error = None
            self._fault_logged.pop("store", None)

    def _log_fault(self, key: str, fmt: str, exc: BaseException, *, trace: bool = False) -> None:
        now = trio.current_time()
        if now - self._fault_logged.get(key, -math.inf) < FAULT_LOG_EVERY:
            return
        self._fault_logged[key] = now
        log.error(fmt, exc, exc_info=exc if trace else None)

    async def _receive_loop(self) -> None:
        """Sort what arrives so that nothing time-critical waits behind bulk work.

        Heartbeats go to the election at once: queued behind a few thousand
        reports and state answers they arrived late, live leaders expired and
        a second leader was elected (``scripts/bench/github_cost.py``).
        Digests are answered by their own task, the latest per sender and
        range. Everything else is merged in batches by :meth:`_apply_loop`.
        """
        async for received in self.gossip.receive:
            decoded = wire.decode(received.data, self.options.key)
            if isinstance(decoded, wire.Rejected):
                continue  # the validator already refused and counted it
            lag = trio.current_time() - received.at if received.at else 0.0
            try:
                self.accept(decoded, received.sender, lag)
                if isinstance(decoded, wire.HeartbeatMsg):
                    await self.handle(decoded, received.sender)
            except Exception as exc:  # one bad message must not stop the peer
                self.faults["receive"] += 1
                self.stats["handler_errors"] += 1
                self._log_fault(
                    "receive", "handling a message failed (survived): %s", exc, trace=True
                )

    def accept(self, msg: wire.Message, sender: str, lag: float = 0.0) -> None:
        """Route one decoded message; ``lag``: seconds it waited in our channel."""
        kind = type(msg).__name__
        self.lag_max[kind] = max(self.lag_max.get(kind, 0.0), lag)
        if isinstance(msg, wire.HeartbeatMsg):
            return  # applied by the caller, now
        if isinstance(msg, wire.DigestMsg):
            self._digests[(sender, msg.after)] = msg  # a newer one replaces it
            self._digest_wanted.set()
            return
        if isinstance(msg, wire.StateMsg):
            # Someone answered a digest, to everybody: ours would repeat it.
            now = trio.current_time()
            for state in msg.states:
                self._answered_at[state.signature] = now
        if len(self._backlog) >= BACKLOG_MAX:
            # Anti-entropy repairs what is dropped here; an unacked report is
            # sent again by its reporter.
            self.stats["dropped_busy"] += 1
            return
        self._backlog.append((msg, sender))
        self._apply_wanted.set()

    async def _apply_loop(self) -> None:
        while True:
            await self._apply_wanted.wait()
            self._apply_wanted = trio.Event()
            while self._backlog:
                n = min(APPLY_BATCH, len(self._backlog))
                batch = [self._backlog.popleft() for _ in range(n)]
                await self._guarded("apply", functools.partial(self.apply, batch))
                await trio.lowlevel.checkpoint()

    async def _answer_loop(self) -> None:
        while True:
            await self._digest_wanted.wait()
            self._digest_wanted = trio.Event()
            await trio.sleep(random.uniform(0.0, ANSWER_JITTER))
            while self._digests:
                key = next(iter(self._digests))
                msg = self._digests.pop(key)
                try:
                    await self._answer_digest(msg)
                except Exception as exc:
                    self.faults["answer"] += 1
                    self.stats["handler_errors"] += 1
                    self._log_fault(
                        "answer", "answering a digest failed (survived): %s", exc, trace=True
                    )

    async def _tick_loop(self) -> None:
        while True:
            now = self.clock()
            await self._guarded("tick", functools.partial(self._tick, now))
            deadline = self.election.next_deadline()
            await trio.sleep(max(0.01, min(self.options.heartbeat, deadline - self.clock())))

    async def _tick(self, now: float) -> None:
        await self._apply_election(self.election.tick(now))
        if self.election.role == "leader":
            self._lead_wanted.set()
        self._write_status()

    async def _drain_loop(self) -> None:
        while True:
            await self._guarded("drain", self.drain)
            with trio.move_on_after(1.0):
                await self.nudged.wait()
            self.nudged = trio.Event()

    async def _digest_loop(self) -> None:
        """A digest every ``digest_every`` seconds and whenever the peer set changes."""
        while True:
            self._peers_changed = trio.Event()
            await self._guarded("digest", self.send_digest)
            with trio.move_on_after(self.options.digest_every):
                await self._peers_changed.wait()

    # -- handling ---------------------------------------------------------

    async def handle(self, msg: wire.Message, sender: str) -> None:
        """Apply one decoded message from ``sender`` now."""
        if isinstance(msg, wire.HeartbeatMsg):
            if msg.heartbeat.eligible and msg.addrs:
                self._candidate_addrs[msg.heartbeat.peer] = msg.addrs
            await self._apply_election(self.election.receive(msg.heartbeat, self.clock()))
        elif isinstance(msg, wire.DigestMsg):
            await self._answer_digest(msg)
        else:
            await self.apply([(msg, sender)])

    async def apply(self, batch: list[tuple[wire.Message, str]]) -> None:
        """Merge a batch of data messages in one transaction per kind, then ack.

        Merging is a join, so order within the batch does not matter. A report
        is acked only after its transaction committed (DESIGN section 7); if
        the store fails, nothing is acked and the reporter sends it again.
        """
        reports = [(m, sender) for m, sender in batch if isinstance(m, wire.ReportMsg)]
        states: list[SigState] = []
        acked: list[tuple[bytes, int]] = []
        for msg, _ in batch:
            if isinstance(msg, wire.OccMsg):
                states.extend(state_of_occurrence(o) for o in msg.occurrences)
            elif isinstance(msg, wire.StateMsg):
                states.extend(msg.states)
            elif isinstance(msg, wire.IssueMsg):
                states.extend(SigState(signature=sig, link=link) for sig, link in msg.links)
            elif isinstance(msg, wire.AckMsg):
                acked.extend(msg.ids)
        if reports:
            self._note(*self.store.merge_reports([m.report for m, _ in reports]))
            self._store_wrote()
            self.stats["reports"] += len(reports)
            # Only the reporter's direct peers ack: its configured relays are
            # among them, and it trusts no other acker (DECISIONS 12). Acks
            # from every relay were 9 of every 10 messages a report caused.
            direct = set(self.gossip.peers())
            wanted = tuple(
                (m.report.origin, m.report.seq)
                for m, sender in reports
                if m.ack and sender in direct
            )
            for start in range(0, len(wanted), ACK_BATCH):
                ack = wire.AckMsg(ids=wanted[start : start + ACK_BATCH], acker=self.gossip.peer_id)
                await self._publish(self.options.control_topic, ack)
        if states:
            # Not waiting for the disk: any peer can send these again.
            merged = self.store.merge_states(states, durable=False)
            self._note(*merged)
            self.stats["states_merged"] += len(states)
            await self._mirror([s for s in merged if s.link is not None])
        if acked:
            self.store.ack(acked)

    async def drain(self) -> int:
        """Merge and publish what this machine's spool holds; returns how many.

        The wire carries state, not events (DESIGN section 7): per new
        signature, one full report (the earliest, for its detail), and for
        every signature the latest cumulative count of each origin, batched
        into ``occ`` messages and paced, so a burst of thousands of spooled
        reports is a few messages and never overflows libp2p's 32-slot queues.
        """
        take_handovers(self.store)  # reports failing processes here handed over
        await self._observe_replica()
        pending = self.store.pending(limit=5000)
        if not pending:
            return 0
        # A full report goes out only for a signature this store had no detail
        # of: then the mesh may lack it too. Re-sending one per signature on
        # every drain round was most of the bytes under a steady stream of
        # failures (and anti-entropy repairs a lost one anyway).
        known = {
            sig
            for sig in {r.signature for r in pending}
            if (state := self.store.load_state(sig)) is not None and state.detail is not None
        }
        self._note(*self.store.merge_reports(pending))
        self._store_wrote()
        first: dict[bytes, Report] = {}
        latest: dict[tuple[bytes, bytes], Occurrence] = {}
        for report in pending:
            if report.signature not in known:
                first.setdefault(report.signature, report)
            key = (report.origin, report.signature)
            previous = latest.get(key)
            occ = report.occurrence()
            if previous is not None:
                occ = dataclasses.replace(
                    occ,
                    count=max(occ.count, previous.count),
                    first_seen=min(occ.first_seen, previous.first_seen),
                    last_seen=max(occ.last_seen, previous.last_seen),
                )
            latest[key] = occ
        for report in first.values():
            # Already committed here (merge_reports unspooled it): no acks wanted.
            # Not bulk: a report is what propagation latency is measured on.
            await self._publish(
                self.options.reports_topic, wire.ReportMsg(report=report, ack=False)
            )
            await trio.sleep(PACE)
        occurrences = list(latest.values())
        for start in range(0, len(occurrences), OCC_BATCH):
            batch = tuple(occurrences[start : start + OCC_BATCH])
            await self._publish(
                self.options.reports_topic, wire.OccMsg(occurrences=batch), bulk=True
            )
            await trio.sleep(PACE)
        self.stats["drained"] += len(pending)
        return len(pending)

    async def _mirror(self, states: list[SigState]) -> None:
        """Show replicated links in this machine's issue folder, off the loop."""
        if self.replica is None or not states:
            return
        try:
            await trio.to_thread.run_sync(
                functools.partial(self.replica.mirror, states, now=self.clock())
            )
        except SinkError as exc:  # the copy is shown again from the store later
            log.warning("cannot copy issues into this machine's folder: %s", exc)

    async def _observe_replica(self) -> None:
        """Send what people changed in this machine's folder (``errmesh issues close``).

        Recorded as the leader's ``_observe`` records what it sees, in the
        link's term, but a hair later than the link rather than at our clock:
        a clock ahead of the leader's would make our link outlast the
        leader's next writes in that term.
        """
        if self.replica is None:
            return
        try:
            changes = await trio.to_thread.run_sync(self.replica.changes)
        except SinkError as exc:
            log.warning("cannot read this machine's issue folder: %s", exc)
            return
        states = []
        for sig, shown in sorted(changes.items()):
            state = self.store.load_state(sig)
            if state is None or state.link is None:
                continue
            if state.link.state != shown:
                seen = dataclasses.replace(
                    state.link,
                    state=shown,
                    synced_at=math.nextafter(state.link.synced_at, math.inf),
                )
                state = self.store.set_link(sig, seen)
                self._note(state)
            states.append(state)
        await self._mirror(states)  # the folder now shows the link it asked for
        links = tuple((s.signature, s.link) for s in states if s.link is not None)
        if links:
            await self._publish(self.options.control_topic, wire.IssueMsg(links=links))

    def _note(self, *states: SigState) -> None:
        now = trio.current_time()
        for state in states:
            entry = _digest_entry(state)
            if self._entries.get(state.signature) != entry:
                self._changed_at[state.signature] = now
            self._entries[state.signature] = entry

    async def _refresh_entries(self) -> None:
        """Rebuild the digest cache from the store, a batch at a time."""
        if self.clock() - self._entries_built_at < REBUILD_EVERY:
            return
        entries: dict[bytes, wire.DigestEntry] = {}
        for batch in self.store.iter_states():
            for state in batch:
                entries[state.signature] = _digest_entry(state)
            await self._mirror([s for s in batch if s.link is not None])
            await trio.lowlevel.checkpoint()
        self._entries = entries
        self._entries_built_at = self.clock()

    async def send_digest(self) -> None:
        """The digest in batches; each says which signature range it covers."""
        await self._refresh_entries()
        self.stats["digests_sent"] += 1
        sigs = sorted(self._entries)
        after = b""
        for start in range(0, max(1, len(sigs)), DIGEST_BATCH):
            chunk = sigs[start : start + DIGEST_BATCH]
            last = start + DIGEST_BATCH >= len(sigs)
            until = b"" if last else chunk[-1]
            msg = wire.DigestMsg(
                entries=tuple(self._entries[sig] for sig in chunk), after=after, until=until
            )
            await self._publish(self.options.control_topic, msg, bulk=True)
            await trio.sleep(PACE)
            after = until

    async def _answer_digest(self, msg: wire.DigestMsg) -> None:
        """Send the states the digest's sender lacks or holds differently.

        With fingerprints (this version) a difference is answered unless the
        sender is ahead by total (and not behind on the link); the other side
        answers ours, so after two exchanges both hold the join. An
        entry without one (an older peer) is compared by total and link. A
        signature in the digest's range but not among its entries is one the
        sender lacks. At most ANSWER_MAX states per answer; the next digest
        draws the rest.
        """
        await self._refresh_entries()
        theirs = {e.signature: e for e in msg.entries}
        wanted: list[bytes] = []
        now = trio.current_time()
        for sig in sorted(self._entries):
            if (msg.after and sig <= msg.after) or (msg.until and sig > msg.until):
                continue
            if now - self._answered_at.get(sig, -math.inf) < ANSWER_QUIET:
                # Just sent to everybody (by us or another relay). While reports
                # flowed every digest differed somewhere, and one answer per
                # digest per relay was most of the traffic (propagation.py).
                continue
            if now - self._changed_at.get(sig, -math.inf) < ANSWER_YOUNG:
                since = self._deferred_since.setdefault(sig, now)
                if now - since < ANSWER_DEFER_MAX:
                    continue  # what changed ours is likely still on its way to them
            self._deferred_since.pop(sig, None)
            mine = self._entries[sig]
            entry = theirs.get(sig)
            if entry is None:
                differs = True
            elif entry.fingerprint and mine.fingerprint:
                # A sender ahead by total gets nothing from us now: it answers
                # our digest, and once we hold the join, we answer its next one.
                # Answering every difference made every relay ship whole states
                # to all, for every digest, while counts were moving.
                differs = entry.fingerprint != mine.fingerprint and (
                    mine.total >= entry.total
                    or (mine.link_term, mine.link_synced_total)
                    > (entry.link_term, entry.link_synced_total)
                )
            else:
                differs = mine.total > entry.total or (mine.link_term, mine.link_synced_total) > (
                    entry.link_term,
                    entry.link_synced_total,
                )
            if differs:
                wanted.append(sig)
                if len(wanted) >= ANSWER_MAX:
                    break
        states = [s for s in (self.store.load_state(sig) for sig in wanted) if s is not None]
        for sig in wanted:
            self._answered_at[sig] = now
        self.stats["digests_answered"] += 1
        self.stats["states_sent"] += len(states)
        await self._send_states(states)

    async def _send_states(self, states: list[SigState]) -> None:
        batch: list[SigState] = []
        size = 0
        for state in states:
            encoded = len(wire.encode_state(state))
            if batch and size + encoded > wire.MAX_MESSAGE // 2:
                await self._publish(
                    self.options.control_topic, wire.StateMsg(states=tuple(batch)), bulk=True
                )
                await trio.sleep(PACE * 5)
                batch, size = [], 0
            batch.append(state)
            size += encoded
        if batch:
            await self._publish(
                self.options.control_topic, wire.StateMsg(states=tuple(batch)), bulk=True
            )

    # -- election and leading ---------------------------------------------

    async def _apply_election(self, events: list[Any]) -> None:
        previous = self._believed
        for event in events:
            if isinstance(event, SendHeartbeat):
                addrs = tuple(a for a in self.gossip.addrs if not _unspecified(a))[:8]
                await self._publish(
                    self.options.control_topic,
                    wire.HeartbeatMsg(heartbeat=event.heartbeat, addrs=addrs),
                )
            elif isinstance(event, BecameLeader):
                log.info("leading in term %d", event.term)
                self.stats["elections_won"] += 1
                if previous not in (None, self.gossip.peer_id) and previous in self.election.alive(
                    self.clock()
                ):
                    # Taking over from a live leader (we outrank it): give it a
                    # heartbeat to hear us and stop before our first write.
                    self._lead_not_before = self.clock() + self.options.heartbeat
            elif isinstance(event, SteppedDown):
                log.info("stepped down (term %d): %s", event.term, event.reason)
            elif isinstance(event, LeaderChanged):
                log.info("leader is now %s (term %d)", event.leader, event.term)
        self._believed = self.election.leader

    async def _watch_peers(self) -> None:
        """Tell the election which direct connections opened and closed, and
        the digest loop that the peer set changed.

        A killed process's connections close within ~0.2 s: its peers stop
        counting it at once instead of waiting out the heartbeat timeout.
        libp2p offers no event for it, hence the poll.
        """
        known: set[str] = set()
        while True:
            current = set(self.gossip.peers())
            if current != known:
                self._peers_changed.set()
            now = self.clock()
            for peer in sorted(known - current):
                await self._apply_election(self.election.disconnected(peer, now))
            for peer in sorted(current - known):
                await self._apply_election(self.election.connected(peer, now))
            known = current
            await trio.sleep(0.05)

    async def _connect_candidates(self) -> None:
        """Keep a direct connection to the leader and to the best-ranked candidate.

        Only a direct connection shows a leader's death within the grace
        (see ``_watch_peers``), and the one who must see it first is the
        best-ranked other candidate, its successor. Heartbeats carry the
        addresses to dial. Dialling every candidate (tried first) turned a
        star of 10 all-eligible relays into 45 links and doubled their CPU.
        Backoff per candidate, from 1 s to 30 s.
        """
        retry_at: dict[str, tuple[float, float]] = {}
        while True:
            await trio.sleep(1.0)
            now = trio.current_time()
            direct = set(self.gossip.peers())
            alive = self.election.alive(self.clock())
            targets = {p for p in (self.election.leader, *alive[:1]) if p is not None}
            for peer in sorted(targets - {self.gossip.peer_id}):
                addrs = self._candidate_addrs.get(peer, ())
                if peer in direct or not addrs or retry_at.get(peer, (0.0, 0.0))[0] > now:
                    continue
                for addr in addrs:
                    try:
                        await self.gossip.dial(addr)
                        retry_at.pop(peer, None)
                        self.stats["candidate_dials"] += 1
                        break
                    except Exception as exc:  # unreachable from here: try later
                        log.debug("cannot reach candidate %s at %s: %s", peer, addr, exc)
                else:
                    delay = min(30.0, 2 * retry_at.get(peer, (0.0, 0.5))[1])
                    retry_at[peer] = (now + delay, delay)

    async def _lead_loop(self) -> None:
        """Leader rounds, one at a time, off the event loop.

        A sink may take seconds per round (GitHub spaces mutating requests a
        second apart), so rounds run in a worker thread with their own store
        handle while heartbeats, acks and digests keep flowing here: a
        leader that stops sending heartbeats would be replaced by a second one.
        """
        try:
            while True:
                await self._lead_wanted.wait()
                self._lead_wanted = trio.Event()
                if self.election.role == "leader":
                    await self._guarded("lead", functools.partial(self._lead, self.clock()))
        finally:
            # Not while an abandoned round may still be using it in its thread.
            if self._worker_store is not None and not self._in_round:
                self._worker_store.close()

    async def _lead(self, now: float) -> None:
        """Rounds of at most LEAD_BATCH actions until nothing is due or leadership ends."""
        if self.sink is None or self.clock() < self._lead_not_before:
            return
        term = self.election.term
        while self.election.role == "leader" and self.election.term == term:
            # Abandoned on cancellation: a shutdown does not wait for GitHub's
            # retry-after; the thread's work is durable step by step anyway.
            self._in_round = True
            result, links = await trio.to_thread.run_sync(  # type: ignore[call-arg,unused-ignore]
                functools.partial(self._round, now, term), abandon_on_cancel=True
            )
            self._in_round = False
            for error in result.errors:
                log.warning("%s", error)
            for _, state in links:
                self._note(state)
            if links:
                await self._publish(
                    self.options.control_topic,
                    wire.IssueMsg(links=tuple((sig, st.link) for sig, st in links if st.link)),
                )
            if not (result.opened or result.updated or result.reopened):
                return
            now = self.clock()

    def _round(self, now: float, term: int) -> tuple[RoundResult, list[tuple[bytes, SigState]]]:
        """One leader round in the worker thread; returns the links it changed."""
        assert self.sink is not None
        if self._worker_store is None:
            self._worker_store = self.store.sibling()
        return self._round_with(self._worker_store, now, term)

    def _round_with(
        self, store: Store, now: float, term: int
    ) -> tuple[RoundResult, list[tuple[bytes, SigState]]]:
        assert self.sink is not None
        result = act(
            store,
            self.sink,
            now=now,
            term=term,
            lock_timeout=0.2,
            max_actions=LEAD_BATCH,
            keep_going=lambda: self.election.role == "leader" and self.election.term == term,
        )
        return result, [(state.signature, state) for state in result.links]

    async def _publish(self, topic: str, msg: wire.Message, *, bulk: bool = False) -> None:
        """``bulk``: yield to heartbeats, acks and links (see ``Gossip.publish``)."""
        await self.gossip.publish(topic, wire.encode(msg, self.options.key), bulk=bulk)

    # -- status -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        try:
            stats: Any = self.store.statistics()
        except StoreUnavailable as exc:
            stats = types.SimpleNamespace(pending=None, signatures=None)
            if self.store_error is None:
                self.store_error = {"ok": False, "error": str(exc), "since": self.clock()}
        return {
            "store": self.store_error or {"ok": True},
            "faults": dict(self.faults),
            "peer_id": self.gossip.peer_id,
            "status_url": self.status_url,
            "addrs": self.gossip.addrs,
            "peers": self.gossip.peers(),
            "role": self.election.role,
            "leader": self.election.leader,
            "term": self.election.term,
            "spool_pending": stats.pending,
            "signatures": stats.signatures,
            "rejected": dict(self.rejections.by_reason),
            "banned": sorted(self.rejections.banned),
            "stats": dict(self.stats),
            "lag_max_ms": {k: round(v * 1000, 1) for k, v in sorted(self.lag_max.items())},
            "gossip": dataclasses.asdict(self.gossip.counters),
            "queues": self.gossip.queue_depths(),
            "updated_at": self.clock(),
            "pid": os.getpid(),
        }

    def _write_status(self) -> None:
        """Rewrite ``relay-status.json`` when the election changed, else once a second.

        The tick loop wakes at every peer's expiry, many times a second; a
        rewrite each time cost the 10 relays of scripts/bench/propagation.py
        several ms each (a JSON dump and a rename).
        """
        path = self.options.status_path
        if path is None:
            return
        now = trio.current_time()
        belief = (self.election.role, self.election.leader, self.election.term)
        if belief == self._status_belief and now - self._status_at < 1.0:
            return
        self._status_belief, self._status_at = belief, now
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.status(), indent=1))
            tmp.replace(path)
        except OSError:
            pass
