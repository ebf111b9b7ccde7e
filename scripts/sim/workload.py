"""The errors a run injects: when, where, which signature, and how they propagate.

Occurrences arrive as a Poisson process of ``error_rate`` per second over
the fleet, each at a machine drawn uniformly (a relay's own CLIs, or a
machine without a relay), of a signature drawn with weight 1/rank among
those already "released" (new bugs appear during the run). Every
``probe_every``-th one is followed until every relay that was up when it
was raised holds its count: the propagation latency.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mesh.report import Report
from mesh.severity import Severity
from mesh.sigstate import SigState
from scripts.sim.config import SimConfig
from scripts.sim.scheduler import stream

if TYPE_CHECKING:
    from scripts.sim.relay import SimRelay

__all__ = ["Origin", "Probes", "Workload"]


class Origin:
    """A durable store's identity and counters (kept across crashes): its next report."""

    def __init__(self, origin: bytes, host: str) -> None:
        self.origin = origin
        self.host = host
        self.seq = 0
        self.counts: dict[bytes, int] = {}

    def report(self, signature: bytes, severity: Severity, timestamp: float) -> Report:
        """One more occurrence of ``signature``: the next seq, the cumulative count."""
        self.seq += 1
        count = self.counts[signature] = self.counts.get(signature, 0) + 1
        return Report(
            origin=self.origin,
            seq=self.seq,
            count=count,
            signature=signature,
            kind="exception",
            exc_type=f"SimError{signature.hex()[:6]}",
            message="simulated failure",
            host=self.host,
            timestamp=timestamp,
            severity=severity,
        )


class Workload:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = stream(config.seed, "workload")
        rng = stream(config.seed, "signatures")
        n = max(1, config.signatures)
        self.signatures = [
            hashlib.blake2b(f"{config.seed}/sig/{i}".encode(), digest_size=16).digest()
            for i in range(n)
        ]
        self.severity = [rng.choice(list(Severity)) for _ in range(n)]
        self.release = [0.0 if i < 2 else rng.uniform(0.0, 0.6 * config.duration) for i in range(n)]
        self.weights = [1.0 / (i + 1) for i in range(n)]

    def next_gap(self) -> float:
        return self.rng.expovariate(self.config.error_rate)

    def draw(self, now: float) -> tuple[int, int]:
        """(machine, signature index) of the next occurrence at ``now``."""
        machines = self.config.peers + self.config.reporters
        machine = self.rng.randrange(machines)
        released = [i for i, t in enumerate(self.release) if t <= now]
        sig = self.rng.choices(released, [self.weights[i] for i in released])[0]
        return machine, sig


@dataclass(slots=True)
class _Probe:
    origin: bytes
    count: int
    at: float
    waiting: set[int]


@dataclass
class Probes:
    """Propagation latencies of the followed occurrences."""

    def latencies(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Latencies of the occurrences raised in ``[since, until)``."""
        return [lat for at, lat in self.samples if since <= at < until]

    #: (raised at, seconds until every relay held it), per followed occurrence.
    samples: list[tuple[float, float]] = field(default_factory=list)
    _by_sig: dict[bytes, list[_Probe]] = field(default_factory=dict)
    outstanding: int = 0
    limit: int = 500

    def follow(
        self, at: float, origin: bytes, signature: bytes, count: int, up: Iterable[int]
    ) -> None:
        if self.outstanding >= self.limit:
            return
        probe = _Probe(origin, count, at, set(up))
        self._by_sig.setdefault(signature, []).append(probe)
        self.outstanding += 1

    def gone(self, relay: int, now: float) -> None:
        """A crashed relay is waited for no more (it catches up by anti-entropy)."""
        for sig in list(self._by_sig):
            for probe in self._by_sig[sig]:
                probe.waiting.discard(relay)
            self._settle(sig, now)

    def arrived(self, relay: SimRelay, states: list[SigState]) -> None:
        if not self._by_sig:
            return
        now = relay.sim.sched.now
        for state in states:
            probes = self._by_sig.get(state.signature)
            if not probes:
                continue
            for probe in probes:
                rec = state.counts.get(probe.origin)
                if rec is not None and rec.count >= probe.count:
                    probe.waiting.discard(relay.idx)
            self._settle(state.signature, now)

    def _settle(self, signature: bytes, now: float) -> None:
        probes = self._by_sig[signature]
        if all(p.waiting for p in probes):
            return
        self.samples.extend((p.at, now - p.at) for p in probes if not p.waiting)
        kept = [p for p in probes if p.waiting]
        self.outstanding -= len(probes) - len(kept)
        if kept:
            self._by_sig[signature] = kept
        else:
            del self._by_sig[signature]
