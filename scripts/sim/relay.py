"""A simulated relay: the real pure core, driven the way ``node.relay.MeshPeer`` drives it.

It holds what a relay holds: an :class:`~mesh.aggregate.Aggregate` (its
store: kept across a crash, with its spool and its origin's counts), an
:class:`~mesh.election.Election` and an :class:`~mesh.antientropy.AntiEntropy`
(lost in a crash, rebuilt at boot), a :class:`~mesh.relay_policy.Backlog` in
front of the merge. What it does with them follows ``MeshPeer``'s loops:

- **receive**: heartbeats go to the election at once, digests wait
  (the latest per sender and range) for one answer after
  ``AntiEntropy.answer_delay``, everything else queues in the backlog and is
  merged a batch at a time (``apply_cost`` per message); reports that asked
  for acks are acked with ``mesh.relay_policy.acks_for``.
- **tick**: at the election's deadline, at least every heartbeat.
- **drain**: an injected error is committed to the spool and nudges a drain:
  merged here, then published as ``mesh.relay_policy.plan_drain`` says.
- **anti-entropy rounds**: every ``digest_every`` and whenever the
  connections change, a pull from one connected relay drawn at random
  (``mesh.sync`` rule 6: the peer's answer over a direct stream, then the
  joins nobody holds spread to the topic, rule 8), or a digest to the topic
  when there is nobody to pull from or the pull failed; a pull from every
  relay a new connection reaches (rule 1), and back from a puller ahead of
  us (rule 7). Every overlay peer is a relay here, so every connection is
  pulled from (the real relay learns it from heartbeats and pulls).
- **lead**: while the election says so, rounds of at most ``lead_batch``
  sink actions (``Aggregate.due`` at the round's start, each re-planned from
  the current state and checked against the election before it is sent, as
  ``node.leader.act``); the links go into the aggregate as each answer comes
  and are announced at the round's end.

A paused relay (SIGSTOP) receives into its socket and runs nothing; when it
resumes, whatever fell due meanwhile (a timer, the answer to a sink request
its worker thread was waiting on) runs first, then the queued messages, one
every 50 µs. A crashed relay loses every scheduled event of its incarnation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mesh import wire
from mesh.aggregate import Aggregate
from mesh.antientropy import AntiEntropy, AntiEntropyOptions, digest_entry
from mesh.bundling import plan
from mesh.election import (
    BecameLeader,
    Election,
    ElectionConfig,
    ElectionEvent,
    SendHeartbeat,
    SteppedDown,
)
from mesh.relay_policy import Backlog, RelayOptions, acks_for, plan_drain
from mesh.report import Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, SigState
from mesh.sync import SyncOptions, SyncSchedule, ahead, to_send, to_spread
from scripts.sim.packet import Packet
from scripts.sim.scheduler import stream
from scripts.sim.sink import Request, SinkDown
from scripts.sim.workload import Origin

if TYPE_CHECKING:
    from scripts.sim.simulation import Simulation

__all__ = ["T0", "SimRelay"]

#: The wall clock's origin (every machine's clock is T0 + simulated time + its offset).
T0 = 1_767_225_600.0
#: Seconds between two queued messages a resumed relay reads from its socket.
_READ_COST = 0.00005
#: Seconds from "lead now" to the round's first look at the election: the
#: worker thread starts and reads the due states from the store.
_ROUND_START = 0.005
#: The election's timings: the defaults every relay runs with.
_ELECTION = ElectionConfig()

_Continuation = tuple[int, float, list[bytes], int, int, list[SigState]]
_SYNC = SyncOptions()


class SimRelay:
    """One relay's durable and volatile state, and its duties."""

    def __init__(self, sim: Simulation, idx: int, *, eligible: bool, wall_offset: float) -> None:
        self.sim = sim
        self.idx = idx
        self.name = f"p{idx:05d}"
        self.origin = stream(sim.config.seed, "origin", idx).randbytes(16)
        self.eligible = eligible
        self.wall_offset = wall_offset
        self.policy = RelayOptions(backlog_max=sim.config.backlog_max)
        self.options = AntiEntropyOptions()
        # Durable: the store.
        self.agg = Aggregate()
        self.spool: list[Report] = []
        self.store = Origin(self.origin, self.name)
        # Process.
        self.incarnation = 0
        self.up = False
        self.paused = False
        self.slow = 1.0
        self._deferred: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._inbox: list[Packet] = []
        self.dropped_busy = 0

    # -- lifecycle ---------------------------------------------------------

    def boot(self) -> None:
        """Start (or restart after a crash) with fresh volatile state."""
        now = self.sim.sched.now
        self.incarnation += 1
        self.up, self.paused = True, False
        self._deferred, self._inbox = [], []
        max_term = max((s.link.term for s in self.agg if s.link is not None), default=0)
        self.election = Election(
            me=self.name,
            eligible=self.eligible,
            config=_ELECTION,
            now=now,
            term=max_term,
        )
        self.ae = AntiEntropy(
            self.options, stream(self.sim.config.seed, "answer", self.idx, self.incarnation)
        )
        self.ae.rebuilt({s.signature: digest_entry(s) for s in self.agg}, now)
        self.sync = SyncSchedule(
            _SYNC, stream(self.sim.config.seed, "sync", self.idx, self.incarnation)
        )
        #: server -> (token, whether it is a round's pull)
        self._pulls: dict[str, tuple[int, bool]] = {}
        self._pull_token = 0
        self.backlog: Backlog[Packet] = Backlog(self.policy.backlog_max)
        self._digests: dict[tuple[int, bytes], Packet] = {}
        self._answering = self._applying = self._draining = self._leading = False
        self._peers_changed = False
        self._hold_off = -math.inf
        self._believed: str | None = None
        self._digest_token = 0
        self._young_until = -math.inf
        self._key: bytes | None = None
        self.later(0.0, self._tick)
        self.later(0.0, self._send_digest)
        if self.spool:
            self.nudge()

    def crash(self) -> None:
        self.up = False
        self.paused = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: what fell due runs first, then the socket is read."""
        self.paused = False
        deferred, self._deferred = self._deferred, []
        for fn, args in deferred:
            fn(*args)
        inbox, self._inbox = self._inbox, []
        for i, packet in enumerate(inbox):
            self.later(i * _READ_COST, self.handle, packet)

    def later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` after ``delay`` in this incarnation (lost in a crash, held in a pause)."""
        self.sim.sched.after(delay, self.bound, self.incarnation, fn, args)

    def bound(self, incarnation: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if incarnation != self.incarnation or not self.up:
            return
        if self.paused:
            self._deferred.append((fn, args))
            return
        fn(*args)

    def wall(self) -> float:
        return T0 + self.sim.sched.now + self.wall_offset

    # -- receive -----------------------------------------------------------

    def receive(self, packet: Packet) -> None:
        if not self.up:
            return
        if self.paused:
            self._inbox.append(packet)
            return
        self.handle(packet)

    def handle(self, packet: Packet) -> None:
        msg = packet.msg
        now = self.sim.sched.now
        if isinstance(msg, wire.HeartbeatMsg):
            direct = packet.sender in self.sim.net.connections(self.idx)
            if self.sync.heard(packet.name, now, direct=direct):
                self._pull(packet.name, round_=False)
            self._election(self.election.receive(msg.heartbeat, now))
        elif isinstance(msg, wire.DigestMsg):
            self._digests[(packet.sender, msg.after)] = packet
            if not self._answering:
                self._answering = True
                self.later(self.ae.answer_delay(), self._answer)
        elif isinstance(msg, wire.AckMsg):
            return  # for reporters
        else:
            if isinstance(msg, wire.StateMsg):
                self.ae.heard_answer(msg.states, now)
            if not self.backlog.offer(packet):
                self.dropped_busy += 1
                return
            if not self._applying:
                self._applying = True
                self.later(self.sim.config.apply_cost * self.slow, self._apply)

    def _apply(self) -> None:
        batch = self.backlog.take(self.policy.apply_batch)
        changed: list[SigState] = []
        reports: list[tuple[wire.ReportMsg, str]] = []
        agg = self.agg
        for packet in batch:
            msg = packet.msg
            if isinstance(msg, wire.ReportMsg):
                changed.append(agg.add_report(msg.report))
                reports.append((msg, packet.name))
            elif isinstance(msg, wire.OccMsg):
                changed.extend(agg.add_occurrence(occ) for occ in msg.occurrences)
            elif isinstance(msg, wire.StateMsg):
                changed.extend(agg.merge_state(state) for state in msg.states)
            elif isinstance(msg, wire.IssueMsg):
                changed.extend(agg.set_link(sig, link) for sig, link in msg.links)
        self.note(changed)
        if reports:
            direct = self.sim.direct_reporters(self.idx)
            for ack in acks_for(
                reports, direct=direct, acker=self.name, batch=self.policy.ack_batch
            ):
                self.sim.send_ack(self, ack)
        if self.backlog:
            self.later(self.sim.config.apply_cost * self.slow * len(batch), self._apply)
        else:
            self._applying = False

    def note(self, states: Iterable[SigState]) -> None:
        """Tell anti-entropy what the store now holds (and the probes what arrived)."""
        states = list(states)
        if not states:
            return
        now = self.sim.sched.now
        before = [self.ae.entries.get(s.signature) for s in states]
        self.ae.note(states, now)
        if any(self.ae.entries[s.signature] != old for s, old in zip(states, before, strict=True)):
            self._young_until = now + self.options.answer_young
            self._key = None
        self.sim.probes.arrived(self, states)

    # -- anti-entropy ------------------------------------------------------

    def entries_key(self) -> bytes:
        """Our entries as (signature, fingerprint) pairs: a full digest of the same says so."""
        if self._key is None:
            entries = self.ae.entries
            self._key = b"".join(sig + entries[sig].fingerprint for sig in sorted(entries))
        return self._key

    def _send_digest(self) -> None:
        """A round (``mesh.sync`` rule 6): a pull, else a digest to the topic."""
        now = self.sim.sched.now
        if self.ae.rebuild_due(now):
            self.ae.rebuilt({s.signature: digest_entry(s) for s in self.agg}, now)
            self._key = None
        connected = [self.sim.relays[i].name for i in self.sim.net.connections(self.idx)]
        target = self.sync.round(connected, now)
        if target is not None:
            self._pull(target, round_=True)
        elif not self.sync.pulling:
            self._topic_digest()
        self._digest_token += 1
        self.later(self.sim.config.digest_every, self._digest_due, self._digest_token)

    def _topic_digest(self) -> None:
        messages = self.ae.digest()
        for msg in messages:
            key = self.entries_key() if len(messages) == 1 else None
            self.sim.publish(self, msg, key=key)

    # -- sync streams --------------------------------------------------------

    def _pull(self, server: str, *, round_: bool) -> None:
        self._pull_token += 1
        token = self._pull_token
        self._pulls[server] = (token, round_)
        self.later(_SYNC.timeout, self.pull_ended, server, token, None)
        self.sim.pull(self, server, self.ae.digest(), token)

    def serve(
        self, puller: SimRelay, incarnation: int, digests: list[wire.DigestMsg], token: int
    ) -> None:
        """A peer's pull reached us: answer what it lacks, pull back if it knows more."""
        now = self.sim.sched.now
        if not self.sync.may_serve(puller.name, now):
            self.sim.pull_answer(self, puller, incarnation, None, token)
            return
        entries = self.ae.entries
        states = [st for sig in to_send(entries, digests) if (st := self.agg.get(sig))]
        if ahead(entries, digests) and self.sync.ahead(puller.name, now):
            self._pull(puller.name, round_=False)
        self.sync.served(puller.name, now, completed=True)
        self.sim.pull_answer(self, puller, incarnation, states, token)

    def pull_ended(self, server: str, token: int, states: list[SigState] | None) -> None:
        """The answer came (``states``), or the pull failed or timed out (None)."""
        if self._pulls.get(server, (None, False))[0] != token:
            return  # timed out before, or answered before the timeout
        _, round_ = self._pulls.pop(server)
        now = self.sim.sched.now
        self.sync.pulled(server, now, ok=states is not None)
        if states is None:
            if round_ and not self.sync.pulling:
                self._topic_digest()
            return
        self.note([self.agg.merge_state(state) for state in states])
        spread = self.ae.unanswered(to_spread(states, self.ae.entries), now)
        self._publish_states([st for sig in spread if (st := self.agg.get(sig))])

    def _publish_states(self, states: list[SigState]) -> None:
        size = self.sim.config.state_batch
        for start in range(0, len(states), size):
            self.sim.publish(self, wire.StateMsg(states=tuple(states[start : start + size])))

    def _digest_due(self, token: int) -> None:
        if token == self._digest_token:
            self._send_digest()

    def connection(self, peer: str, opened: bool) -> None:
        """The transport saw a direct connection open or close (``_watch_peers``)."""
        now = self.sim.sched.now
        if opened:
            if self.sync.connected(peer, now, bootstrap=True):
                self._pull(peer, round_=False)
            self._election(self.election.connected(peer, now))
        else:
            self._election(self.election.disconnected(peer, now))
        if not self._peers_changed:
            # The watch loop looks every 50 ms; the digest loop wakes once.
            self._peers_changed = True
            self.later(self.policy.watch_every, self._changed_digest)

    def _changed_digest(self) -> None:
        self._peers_changed = False
        self._send_digest()

    def _provably_nothing(self, packet: Packet, now: float) -> bool:
        """``AntiEntropy.to_answer`` would answer nothing and change nothing:
        the digest lists exactly our states, none of ours is young, none deferred."""
        return (
            self.sim.config.fast_digests
            and packet.key is not None
            and now >= self._young_until
            and not self.ae._deferred_since
            and packet.key == self.entries_key()
        )

    def _answer(self) -> None:
        self._answering = False
        now = self.sim.sched.now
        while self._digests:
            packet = self._digests.pop(next(iter(self._digests)))
            assert isinstance(packet.msg, wire.DigestMsg)
            if self._provably_nothing(packet, now):
                continue
            self._publish_states(
                [st for sig in self.ae.to_answer(packet.msg, now) if (st := self.agg.get(sig))]
            )

    # -- errors raised here ------------------------------------------------

    def commit(self, signature: bytes, severity: Severity) -> Report:
        """A failing CLI on this machine hands its error over: committed to the spool."""
        report = self.store.report(signature, severity, self.wall())
        self.spool.append(report)
        if self.up:
            self.nudge()
        return report

    def nudge(self) -> None:
        if not self._draining:
            self._draining = True
            self.later(0.001, self._drain)

    def _drain(self) -> None:
        self._draining = False
        pending, self.spool = (
            self.spool[: self.policy.drain_limit],
            self.spool[self.policy.drain_limit :],
        )
        if not pending:
            return
        known = {
            sig
            for sig in sorted({r.signature for r in pending})
            if (state := self.agg.get(sig)) is not None and state.detail is not None
        }
        self.note([self.agg.add_report(r) for r in pending])
        drained = plan_drain(pending, known, self.policy.occ_batch)
        for report in drained.reports:
            self.sim.publish(self, wire.ReportMsg(report=report, ack=False))
        for occ in drained.occurrences:
            self.sim.publish(self, occ)
        if self.spool:
            self.nudge()

    # -- election ----------------------------------------------------------

    def _tick(self) -> None:
        now = self.sim.sched.now
        self._election(self.election.tick(now))
        delay = max(0.01, min(_ELECTION.heartbeat, self.election.next_deadline() - now))
        self.later(delay, self._tick)

    def _election(self, events: list[ElectionEvent]) -> None:
        previous = self._believed
        now = self.sim.sched.now
        for event in events:
            if isinstance(event, SendHeartbeat):
                self.sim.publish(self, wire.HeartbeatMsg(heartbeat=event.heartbeat))
            elif isinstance(event, BecameLeader):
                self.sim.history.lead(now, self.idx, self.name, event.term)
                if previous not in (None, self.name) and previous in self.election.alive(now):
                    self._hold_off = now + _ELECTION.heartbeat
            elif isinstance(event, SteppedDown):
                self.sim.history.log(
                    now, f"step-down {self.name} term={event.term}: {event.reason}"
                )
        self._believed = self.election.leader
        if self.election.role == "leader":
            self._want_round()

    # -- leading -----------------------------------------------------------

    def _leads(self, term: int) -> bool:
        return self.election.role == "leader" and self.election.term == term

    def _want_round(self) -> None:
        if self._leading or self.sim.sched.now < self._hold_off:
            return
        self._leading = True
        self.later(_ROUND_START, self._start_round)

    def _start_round(self) -> None:
        term, wall = self.election.term, self.wall()
        due = self.sim.config.policy
        candidates = [a.state.signature for a in self.agg.due(wall, due)]
        self._next_action((term, wall, candidates[: 2 * self.sim.config.lead_batch], 0, 0, []))

    def _next_action(self, round_: _Continuation) -> None:
        term, wall, candidates, i, done, written = round_
        while i < len(candidates) and done < self.sim.config.lead_batch and self._leads(term):
            sig = candidates[i]
            i += 1
            state = self.agg.get(sig)
            action = None if state is None else plan(state, wall, self.sim.config.policy)
            if action is None:
                continue
            try:
                request = self.sim.sink.start(
                    action, peer=self.idx, term=term, now=self.sim.sched.now, wall=wall
                )
            except SinkDown:
                continue  # stays due: the next round tries again
            self.sim.request(self, request, (term, wall, candidates, i, done + 1, written))
            return
        self._end_round(term, written, acted=done > 0)

    def answered(self, request: Request, link: IssueLink, round_: _Continuation) -> None:
        """The sink's answer reached the worker thread: record the link, go on."""
        round_[5].append(self.agg.set_link(request.action.state.signature, link))
        self.note(round_[5][-1:])
        self._next_action(round_)

    def request_failed(self, round_: _Continuation) -> None:
        """GitHub failed the request (5xx): it stays due; the round goes on."""
        self._next_action(round_)

    def _end_round(self, term: int, written: list[SigState], *, acted: bool) -> None:
        links = tuple((s.signature, s.link) for s in written if s.link is not None)
        if links:
            self.sim.publish(self, wire.IssueMsg(links=links))
        self._leading = False
        if acted and self._leads(term):
            self._want_round()
