"""The fleet-scale figures: one fixed scenario at 10, 100, 1,000 (and by hand 10,000) relays.

Scenario (``scale_run``): the fleet boots over 5 s, errors start at 10 s
(``0.002 * peers + 1`` per second over the fleet, 20 signatures, one machine
in ten without a relay), 1% of the frames on every link are dropped
throughout. Traffic is measured over the steady window ``[15 s, 0.5 *
duration)``. Then the faults: the relays split in two halves at
``0.5 * duration`` (``partition``) and the leader is killed at ``0.6 *
duration`` and restarted at ``0.8 * duration``; everything heals at
``duration``, and convergence is timed from there. ``--scenario crash``
keeps only the leader's crash.

Anti-entropy's share (the "of them anti-entropy" column) is what a relay
receives of topic digests plus the frames of its sync streams (digests it is
sent by pullers, states it is answered): with topic-wide digests it grew as
the fleet (every relay heard every relay's digest); with pairwise rounds
(``mesh.sync`` rule 6) it stays about two digests and their answers per round.

Each run is one JSON line in ``docs/sim_scaling.json`` (``--out``);
``plot`` draws ``docs/sim_scaling.png`` from them with matplotlib, which is
imported only there (it is not a dependency of errmesh or its tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeAlias

from scripts.sim.config import FaultMix, LinkModel, SimConfig
from scripts.sim.faults import Fault
from scripts.sim.simulation import Simulation
from scripts.sim.summary import Summary, summarise

__all__ = ["plot", "scale_run", "table"]

STEADY_FROM = 15.0
#: One run as saved: ``Summary.as_dict()`` plus its series name.
Row: TypeAlias = dict[str, Any]


def scale_config(peers: int, *, seed: int, duration: float, digest_every: float) -> SimConfig:
    return SimConfig(
        seed=seed,
        peers=peers,
        reporters=peers // 10,
        duration=duration,
        quiet=max(60.0, duration),
        error_rate=0.002 * peers + 1.0,
        errors_from=10.0,
        signatures=20,
        faults=FaultMix(count=0),
        link=LinkModel(loss=0.01),
        digest_every=digest_every,
        codec=min(0.05, 50.0 / peers),
        check_every=1.0,
        probe_every=1,
    )


def scale_faults(config: SimConfig, scenario: str) -> list[Fault]:
    d = config.duration
    faults = [Fault(at=0.6 * d, kind="crash", length=0.2 * d, nodes=(0,), at_leader=True)]
    if scenario == "partition":
        machines = config.peers + config.reporters
        halves = tuple(i % 2 for i in range(machines))
        faults.append(Fault(at=0.5 * d, kind="partition", length=0.5 * d, nodes=halves))
    return sorted(faults, key=lambda f: f.at)


def scale_run(
    peers: int,
    *,
    seed: int = 1,
    duration: float = 120.0,
    digest_every: float = 5.0,
    scenario: str = "partition",
) -> Summary:
    config = scale_config(peers, seed=seed, duration=duration, digest_every=digest_every)
    sim = Simulation(config, faults=scale_faults(config, scenario))
    window = (STEADY_FROM, 0.5 * duration)
    for at in window:
        sim.snapshot_at(at)
    sim.run()
    return summarise(sim, window)


def save(summary: Summary, path: Path, **extra: object) -> None:
    with path.open("a") as out:
        out.write(json.dumps({**summary.as_dict(), **extra}, sort_keys=True) + "\n")


def load(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(rows: Iterable[Row]) -> str:
    """A Markdown table of scale runs."""
    head = (
        "| relays | digest every | simulated | wall | messages/relay/s | of them digests"
        " | link sends/relay/s | kB/relay/s on links | propagation p50 / p99 (samples)"
        " | data converged | issues converged |"
    )
    out = [head, "|" + " --- |" * 11]
    for r in rows:
        lat = f"{r['propagation_p50'] * 1000:.0f} / {r['propagation_p99'] * 1000:.0f} ms"
        samples = r.get("propagation_samples")
        lat += f" ({samples})" if samples is not None else ""
        out.append(
            f"| {r['peers']:,} | {r['digest_every']:g} s | {r['simulated']:.0f} s "
            f"| {r['wall']:.0f} s | {r['delivered']:.1f} | {anti_entropy(r):.1f} "
            f"| {r['transmitted']:.0f} | {r['bytes_per_s'] / 1000:.1f} | {lat} "
            f"| {_secs(r['data_converged'])} | {_secs(r['issues_converged'])} |"
        )
    return "\n".join(out)


def anti_entropy(row: Row) -> float:
    """Per relay per second: topic digests heard, sync frames sent or received."""
    kinds = row["by_kind"]
    return float(sum(kinds.get(k, 0.0) for k in ("digest", "sync-digest", "sync-state")))


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def plot(rows: list[Row], path: Path) -> None:
    """Messages per relay per second and convergence time against fleet size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[str, list[Row]] = {}
    for r in rows:
        series.setdefault(str(r.get("series", "")), []).append(r)
    for name, runs in sorted(series.items()):
        runs.sort(key=lambda r: int(r["peers"]))
        xs = [int(r["peers"]) for r in runs]
        left.plot(xs, [r["delivered"] for r in runs], "o-", label=f"{name}: all messages")
        left.plot(xs, [anti_entropy(r) for r in runs], "x--", label=f"{name}: anti-entropy")
        right.plot(xs, [r["data_converged"] for r in runs], "o-", label=f"{name}: data")
        right.plot(xs, [r["issues_converged"] for r in runs], "s--", label=f"{name}: issues")
    left.set(xscale="log", yscale="log", xlabel="relays", ylabel="messages per relay per second")
    left.set_title("Traffic each relay receives (steady state)")
    right.set(xscale="log", xlabel="relays", ylabel="simulated seconds after heal")
    right.set_title("Convergence after the partition heals")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
