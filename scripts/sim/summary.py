"""A finished run in figures: convergence, traffic per relay per second, propagation.

Traffic is counted at the application (``deliveries``: messages a relay's
gossip handed to it, after the seen cache) and on the links
(``transmissions``: every copy forwarded, duplicates the seen cache then
drops included), per relay and per simulated second over a window: by
default the active phase, or between two :meth:`Simulation.snapshot_at`
times. Bytes come from the messages sampled through the codec.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scripts.sim.checker import Violation, check
from scripts.sim.simulation import Metrics, Simulation

__all__ = ["Summary", "percentile", "summarise"]


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Summary:
    seed: int
    peers: int
    eligible: int
    digest_every: float
    simulated: float
    wall: float
    events: int
    injected: int
    faults: int
    #: Simulated seconds from the end of the last fault to agreement (None: never).
    data_converged: float | None
    issues_converged: float | None
    #: Per relay per second over the window, and per kind.
    delivered: float
    transmitted: float
    bytes_per_s: float
    by_kind: dict[str, float]
    propagation_p50: float
    propagation_p99: float
    propagation_samples: int
    leaders: int
    writes: int
    issues: int
    duplicates_opened: int
    violations: tuple[str, ...]
    digest: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _rates(sim: Simulation, start: Metrics | None, end: Metrics, span: float) -> dict[str, float]:
    n = sim.config.peers
    out: dict[str, float] = {}
    for kind in sorted(end.deliveries):
        before = start.deliveries[kind] if start else 0
        out[kind] = (end.deliveries[kind] - before) / n / span
    return out


def summarise(sim: Simulation, window: tuple[float, float] | None = None) -> Summary:
    """The run's figures; ``window``: two snapshot times to measure traffic between."""
    config = sim.config
    violations = check(sim)
    if window is not None:
        start, end = sim.snapshots[window[0]], sim.snapshots[window[1]]
        span = window[1] - window[0]
    else:
        start, end = None, sim.active_metrics or sim.metrics
        span = config.duration
    n = config.peers
    by_kind = _rates(sim, start, end, span)
    sent = sum(end.transmissions.values()) - (sum(start.transmissions.values()) if start else 0)
    size = {k: b / m for k, (b, m) in sim.metrics.sizes.items() if m}
    byte_rate = (
        sum(
            (end.transmissions[k] - (start.transmissions[k] if start else 0)) * size.get(k, 0.0)
            for k in end.transmissions
        )
        / n
        / span
    )
    opened = [w for w in sim.sink.writes if w.what == "open"]
    signatures = {w.signature for w in opened}
    lat = sim.probes.latencies(*window) if window else sim.probes.latencies()
    return Summary(
        seed=config.seed,
        peers=n,
        eligible=config.eligible_count,
        digest_every=config.digest_every,
        simulated=sim.sched.now,
        wall=sim.wall_seconds,
        events=sim.sched.events,
        injected=sum(sim.history.injected.values()),
        faults=len(sim.faults),
        data_converged=None if sim.data_converged is None else sim.data_converged - config.duration,
        issues_converged=None
        if sim.issues_converged is None
        else sim.issues_converged - config.duration,
        delivered=sum(by_kind.values()),
        transmitted=sent / n / span,
        bytes_per_s=byte_rate,
        by_kind=by_kind,
        propagation_p50=percentile(lat, 50),
        propagation_p99=percentile(lat, 99),
        propagation_samples=len(lat),
        leaders=len(sim.history.leads),
        writes=len(sim.sink.writes),
        issues=len(sim.sink.issues),
        duplicates_opened=len(opened) - len(signatures),
        violations=tuple(str(v) for v in violations),
        digest=sim.history.digest(),
    )


def describe(sim: Simulation, summary: Summary, violations: list[Violation] | None = None) -> str:
    """The run as a person reads it: what it was, what happened, what broke."""
    conv = summary.data_converged
    issues = summary.issues_converged
    lines = [
        f"seed {summary.seed}: {summary.peers} relays ({summary.eligible} eligible), "
        f"{len(sim.reporters)} reporters, "
        f"{summary.simulated:.0f} s simulated in {summary.wall:.1f} s",
        f"  {summary.injected} occurrences injected, {summary.faults} faults, "
        f"{summary.leaders} elections, {summary.writes} GitHub writes, {summary.issues} issues "
        f"({summary.duplicates_opened} duplicates opened)",
        f"  converged after the last fault: data {_secs(conv)}, issues {_secs(issues)}",
        f"  per relay per second: {summary.delivered:.1f} messages delivered, "
        f"{summary.transmitted:.1f} sent on links, ~{summary.bytes_per_s / 1000:.1f} kB on links",
        "  by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.by_kind.items()),
        f"  propagation to every relay: p50 {summary.propagation_p50 * 1000:.0f} ms, "
        f"p99 {summary.propagation_p99 * 1000:.0f} ms",
    ]
    return "\n".join(lines)


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
