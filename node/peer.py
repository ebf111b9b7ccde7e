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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from github_sink.errors import SinkError
from github_sink.sink import Replica, Sink
from mesh import wire
from mesh.antientropy import AntiEntropy, AntiEntropyOptions, digest_entry
from mesh.election import (
    BecameLeader,
    Election,
    ElectionConfig,
    LeaderChanged,
    SendHeartbeat,
    SteppedDown,
)
from mesh.errors import LocalError, StoreError, StoreUnavailable
from mesh.gossip import Gossip
from mesh.report import Occurrence, Report
from mesh.sigstate import SigState
from mesh.store import Store, StoreStatistics
from node.admission import RejectionCounter
from node.faults import Faults
from node.handover import take as take_handovers
from node.leader import RoundResult, act
from node.merging import Batch, merge_records, merge_reports, signatures_of
from node.state_parts import state_messages

__all__ = ["MeshPeer", "PeerOptions"]

log = logging.getLogger("errmesh.peer")

#: Occurrences per ``occ`` message, and the pause between messages of a burst.
OCC_BATCH = 256
PACE = 0.002
#: Sink actions per leader round, and the time the leader may spend per tick.
LEAD_BATCH = 8
#: Data messages merged per store transaction, report ids per ``ack``. (16
#: per transaction, tried to shorten loop stalls, made propagation.py
#: collapse: a transaction per few messages is a commit per few messages.)
APPLY_BATCH = 256
ACK_BATCH = 64
#: Data messages waiting to be merged before new ones are dropped.
BACKLOG_MAX = 50_000
#: A loop that failed is restarted after this long, doubling up to RESTART_MAX.
RESTART_MIN = 0.05
RESTART_MAX = 5.0
#: Seconds between write probes while the store is down (nothing else may write).
PROBE_EVERY = 5.0


