"""One deterministic run: relays, reporters, network, faults, workload and GitHub, wired.

:class:`Simulation` owns the clock and everything that crosses between
machines: it floods what a relay publishes (:mod:`scripts.sim.network`),
delivers it at its arrival times, carries reports from reporters and acks
back to them, sends sink requests and their answers, starts and ends the
faults, and injects the errors. A run has two phases: the **active** one
(``duration`` seconds of errors and faults, all healed at its end) and the
**quiet** one, checked every ``check_every`` seconds until the data (every
relay holds the same aggregate, every injected occurrence counted) and then
the issues (one open per signature, showing the total) have converged, or
``quiet`` seconds have passed. :mod:`scripts.sim.checker` then judges it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from mesh import wire
from mesh.sigstate import SigState
from scripts.sim.config import SimConfig
from scripts.sim.faults import Fault, schedule
from scripts.sim.history import History
from scripts.sim.network import ConnectionChange, Flood, Network
from scripts.sim.packet import Packet, kind_of
from scripts.sim.relay import SimRelay
from scripts.sim.reporter import SimReporter
from scripts.sim.scheduler import Scheduler, stream
from scripts.sim.sink import Request, SimSink
from scripts.sim.workload import Probes, Workload

__all__ = ["Metrics", "Simulation"]

_SLOW = 200.0
#: Seconds for a puller to see its sync stream fail (a connection gone, a stream reset).
_FAILED = 0.2


@dataclass
class Metrics:
    """Traffic by kind: published, link transmissions, application deliveries."""

    published: Counter[str] = field(default_factory=Counter)
    transmissions: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    duplicated: int = 0
    #: Encoded sizes of the sampled messages, by kind: (bytes, messages).
    sizes: dict[str, list[int]] = field(default_factory=dict)
    codec_mismatches: int = 0

    def snapshot(self) -> Metrics:
        return Metrics(
            Counter(self.published),
            Counter(self.transmissions),
            Counter(self.deliveries),
            self.dropped,
            self.duplicated,
            {k: list(v) for k, v in self.sizes.items()},
            self.codec_mismatches,
        )


class Simulation:
    def __init__(self, config: SimConfig, faults: list[Fault] | None = None) -> None:
        """``faults``: a fixed schedule instead of the one drawn from the seed."""
        self.config = config
        seed, n = config.seed, config.peers
        self.sched = Scheduler()
        self.history = History()
        self.metrics = Metrics()
        self.sink = SimSink(config.sink_latency)
        pick = stream(seed, "reporters")
        homes = [tuple(pick.sample(range(n), min(2, n))) for _ in range(config.reporters)]
        eligible = config.eligible_count
        self.net = Network(
            seed=seed, relays=n, reporters=homes, eligible=eligible, link=config.link
        )
        clocks = stream(seed, "clocks")
        self.relays = [
            SimRelay(self, i, eligible=i < eligible, wall_offset=_offset(clocks)) for i in range(n)
        ]
        self.reporters = [SimReporter(self, i, n + i, homes[i]) for i in range(config.reporters)]
        self._by_origin = {r.origin: r for r in self.reporters}
        self._homes: list[list[SimReporter]] = [[] for _ in range(n)]
        for reporter in self.reporters:
            for relay in reporter.relays:
                self._homes[relay].append(reporter)
        self.faults = schedule(config) if faults is None else faults
        self.workload = Workload(config)
        self.probes = Probes()
        self._codec = stream(seed, "codec")
        self._dup = stream(seed, "duplicate")
        self._redial = stream(seed, "redial")
        self._key = stream(seed, "cluster-key").randbytes(32)
        self._held: dict[int, Fault] = {}
        self._losses: list[Fault] = []
        self._sink_outages = 0
        self._injected = 0
        self.active_metrics: Metrics | None = None
        #: Metrics as they stood at the times asked for (:meth:`snapshot_at`).
        self.snapshots: dict[float, Metrics] = {}
        self.data_converged: float | None = None
        self.issues_converged: float | None = None
        self.wall_seconds = 0.0

    # -- running -------------------------------------------------------------

    def run(self) -> Simulation:
        started = time.perf_counter()
        config = self.config
        boots = stream(config.seed, "boot")
        for relay in self.relays:
            self.sched.at(boots.uniform(0.0, config.start_spread), relay.boot)
        for fault in self.faults:
            self.sched.at(fault.at, self._fault, fault, True)
            self.sched.at(fault.end, self._fault, fault, False)
        if config.error_rate > 0:
            self.sched.at(config.errors_from + self.workload.next_gap(), self._inject)
        self.sched.run_until(config.duration)
        self.active_metrics = self.metrics.snapshot()
        end = config.duration + config.quiet
        t = config.duration
        while t < end and self.issues_converged is None:
            t = min(end, t + config.check_every)
            self.sched.run_until(t)
            self._check_convergence()
        self.wall_seconds = time.perf_counter() - started
        return self

    def snapshot_at(self, at: float) -> None:
        self.sched.at(at, lambda: self.snapshots.__setitem__(at, self.metrics.snapshot()))

    def _check_convergence(self) -> None:
        """The data first, then the issues with the data still agreeing (a leader's
        last update must have reached every relay)."""
        now = self.sched.now
        if not self.data_agrees():
            return
        if self.data_converged is None:
            self.data_converged = now
            self.history.log(now, "data converged")
        if self.issues_agree():
            self.issues_converged = now
            self.history.log(now, "issues converged")

    def data_agrees(self) -> bool:
        """Every relay up, nothing pending anywhere, every digest entry equal and exact."""
        relays = self.relays
        if not all(r.up and not r.paused and not r.spool for r in relays):
            return False
        if any(r.spool for r in self.reporters):
            return False
        key = relays[0].entries_key()
        if any(r.entries_key() != key for r in relays[1:]):
            return False
        agg = relays[0].agg
        for (origin, sig), count in self.history.injected.items():
            state = agg.get(sig)
            rec = None if state is None else state.counts.get(origin)
            if rec is None or rec.count != count:
                return False
        return True

    def issues_agree(self) -> bool:
        """One open issue per signature, showing its total, and every relay's link on it."""
        for state in self.relays[0].agg:
            if state.detail is None:
                continue
            open_ = self.sink.open_issues(state.signature)
            link = state.link
            if len(open_) != 1 or open_[0].shown != state.total:
                return False
            if link is None or link.number != open_[0].number or link.state != "open":
                return False
        return True

    # -- carrying messages -----------------------------------------------------

    def publish(self, relay: SimRelay, msg: wire.Message, *, key: bytes | None = None) -> None:
        kind = kind_of(msg)
        msg = self._through_codec(msg, kind)
        flood = self.net.flood([(self.sched.now, relay.idx)])
        self._count(kind, flood)
        self._deliver_all(Packet(msg, relay.idx, relay.name, kind, key), flood.arrivals)

    def publish_report(self, reporter: SimReporter, msg: wire.ReportMsg, *, delay: float) -> None:
        """A failing process publishes through the relays it is connected to."""
        sent = self.sched.now + delay
        entries = [
            (t, relay)
            for relay in reporter.relays
            if (t := self.net.direct(reporter.node, relay, sent)) is not None
        ]
        self.metrics.published["report"] += 1
        if not entries:
            return
        carried = self._through_codec(msg, "report")
        flood = self.net.flood(entries)
        self._count("report", flood, published=False)
        arrivals = [*entries, *flood.arrivals]
        self.metrics.deliveries["report"] += len(entries)
        self._deliver_all(Packet(carried, reporter.node, reporter.name, "report"), arrivals)

    def send_ack(self, relay: SimRelay, ack: wire.AckMsg) -> None:
        """An ack goes to the control topic (counted) and reaches its reporter directly."""
        self._count("ack", self.net.flood([(self.sched.now, relay.idx)]))
        origins = {origin for origin, _ in ack.ids}
        for reporter in self._homes[relay.idx]:
            if reporter.origin in origins:
                at = self.net.direct(relay.idx, reporter.node, self.sched.now)
                if at is not None:
                    self.sched.at(at, reporter.acked, ack)

    def pull(
        self, puller: SimRelay, server: str, digests: list[wire.DigestMsg], token: int
    ) -> None:
        """A sync stream (``mesh.sync``): the digest to one relay, its answer back."""
        target = self.relays[int(server[1:])]
        carried = [self._sync_frame(msg, "sync-digest") for msg in digests]
        at = self.net.stream(puller.idx, target.idx, self.sched.now)
        if at is None or not target.up:
            puller.later(_FAILED, puller.pull_ended, server, token, None)
            return
        self.sched.at(
            at, target.bound, target.incarnation, target.serve,
            (puller, puller.incarnation, carried, token),
        )  # fmt: skip

    def pull_answer(
        self,
        server: SimRelay,
        puller: SimRelay,
        incarnation: int,
        states: list[SigState] | None,
        token: int,
    ) -> None:
        size = self.config.state_batch
        if states is not None:
            for start in range(0, len(states), size):
                self._sync_frame(
                    wire.StateMsg(states=tuple(states[start : start + size])), "sync-state"
                )
        at = self.net.stream(server.idx, puller.idx, self.sched.now)
        if at is None:
            at, states = self.sched.now + _FAILED, None
        self.sched.at(
            at, puller.bound, incarnation, puller.pull_ended, (server.name, token, states)
        )

    def _sync_frame(self, msg: wire.Message, kind: str) -> wire.Message:
        m = self.metrics
        m.published[kind] += 1
        m.transmissions[kind] += 1
        m.deliveries[kind] += 1
        return self._through_codec(msg, kind)

    def direct_reporters(self, relay: int) -> frozenset[str]:
        return frozenset(r.name for r in self._homes[relay] if self.net.reachable(relay, r.node))

    def _through_codec(self, msg: wire.Message, kind: str) -> wire.Message:
        """A sampled share of messages travels as bytes: encoded, MAC'd, decoded."""
        if not self.config.codec or self._codec.random() >= self.config.codec:
            return msg
        data = wire.encode(msg, self._key)
        sizes = self.metrics.sizes.setdefault(kind, [0, 0])
        sizes[0] += len(data)
        sizes[1] += 1
        decoded = wire.decode(data, self._key)
        if isinstance(decoded, wire.Rejected) or decoded != msg:
            self.metrics.codec_mismatches += 1
            self.history.log(self.sched.now, f"codec mismatch {kind}: {decoded!r}"[:300])
            return msg
        return decoded

    def _count(self, kind: str, flood: Flood, *, published: bool = True) -> None:
        m = self.metrics
        if published:
            m.published[kind] += 1
        m.transmissions[kind] += flood.transmissions
        m.deliveries[kind] += len(flood.arrivals)
        m.dropped += flood.dropped

    def _deliver_all(self, packet: Packet, arrivals: Sequence[tuple[float, int]]) -> None:
        if packet.kind == "ack":
            return
        at = self.sched.at
        duplicate = self.config.link.duplicate
        for t, node in arrivals:
            at(t, self._deliver, node, packet)
            if duplicate and self._dup.random() < duplicate:
                self.metrics.duplicated += 1
                at(
                    t + self._dup.uniform(0.0, self.config.link.duplicate_delay),
                    self._deliver,
                    node,
                    packet,
                )

    def _deliver(self, node: int, packet: Packet) -> None:
        now = self.sched.now
        if self.config.trace:
            self.history.trace(now, node, packet.code)
        msg = packet.msg
        if isinstance(msg, wire.HeartbeatMsg):
            self.history.heard(node, now, msg.heartbeat.term)
        self.relays[node].receive(packet)

    # -- the sink ----------------------------------------------------------------

    def request(self, relay: SimRelay, req: Request, round_: tuple[object, ...]) -> None:
        self.sched.after(
            self.config.sink_latency, self._answer, relay, relay.incarnation, req, round_
        )

    def _answer(
        self, relay: SimRelay, incarnation: int, req: Request, round_: tuple[object, ...]
    ) -> None:
        """GitHub acts on the request whatever became of its sender since."""
        if not self.sink.up:
            relay.bound(incarnation, relay.request_failed, (round_,))
            return
        link = self.sink.finish(req, self.sched.now)
        relay.bound(incarnation, relay.answered, (req, link, round_))

    # -- errors ------------------------------------------------------------------

    def _inject(self) -> None:
        now = self.sched.now
        if now >= self.config.duration:
            return
        machine, index = self.workload.draw(now)
        sig, severity = self.workload.signatures[index], self.workload.severity[index]
        n = self.config.peers
        host = self.relays[machine] if machine < n else self.reporters[machine - n]
        report = host.commit(sig, severity)
        self.history.inject(now, report.origin, sig, report.count, host.name)
        self._injected += 1
        if self._injected % max(1, self.config.probe_every) == 0:
            up = [r.idx for r in self.relays if r.up]
            self.probes.follow(now, report.origin, sig, report.count, up)
        self.sched.after(self.workload.next_gap(), self._inject)

    # -- faults ------------------------------------------------------------------

    def _fault(self, fault: Fault, starting: bool) -> None:
        now = self.sched.now
        if starting and fault.kind in ("crash", "pause", "slow"):
            fault.target = self._target(fault)
            fault.resolved = self.relays[fault.target].name
        self.history.log(now, f"{'start' if starting else 'end'} {fault.describe()}")
        getattr(self, f"_{fault.kind}")(fault, starting)

    def _target(self, fault: Fault) -> int:
        if fault.at_leader:
            leaders = [r for r in self.relays if r.up and r.election.role == "leader"]
            if leaders:
                return max(leaders, key=lambda r: (r.election.term, -r.idx)).idx
        return fault.nodes[0]

    def _partition(self, fault: Fault, starting: bool) -> None:
        groups = fault.nodes if starting else (0,) * self.net.nodes
        self._connections(self.net.set_groups(groups))

    def _crash(self, fault: Fault, starting: bool) -> None:
        idx = self._relay_of(fault)
        if starting:
            if idx in self._held:
                fault.resolved += " (already down or paused: skipped)"
                return
            self._held[idx] = fault
            relay = self.relays[idx]
            relay.crash()
            self.probes.gone(idx, self.sched.now)
            self._connections(self.net.set_up(idx, False))
        elif self._held.get(idx) is fault:
            del self._held[idx]
            self._connections(self.net.set_up(idx, True))
            self.relays[idx].boot()

    def _pause(self, fault: Fault, starting: bool) -> None:
        idx = self._relay_of(fault)
        relay = self.relays[idx]
        if starting:
            if idx in self._held or not relay.up:
                fault.resolved += " (already down or paused: skipped)"
                return
            self._held[idx] = fault
            relay.pause()
            self.net.set_paused(idx, True)
        elif self._held.get(idx) is fault:
            del self._held[idx]
            self.net.set_paused(idx, False)
            relay.resume()

    def _slow(self, fault: Fault, starting: bool) -> None:
        self.relays[self._relay_of(fault)].slow = _SLOW if starting else 1.0

    def _loss(self, fault: Fault, starting: bool) -> None:
        if starting:
            self._losses.append(fault)
        else:
            self._losses.remove(fault)
        self.net.set_loss(range(self.net.nodes), 0.0)
        for active in self._losses:
            for node in active.nodes:
                self.net.node_loss[node] = max(self.net.node_loss[node], active.value)
        self.net.set_loss((), 0.0)  # rebuild the live links with the new losses

    def _sink_down(self, fault: Fault, starting: bool) -> None:
        self._sink_outages += 1 if starting else -1
        self.sink.up = self._sink_outages == 0

    def _relay_of(self, fault: Fault) -> int:
        return fault.nodes[0] if fault.target is None else fault.target

    def _connections(self, changes: list[ConnectionChange]) -> None:
        """Tell each relay about its broken and new connections once its stack notices."""
        link = self.config.link
        for change in changes:
            relay, peer = self.relays[change.node], self.relays[change.peer]
            if change.opened:
                delay = link.redial * (0.5 + self._redial.random())
            else:
                delay = link.close_notice if change.crash else link.partition_notice
            relay.later(delay, self._noticed, relay, peer, change.opened)

    def _noticed(self, relay: SimRelay, peer: SimRelay, opened: bool) -> None:
        if (peer.idx in self.net.connections(relay.idx)) == opened:
            relay.connection(peer.name, opened)


def _offset(rng: random.Random) -> float:
    """A machine's wall-clock offset: NTP-close, one in twenty off by up to a minute."""
    if rng.random() < 0.05:
        return rng.uniform(-60.0, 60.0)
    return rng.gauss(0.0, 0.2)
