"""The relay: a durable mesh peer that merges, acks, elects, leads and repairs.

One trio task per duty, all around one store and one :class:`~mesh.gossip.Gossip`;
what each decides is sans-IO policy (``mesh.relay_policy``, ``mesh.antientropy``,
``mesh.election``), this module only feeds it and carries out its answers:

- **receive**: every validated message is decoded and applied: a ``report`` is merged into the
  store and then acked on the control topic (the ack means "durably stored here", DESIGN
  section 7); ``occ`` and ``state`` merge; ``issue`` records the leader's links; ``hb`` feeds
  the election; ``digest`` is answered with the states the sender lacks.
- **tick**: the election's clock. Heartbeats go out when due; while this peer leads it asks for
  leader rounds (``node.leading``).
- **drain**: reports left in this machine's spool (by CLIs whose delivery failed, or handed
  over through the local nudge socket) are merged and published, so nothing spooled is
  stranded.
- **digest**: every few seconds, and whenever the set of peers changes, an anti-entropy round:
  a pull from one connected peer over the sync stream (``node.sync_stream``), or a digest to
  the topic when none can be made, so that dropped gossip and healed partitions converge.

Validation (before any of this, inside gossipsub, ``node.admission``): a payload must decode
under the cluster key, and a message that names its sender must name its libp2p signer.
Rejections are counted by reason; a peer that keeps sending rejected messages is banned. The
process around the relay (status server, nudge socket, lock) is ``node.service``.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

import trio
import trio.lowlevel

from github_sink.sink import Replica, Sink
from mesh import wire
from mesh.antientropy import AntiEntropy, digest_entry
from mesh.election import (
    BecameLeader,
    LeaderChanged,
    SendHeartbeat,
    SteppedDown,
)
from mesh.errors import LocalError, StoreUnavailable
from mesh.gossip import Gossip
from mesh.relay_policy import (
    Backlog,
    Backoff,
    Dialer,
    Rejections,
    StatusThrottle,
    acks_for,
    plan_drain,
)
from mesh.sigstate import SigState
from mesh.store import Store
from node.activity import Activity
from node.config import network_keys
from node.faults import Faults
from node.handover import take as take_handovers
from node.heartbeats import WritePace, heartbeat_message
from node.keyfile import KeyWatch
from node.lags import Lags
from node.leading import Leading
from node.members import Members
from node.merging import Batch, merge_records, merge_reports, signatures_of
from node.relay_options import PeerOptions, election_for
from node.relay_status import relay_status
from node.replica_sync import ReplicaSync
from node.state_parts import state_messages
from node.sync_stream import SyncStreams

__all__ = ["MeshPeer", "PeerOptions"]

log = logging.getLogger("errmesh.peer")

#: Counters an idle relay bumps every anti-entropy round (``_status_content``).
_AT_REST = frozenset({"sync_rounds", "sync_pulls", "sync_served", "digests_sent"})


class MeshPeer:
    """A relay's duties over one store and one gossip handle."""

    def __init__(
        self,
        *,
        store: Store,
        gossip: Gossip,
        options: PeerOptions,
        sink: Sink | None,
        rejections: Rejections,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        replica: Replica | None = None,
        rng: random.Random | None = None,
        keys: KeyWatch | None = None,
    ) -> None:
        self.store = store
        #: What frames are signed and checked with (re-read on a rotation).
        self.keys = keys if keys is not None else KeyWatch.static(options.key)
        self.gossip = gossip
        self.options = options
        self.policy = options.relay
        self.sink = sink if options.eligible else None
        self.rejections = rejections
        self.clock = clock
        #: The election's clock: a wall clock stepped by NTP must neither
        #: freeze the heartbeats (a step back) nor read as a pause (forward).
        self.monotonic = monotonic
        self._election_clock = monotonic()
        self.election = election_for(gossip.peer_id, options, sink, self._election_clock, store)
        self.pace = WritePace(gossip.peer_id, self.sink, clock)  # the mesh's GitHub writes
        self.nudged = trio.Event()
        self._believed: str | None = None
        if self.sink is not None:  # the sink checks before every write that we still lead
            self.sink.set_gate(self._may_write)
        self.stats: collections.Counter[str] = collections.Counter()
        self.members = Members()  # who we hear from, for `errmesh members` (node/members.py)
        self.activity = Activity()  # occurrences per minute, for the dashboard's sparklines
        self.faults = Faults(store_path=str(store.path), clock=clock)
        self.leading = Leading(
            store=store,
            sink=self.sink,
            election=self.election,
            faults=self.faults,
            clock=clock,
            batch=self.policy.lead_batch,
            announce=self._announce_links,
        )
        self.replica = ReplicaSync(replica, store, clock)  # this machine's issue folder
        self.status_url = ""
        #: Digests and which differences to answer, on trio's clock (mesh/antientropy.py).
        self.antientropy = AntiEntropy(options.antientropy, rng)
        # The receive loop's hand-offs (see _receive_loop).
        self._backlog: Backlog[tuple[wire.Message, str]] = Backlog(self.policy.backlog_max)
        self._apply_wanted = trio.Event()
        self._digests: dict[tuple[str, bytes], wire.DigestMsg] = {}
        self._digest_wanted = trio.Event()
        self.lags = Lags()  # how long messages of each kind waited in our receive channel
        self._dialer = Dialer(self.policy)
        self._status_due = StatusThrottle(self.policy.status_every, self.policy.status_refresh)
        self._peers_changed = trio.Event()  # set by _watch_peers, awaited by _digest_loop
        self.sync = SyncStreams(self)  # pulls from relays it connects to (mesh/sync.py)

    # -- the loops --------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        loops: dict[str, Callable[[], Any]] = {
            "receive": self._receive_loop,
            "apply": self._apply_loop,
            "answer": self._answer_loop,
            "tick": self._tick_loop,
            "drain": self._drain_loop,
            "digest": self._digest_loop,
            "lead": self.leading.loop,
            "watch": self._watch_peers,
            "keys": self._watch_keys,
            "sync": self.sync.loop,
        }
        if self.election.role != "observer":
            loops["connect"] = self._connect_candidates
        async with trio.open_nursery() as nursery:
            for name, loop in loops.items():
                nursery.start_soon(self._supervise, name, loop, name=f"errmesh-{name}")
            task_status.started()

    async def _supervise(self, name: str, loop: Callable[[], Any]) -> None:
        """Run ``loop`` for ever: a failure is counted and logged, and the loop restarts.

        The loops isolate one message, one signature, one store write themselves; this catches
        what slips past (a bug, an exhausted resource), so that no failure of one duty stops
        the relay. Restarts back off (``mesh.relay_policy.Backoff``) so a failure that repeats
        at once costs little CPU. Cancellation and KeyboardInterrupt are BaseExceptions and
        pass.
        """
        backoff = Backoff(self.policy.restart_min, self.policy.restart_max)
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
            await trio.sleep(backoff.failed(trio.current_time() - started))

    async def _receive_loop(self) -> None:
        """Sort what arrives so that nothing time-critical waits behind bulk work.

        Heartbeats go to the election at once: queued behind a few thousand reports and state
        answers they arrived late, live leaders expired and a second leader was elected
        (``scripts/bench/github_cost.py``). Digests are answered by their own task, the latest
        per sender and range. Everything else is merged in batches by :meth:`_apply_loop`.
        """
        async for received in self.gossip.receive:
            decoded = wire.decode(received.data, self.keys.accepted)
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
        self.lags.observe(kind, lag)
        self.members.heard(msg, sender, lag, self.clock())
        if isinstance(msg, wire.HeartbeatMsg):
            return  # applied by the caller, now
        if isinstance(msg, wire.DigestMsg):
            self._digests[(sender, msg.after)] = msg  # a newer one replaces it
            self._digest_wanted.set()
            return
        if isinstance(msg, wire.StateMsg):
            # Someone answered a digest, to everybody: ours would repeat it.
            self.antientropy.heard_answer(msg.states, trio.current_time())
        if not self._backlog.offer((msg, sender)):
            # Anti-entropy repairs what is dropped here; its reporter resends a report.
            self.stats["dropped_busy"] += 1
            return
        self._apply_wanted.set()

    async def _apply_loop(self) -> None:
        while True:
            await self._apply_wanted.wait()
            self._apply_wanted = trio.Event()
            while self._backlog:
                await self.apply(self._backlog.take(self.policy.apply_batch))
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
            if self.election.role == "leader" and self.leading.worth_a_round(trio.current_time()):
                self.leading.wanted.set()
            self._write_status()
            deadline = self.election.next_deadline()
            await trio.sleep(
                max(0.01, min(self.options.heartbeat, deadline - self._election_clock))
            )

    async def _drain_loop(self) -> None:
        probed_at = -math.inf
        while True:
            try:
                await self.drain()
            except StoreUnavailable as exc:
                self.faults.store_failed(exc)
            if (
                self.faults.store_down
                and trio.current_time() - probed_at >= self.policy.probe_every
            ):
                # Nothing else may write for a while: find out when space is back.
                probed_at = trio.current_time()
                self._probe_store()
            with trio.move_on_after(self.policy.drain_every):
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
        """An anti-entropy round every ``digest_every`` seconds and whenever the
        peer set changes: a pull from one peer (``mesh.sync`` rule 6), or, with
        nobody to pull from (or a failed pull) and no pull running, a digest to the topic."""
        while True:
            self._peers_changed = trio.Event()
            if not await self.sync.round() and not self.sync.schedule.pulling:
                await self.send_digest()
            with trio.move_on_after(self.options.digest_every):
                await self._peers_changed.wait()

    # -- handling ---------------------------------------------------------

    async def handle(self, msg: wire.Message, sender: str) -> None:
        """Apply one decoded message from ``sender`` now."""
        if isinstance(msg, wire.HeartbeatMsg):
            if msg.heartbeat.eligible and msg.addrs:
                self._dialer.heard(msg.heartbeat.peer, msg.addrs)
            self.pace.heard(msg.writes)
            self.sync.heard(msg.heartbeat.peer)
            await self._apply_election(self.election.receive(msg.heartbeat, self._election_now()))
        elif isinstance(msg, wire.DigestMsg):
            await self._answer_digest(msg)
        else:
            await self.apply([(msg, sender)])

    async def apply(self, batch: Batch) -> None:
        """Merge a batch of data messages in one transaction per kind, then ack.

        Merging is a join, so order within the batch does not matter. A report is acked only
        after its transaction committed (DESIGN section 7); if the store fails, nothing is
        acked and the reporter sends it again. A store that cannot be written (full disk) marks
        the store down and drops the batch (reporters retry, anti-entropy repairs the rest);
        any other failure is isolated by merging the batch's messages one by one, so one poison
        costs only itself and its signatures are blamed (quarantined if it keeps failing).
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
            direct = set(self.gossip.peers())
            me, per = self.gossip.peer_id, self.policy.ack_batch
            for ack in acks_for(reports, direct=direct, acker=me, batch=per):
                self.stats["acked"] += len(ack.ids)
                await self._publish(self.options.control_topic, ack)
        merged, records = merge_records(self.store, batch, skip)
        if records:
            self.faults.store_ok()
            self._note(*merged)
            self.stats["states_merged"] += records
            await self.replica.mirror([s for s in merged if s.link is not None])

    async def drain(self) -> int:
        """Merge and publish what this machine's spool holds; returns how many.

        The wire carries state, not events: what goes out is ``mesh.relay_policy.plan_drain``'s
        coalesced plan, paced, so a burst of thousands of spooled reports is a few messages and
        never overflows libp2p's 32-slot queues.
        """
        take_handovers(self.store)  # reports failing processes here handed over
        await self._observe_replica()
        pending = self.store.pending(limit=self.policy.drain_limit)
        if not pending:
            return 0
        known = {
            sig
            for sig in {r.signature for r in pending}
            if (state := self.store.load_state(sig)) is not None and state.detail is not None
        }
        self._note(*self.store.merge_reports(pending))
        self.faults.store_ok()
        plan = plan_drain(pending, known, self.policy.occ_batch)
        for report in plan.reports:
            # Already committed here (merge_reports unspooled it): no acks wanted.
            # Not bulk: a report is what propagation latency is measured on.
            msg = wire.ReportMsg(report=report, ack=False)
            await self._publish(self.options.reports_topic, msg)
            await trio.sleep(self.policy.pace)
        for occ in plan.occurrences:
            await self._publish(self.options.reports_topic, occ, bulk=True)
            await trio.sleep(self.policy.pace)
        self.stats["drained"] += len(pending)
        return len(pending)

    async def _observe_replica(self) -> None:
        """Send what people changed in this machine's folder (``errmesh issues close``)."""
        states, changed = await self.replica.observe()
        self._note(*changed)
        await self.replica.mirror(states)  # the folder now shows the link it asked for
        links = tuple((s.signature, s.link) for s in states if s.link is not None)
        if links:
            await self._publish(self.options.control_topic, wire.IssueMsg(links=links))

    async def _announce_links(self, states: list[SigState]) -> None:
        """A leader round wrote these links: note them and tell the mesh."""
        self._note(*states)
        links = tuple((st.signature, st.link) for st in states if st.link)
        if links:
            await self._publish(self.options.control_topic, wire.IssueMsg(links=links))

    def _note(self, *states: SigState) -> None:
        if states:
            self.leading.changed()
        self.antientropy.note(states, trio.current_time())
        self.activity.noted(states, self.clock())

    async def refresh_entries(self) -> None:
        """Rebuild the digest entries from the store, a batch at a time."""
        if not self.antientropy.rebuild_due(trio.current_time()):
            return
        entries: dict[bytes, wire.DigestEntry] = {}
        for batch in self.store.iter_states():
            for state in batch:
                entries[state.signature] = digest_entry(state)
            await self.replica.mirror([s for s in batch if s.link is not None])
            await trio.lowlevel.checkpoint()
        self.antientropy.rebuilt(entries, trio.current_time())

    async def send_digest(self) -> None:
        """The digest in batches; each says which signature range it covers."""
        await self.refresh_entries()
        self.stats["digests_sent"] += 1
        for msg in self.antientropy.digest():
            await self._publish(self.options.control_topic, msg, bulk=True)
            await trio.sleep(self.policy.pace)

    async def _answer_digest(self, msg: wire.DigestMsg) -> None:
        """Send the states the digest's sender lacks or holds differently
        (which: ``mesh.antientropy``); a quarantined or unreadable signature
        is left out, the rest are answered."""
        await self.refresh_entries()
        states = self.answerable(self.antientropy.to_answer(msg, trio.current_time()))
        self.stats["digests_answered"] += 1
        self.stats["states_sent"] += len(states)
        await self._send_states(states)

    def answerable(self, signatures: list[bytes]) -> list[SigState]:
        """The stored states of ``signatures`` to send (digest answers, sync
        serves): a quarantined or unreadable signature is left out and blamed."""
        states = []
        for sig in signatures:
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
        return states

    async def spread(self, signatures: list[bytes]) -> None:
        """Publish the joins a pull made (``mesh.sync`` rule 8), unless another
        relay published the same state in the last ``answer_quiet`` seconds."""
        wanted = self.antientropy.unanswered(signatures, trio.current_time())
        states = self.answerable(wanted)
        self.stats["states_spread"] += len(states)
        await self._send_states(states)

    async def _send_states(self, states: list[SigState]) -> None:
        for i, msg in enumerate(state_messages(states)):
            if i:
                await trio.sleep(self.policy.pace * 5)
            try:
                await self._publish(self.options.control_topic, msg, bulk=True)
            except LocalError as exc:  # cannot be sent: blame its signatures, send the rest
                self.faults.fault("answer", exc, signatures_of(msg))

    # -- election ---------------------------------------------------------

    async def _apply_election(self, events: list[Any]) -> None:
        previous = self._believed
        for event in events:
            if isinstance(event, SendHeartbeat):
                limit = self.policy.heartbeat_addrs
                msg = heartbeat_message(event.heartbeat, self.gossip.addrs, limit, self.pace)
                await self._publish(self.options.control_topic, msg)
            elif isinstance(event, BecameLeader):
                log.info("leading in term %d", event.term)
                self.stats["elections_won"] += 1
                if previous not in (None, self.gossip.peer_id) and previous in self.election.alive(
                    self._election_clock
                ):
                    # Taking over from a live leader (we outrank it): give it a
                    # heartbeat to hear us and stop before our first write.
                    self.leading.hold_off(self.clock() + self.options.heartbeat)
            elif isinstance(event, SteppedDown):
                log.info("stepped down (term %d): %s", event.term, event.reason)
            elif isinstance(event, LeaderChanged):
                log.info("leader is now %s (term %d)", event.leader, event.term)
        self._believed = self.election.leader

    def _election_now(self) -> float:
        """The monotonic clock, clamped so that it never goes back (the
        election refuses time that does, with LocalError)."""
        self._election_clock = max(self._election_clock, self.monotonic())
        return self._election_clock

    def _may_write(self) -> bool:
        """The sink's gate, checked before every GitHub write and retry
        (from the sink's worker thread, hence pure reads): we lead, on a
        fresh view, in the term the round was planned in."""
        planned = self.leading.round_term
        return self.election.may_write(max(self._election_clock, self.monotonic())) and (
            planned is None or planned == self.election.term
        )

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
                self.sync.connected(peer)
                await self._apply_election(self.election.connected(peer, now))
            known = current
            await trio.sleep(self.policy.watch_every)

    async def _watch_keys(self) -> None:
        """Pick up a rotation step written to the key file (``node.keyfile``)."""
        while True:
            await trio.sleep(self.policy.keys_every)
            if self.keys.refresh():
                self.stats["key_reloads"] += 1
                if self.options.private_network and self.keys.ring is not None:
                    self.gossip.set_network_keys(network_keys(self.keys.ring))

    async def _connect_candidates(self) -> None:
        """Keep a direct connection to the leader and to the best-ranked candidate.

        Only a direct connection shows a leader's death within the grace
        (see ``_watch_peers``), and the one who must see it first is the
        best-ranked other candidate, its successor. Heartbeats carry the
        addresses to dial. Dialling every candidate (tried first) turned a
        star of 10 all-eligible relays into 45 links and doubled their CPU.
        """
        while True:
            await trio.sleep(self.policy.connect_every)
            due = self._dialer.due(
                me=self.gossip.peer_id,
                leader=self.election.leader,
                ranked=self.election.alive(self._election_clock),
                direct=set(self.gossip.peers()),
                now=trio.current_time(),
            )
            for peer, addrs in due:
                for addr in addrs:
                    try:
                        await self.gossip.dial(addr)
                        self._dialer.reached(peer)
                        self.stats["candidate_dials"] += 1
                        break
                    except Exception as exc:  # unreachable from here: try later
                        log.debug("cannot reach candidate %s at %s: %s", peer, addr, exc)
                else:
                    self._dialer.unreachable(peer, trio.current_time())

    async def _publish(self, topic: str, msg: wire.Message, *, bulk: bool = False) -> None:
        """``bulk``: yield to heartbeats, acks and links (see ``Gossip.publish``)."""
        await self.gossip.publish(topic, wire.encode(msg, self.keys.current), bulk=bulk)

    # -- status -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Never raises: a relay whose store fails must still say so here."""
        return relay_status(self)

    def _status_content(self) -> tuple[object, ...]:
        """What, besides the election, makes the status file worth rewriting:
        cheap to build, unlike the status itself. The counters an idle relay
        bumps every round (its sync pulls) are left out: they alone would
        rewrite the file at every round."""
        counters = tuple(sorted((k, v) for k, v in self.stats.items() if k not in _AT_REST))
        return (
            tuple(self.gossip.peers()),
            counters,
            sum(self.rejections.by_reason.values()),
            len(self.rejections.banned),
            sum(self.faults.by_loop.values()),
            self.faults.store_error,
        )

    def _write_status(self) -> None:
        """Rewrite ``relay-status.json`` when it changed (rule 7 of ``mesh.relay_policy``)."""
        path = self.options.status_path
        if path is None:
            return
        election = (self.election.role, self.election.leader, self.election.term)
        if not self._status_due.due(election, trio.current_time(), self._status_content()):
            return
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.status(), indent=1))
            tmp.replace(path)
        except OSError:
            pass