def _unspecified(maddr: str) -> bool:
    """A wildcard listen address, which no other machine can dial."""
    return maddr.startswith(("/ip4/0.0.0.0/", "/ip6/::/"))


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
    antientropy: AntiEntropyOptions = field(default_factory=AntiEntropyOptions)


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
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.replica = replica  # this machine's copy of the file sink's issues
        self.gossip = gossip
        self.options = options
        self.sink = sink if options.eligible else None
        self.rejections = rejections
        self.clock = clock
        self._election_clock = clock()
        self.election = Election(
            me=gossip.peer_id,
            priority=options.priority,
            eligible=options.eligible and sink is not None,
            config=ElectionConfig(heartbeat=options.heartbeat),
            now=self._election_clock,
            term=store.max_link_term(),
        )
        self.nudged = trio.Event()
        self._lead_wanted = trio.Event()
        self._believed: str | None = None
        self._worker_store: Store | None = None  # the rounds' own handle (worker threads)
        self._in_round = False
        self._lead_not_before = -math.inf
        if self.sink is not None:  # the sink checks before every write that we still lead
            self.sink.set_gate(lambda: self.election.role == "leader")
        self.stats: collections.Counter[str] = collections.Counter()
        self.faults = Faults(store_path=str(store.path), clock=clock)
        self.status_url = ""
        #: What digests say and which differences to answer (mesh/antientropy.py),
        #: on trio's monotonic clock.
        self.antientropy = AntiEntropy(options.antientropy, rng)
        # The receive loop's hand-offs (see _receive_loop).
        self._backlog: collections.deque[tuple[wire.Message, str]] = collections.deque()
        self._apply_wanted = trio.Event()
        self._digests: dict[tuple[str, bytes], wire.DigestMsg] = {}
        self._digest_wanted = trio.Event()
        #: The longest a message of each kind waited in our receive channel.
        self.lag_max: dict[str, float] = {}
        self._candidate_addrs: dict[str, tuple[str, ...]] = {}
        self._status_belief: tuple[str, str | None, int] | None = None
        self._peers_changed = trio.Event()  # set by _watch_peers, awaited by _digest_loop
        self._status_at = -math.inf

    # -- the loops --------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        loops: dict[str, Callable[[], Any]] = {
            "receive": self._receive_loop,
            "apply": self._apply_loop,
            "answer": self._answer_loop,
            "tick": self._tick_loop,
            "drain": self._drain_loop,
            "digest": self._digest_loop,
            "lead": self._lead_loop,
            "watch": self._watch_peers,
        }
        if self.election.role != "observer":
            loops["connect"] = self._connect_candidates
        async with trio.open_nursery() as nursery:
            for name, loop in loops.items():
                nursery.start_soon(self._supervise, name, loop, name=f"errmesh-{name}")
            task_status.started()

    async def _supervise(self, name: str, loop: Callable[[], Any]) -> None:
        """Run ``loop`` for ever: a failure is counted and logged, and the loop restarts.

        The loops isolate one message, one signature, one store write
        themselves; this catches what slips past (a bug, an exhausted
        resource), so that no failure of one duty stops the relay. Restarts
        back off (RESTART_MIN to RESTART_MAX) so a failure that repeats at
        once costs little CPU. Cancellation and KeyboardInterrupt are
        BaseExceptions and pass.
        """
        delay = RESTART_MIN
        while True:
            started = trio.current_time()
            try:
                await loop()
                return  # ended by itself: its input closed
            except StoreUnavailable as exc:
                self.faults.store_failed(exc)
                self.faults.by_loop[name] += 1
            except Exception as exc:
                self.faults.fault(name, exc)
            if trio.current_time() - started > 10 * RESTART_MAX:
                delay = RESTART_MIN  # it had been running fine
            await trio.sleep(delay)
            delay = min(RESTART_MAX, delay * 2)

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
                self.faults.fault("receive", exc, signatures_of(decoded))
                self.stats["handler_errors"] += 1

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
            self.antientropy.heard_answer((s.signature for s in msg.states), trio.current_time())
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
                await self.apply([self._backlog.popleft() for _ in range(n)])
                await trio.lowlevel.checkpoint()

    async def _answer_loop(self) -> None:
        while True:
            await self._digest_wanted.wait()
            self._digest_wanted = trio.Event()
            await trio.sleep(self.antientropy.answer_delay())
            while self._digests:
                key = next(iter(self._digests))
                msg = self._digests.pop(key)
                try:
                    await self._answer_digest(msg)
                except StoreUnavailable as exc:
                    self.faults.store_failed(exc)
                except Exception as exc:
                    self.faults.fault("answer", exc)
                    self.stats["handler_errors"] += 1

    async def _tick_loop(self) -> None:
        while True:
            now = self._election_now()
            await self._apply_election(self.election.tick(now))
            if self.election.role == "leader":
                self._lead_wanted.set()
            self._write_status()
            deadline = self.election.next_deadline()
            await trio.sleep(max(0.01, min(self.options.heartbeat, deadline - self.clock())))

    async def _drain_loop(self) -> None:
        probed_at = -math.inf
        while True:
            try:
                await self.drain()
            except StoreUnavailable as exc:
                self.faults.store_failed(exc)
            if self.faults.store_down and trio.current_time() - probed_at >= PROBE_EVERY:
                # Nothing else may write for a while: find out when space is back.
                probed_at = trio.current_time()
                self._probe_store()
            with trio.move_on_after(1.0):
                await self.nudged.wait()
            self.nudged = trio.Event()

    def _probe_store(self) -> None:
        try:
            self.store.probe_write()
        except StoreUnavailable as exc:
            self.faults.store_failed(exc)
        else:
            self.faults.store_ok()

    async def _digest_loop(self) -> None:
        """A digest every ``digest_every`` seconds and whenever the peer set changes."""
        while True:
            self._peers_changed = trio.Event()
            await self.send_digest()
            with trio.move_on_after(self.options.digest_every):
                await self._peers_changed.wait()

    # -- handling ---------------------------------------------------------

    async def handle(self, msg: wire.Message, sender: str) -> None:
        """Apply one decoded message from ``sender`` now."""
        if isinstance(msg, wire.HeartbeatMsg):
            if msg.heartbeat.eligible and msg.addrs:
                self._candidate_addrs[msg.heartbeat.peer] = msg.addrs
            await self._apply_election(self.election.receive(msg.heartbeat, self._election_now()))
        elif isinstance(msg, wire.DigestMsg):
            await self._answer_digest(msg)
        else:
            await self.apply([(msg, sender)])

    async def apply(self, batch: Batch) -> None:
        """Merge a batch of data messages in one transaction per kind, then ack.

        Merging is a join, so order within the batch does not matter. A report
        is acked only after its transaction committed (DESIGN section 7); if
        the store fails, nothing is acked and the reporter sends it again.
        A store that cannot be written (full disk) marks the store down and
        drops the batch (reporters retry, anti-entropy repairs the rest); any
        other failure is isolated by merging the batch's messages one by one,
        so one poison costs only itself and its signatures are blamed
        (quarantined if it keeps failing).
        """
        try:
            await self._apply(batch)
        except StoreUnavailable as exc:
            self.faults.store_failed(exc)
            self.stats["dropped_store_down"] += len(batch)
        except Exception as exc:
            if len(batch) == 1:
                self.faults.fault("apply", exc, signatures_of(batch[0][0]))
                self.stats["dropped_faulty"] += 1
                return
            for item in batch:
                await self.apply([item])

    async def _apply(self, batch: Batch) -> None:
        skip = self.faults.quarantined
        reports, changed = merge_reports(self.store, batch, skip)
        if reports:
            self.faults.store_ok()
            self._note(*changed)
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
        merged, records = merge_records(self.store, batch, skip)
        if records:
            self.faults.store_ok()
            self._note(*merged)
            self.stats["states_merged"] += records
            await self._mirror([s for s in merged if s.link is not None])

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
        self.faults.store_ok()
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
        self.antientropy.note(states, trio.current_time())

    async def _refresh_entries(self) -> None:
        """Rebuild the digest entries from the store, a batch at a time."""
        if not self.antientropy.rebuild_due(trio.current_time()):
            return
        entries: dict[bytes, wire.DigestEntry] = {}
        for batch in self.store.iter_states():
            for state in batch:
                entries[state.signature] = digest_entry(state)
            await self._mirror([s for s in batch if s.link is not None])
            await trio.lowlevel.checkpoint()
        self.antientropy.rebuilt(entries, trio.current_time())

    async def send_digest(self) -> None:
        """The digest in batches; each says which signature range it covers."""
        await self._refresh_entries()
        self.stats["digests_sent"] += 1
        for msg in self.antientropy.digest():
            await self._publish(self.options.control_topic, msg, bulk=True)
            await trio.sleep(PACE)

    async def _answer_digest(self, msg: wire.DigestMsg) -> None:
        """Send the states the digest's sender lacks or holds differently
        (which: ``mesh.antientropy``); a quarantined or unreadable signature
        is left out, the rest are answered."""
        await self._refresh_entries()
        states = []
        for sig in self.antientropy.to_answer(msg, trio.current_time()):
            if self.faults.quarantined(sig):
                continue
            try:
                state = self.store.load_state(sig)
            except StoreUnavailable:
                raise
            except Exception as exc:  # this signature's row: blame it, answer the rest
                self.faults.fault("answer", exc, (sig,))
                continue
            if state is not None:
                states.append(state)
        self.stats["digests_answered"] += 1
        self.stats["states_sent"] += len(states)
        await self._send_states(states)

    async def _send_states(self, states: list[SigState]) -> None:
        for i, msg in enumerate(state_messages(states)):
            if i:
                await trio.sleep(PACE * 5)
            try:
                await self._publish(self.options.control_topic, msg, bulk=True)
            except LocalError as exc:  # cannot be sent: blame its signatures, send the rest
                self.faults.fault("answer", exc, signatures_of(msg))

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

    def _election_now(self) -> float:
        """The clock, never going back: the election refuses time that does
        (LocalError), and a wall clock stepped back by NTP would otherwise
        fail every tick and heartbeat until it caught up."""
        self._election_clock = max(self._election_clock, self.clock())
        return self._election_clock

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
            now = self._election_now()
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
                    await self._lead(self.clock())
        finally:
            # Not while an abandoned round may still be using it in its thread.
            if self._worker_store is not None and not self._in_round:
                self._worker_store.close()
                self._worker_store = None  # a restarted loop opens a fresh one

    async def _lead(self, now: float) -> None:
        """Rounds of at most LEAD_BATCH actions until nothing is due or leadership ends."""
        if self.sink is None or self.clock() < self._lead_not_before:
            return
        term = self.election.term
        while self.election.role == "leader" and self.election.term == term:
            # Abandoned on cancellation: a shutdown does not wait for GitHub's
            # retry-after; the thread's work is durable step by step anyway.
            self._in_round = True
            try:
                result, links = await trio.to_thread.run_sync(  # type: ignore[call-arg,unused-ignore]
                    functools.partial(self._round, now, term), abandon_on_cancel=True
                )
            finally:
                self._in_round = False
            for error in result.errors:
                log.warning("%s", error)
            if result.faulted:
                self.faults.fault("lead", LocalError("; ".join(result.errors)), result.faulted)
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
            skip=self.faults.quarantined,
        )
        return result, [(state.signature, state) for state in result.links]

    async def _publish(self, topic: str, msg: wire.Message, *, bulk: bool = False) -> None:
        """``bulk``: yield to heartbeats, acks and links (see ``Gossip.publish``)."""
        await self.gossip.publish(topic, wire.encode(msg, self.options.key), bulk=bulk)

    # -- status -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Never raises: a relay whose store fails must still say so here."""
        stats: StoreStatistics | None = None
        try:
            stats = self.store.statistics()
        except StoreUnavailable as exc:  # a full or unreadable disk: say so, not a fault
            self.faults.store_failed(exc)
        except StoreError as exc:
            self.faults.fault("status", exc)
        return {
            "peer_id": self.gossip.peer_id,
            "status_url": self.status_url,
            "addrs": self.gossip.addrs,
            "peers": self.gossip.peers(),
            "role": self.election.role,
            "leader": self.election.leader,
            "term": self.election.term,
            "spool_pending": stats.pending if stats else None,
            "signatures": stats.signatures if stats else None,
            "unreadable_rows": stats.unreadable_rows if stats else None,
            **self.faults.status(),
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
