"""Propagation of a report to every peer of a 10-process mesh (issue 3).

Goal: a report published by one peer reaches every other peer within
100 ms at the 99th percentile.

Every peer is a real relay (``node.service.serve_relay``: store, acks,
election, digests) run by ``_timed_relay.py``, which stamps each report's
arrival with ``time.time()`` when ``MeshPeer.handle`` gets it, i.e. after
gossipsub's validator (HMAC, decode) and the relay's decode. All processes
run on this machine, so their clocks agree. Publishers take turns (report
*i* is published by peer ``i % 10``, which first spools and merges it, as
the relay's drain does, then stamps and publishes it); the bench process
paces them. Each report is a realistic first report (~2.6 KB on the wire).
Every receiving relay commits it to SQLite and acks it on the control topic,
so each report also costs 9 acks, each gossiped to every peer.

Two topologies, each with 10 fresh processes:

- ``star``: peers 1-9 bootstrap to peer 0 (a seed relay); reports from
  peers 1-9 take two hops to the other leaves;
- ``random``: peers join in waves: peers 1-3 dial peer 0, then peers 4-9
  each dial two random peers of 0-3 (a sparse graph, up to four hops).

Phases: *rest* (5 s without reports: heartbeats and digests only, to show
what the mesh costs at rest), then *light*, one report per second (25
reports; the goal is judged on it), in both topologies, and *busy*, four
per second (20 reports), in the first topology only, to show where the
mesh saturates.

Reported per topology and rate: per delivery (report, receiver) and per
report (publish -> the last of the 9 other peers has it, the figure the
goal is about), p50/p90/p99/max; deliveries that never came as a ``report``
(a dropped message is repaired later by anti-entropy as a ``state``, which
is not a propagation) are counted as missing; messages delivered by kind
and the relays' CPU seconds. Before timing, one warm-up report from every
peer must reach all others.
"""

from __future__ import annotations

import collections
import random
import time
from typing import Any

from _common import emit, parser, samples_ms, summary_ms, table
from _mesh import Sandbox, TimedRelay, cpu_seconds, machine_cpu_seconds, wait_for

GOAL_MS = 100.0
PEERS = 10


def start_mesh(sandbox: Sandbox, topology: str, rng: random.Random) -> list[TimedRelay]:
    """Start 10 timed relays in waves; returns them ready (listening)."""
    peers = [TimedRelay(sandbox, f"{topology}-{i}") for i in range(PEERS)]
    waves = [[0], list(range(1, 4)), list(range(4, PEERS))]
    for wave in waves:
        for i in wave:
            if i == 0:
                bootstrap: list[str] = []
            elif topology == "star":
                bootstrap = [peers[0].addr]
            else:
                earlier = [j for j in range(PEERS) if peers[j].addr]
                bootstrap = [peers[j].addr for j in rng.sample(earlier, min(2, len(earlier)))]
            peers[i].start(bootstrap)
        for i in wave:
            peers[i].wait_ready(60.0)
    return peers


def collect(peers: list[TimedRelay]) -> dict[tuple[str, int], dict[int, float]]:
    """(origin hex, seq) -> {receiver index: arrival time} from every peer's events."""
    arrivals: dict[tuple[str, int], dict[int, float]] = {}
    for index, peer in enumerate(peers):
        for event in peer.drain_events():
            if event.get("event") == "recv":
                arrivals.setdefault((event["o"], event["s"]), {})[index] = event["t"]
    return arrivals


def publish_round(
    peers: list[TimedRelay], count: int, pace: float, tag: str
) -> list[tuple[int, str, int, float]]:
    """``count`` reports, publisher ``i % 10``, ``pace`` s apart; (publisher, origin, seq, t)."""
    for i in range(count):
        peers[i % PEERS].send("publish", n=1, sig=f"{tag}-{i % PEERS}")
        time.sleep(pace)
    sent = []
    per_peer: dict[int, int] = {}  # each publisher answers in order, one ``published`` each
    for i in range(count):
        per_peer[i % PEERS] = per_peer.get(i % PEERS, 0) + 1
    for index, n in per_peer.items():
        for _ in range(n):
            event = peers[index].expect("published", 30.0)
            for origin, seq, t in event["sent"]:
                sent.append((index, origin, seq, t))
    return sent


def wait_delivered(
    peers: list[TimedRelay], sent: list[tuple[int, str, int, float]], within: float
) -> dict[tuple[str, int], dict[int, float]]:
    """Arrivals, once every report reached all other peers or at the deadline."""
    deadline = time.monotonic() + within
    while True:
        arrivals = collect(peers)
        done = all(len(arrivals.get((o, s), {}).keys() - {p}) >= PEERS - 1 for p, o, s, _ in sent)
        if done or time.monotonic() >= deadline:
            return arrivals
        time.sleep(0.05)


def measure_phase(
    peers: list[TimedRelay], topology: str, label: str, count: int, pace: float
) -> dict[str, Any]:
    """Publish ``count`` reports ``pace`` s apart and measure their propagation."""
    before = [p.stats() for p in peers]
    cpu_before = [cpu_seconds(p.pid) for p in peers]
    machine_before = machine_cpu_seconds()
    t0 = time.monotonic()
    if count:
        sent = publish_round(peers, count, pace, f"{label}-{topology}")
        arrivals = wait_delivered(peers, sent, 15.0)
    else:  # at rest: heartbeats and digests only, for ``pace`` seconds
        time.sleep(pace)
        sent, arrivals = [], {}
    elapsed = time.monotonic() - t0
    cpu_after = [cpu_seconds(p.pid) for p in peers]
    machine = machine_cpu_seconds() - machine_before
    stats = [p.stats() for p in peers]
    deliveries: list[float] = []
    per_report: list[float] = []
    missing = 0
    slowest: list[tuple[float, str]] = []
    first = min((t for *_, t in sent), default=0.0)
    for publisher, origin, seq, t in sent:
        got = {r: at for r, at in arrivals.get((origin, seq), {}).items() if r != publisher}
        deliveries.extend(at - t for at in got.values())
        missing += PEERS - 1 - len(got)
        if len(got) == PEERS - 1:
            per_report.append(max(got.values()) - t)
            late = sorted(got, key=lambda r: got[r] - t)[-3:]
            end = max(got.values())
            stalled = [
                f"{i}: {d * 1000:.0f} ms"
                for i, st in enumerate(stats)
                for began, d in st.get("stalls", [])
                if began < end and began + d > t - 0.05
            ]
            slowest.append(
                (
                    max(got.values()) - t,
                    f"{(max(got.values()) - t) * 1000:.0f} ms: published by {publisher} "
                    f"{t - first:.1f} s into the phase; last receivers "
                    + ", ".join(f"{r} ({(got[r] - t) * 1000:.0f})" for r in reversed(late))
                    + (f"; loops stalled meanwhile: {', '.join(stalled)}" if stalled else ""),
                )
            )
    pairs = list(zip(stats, before, strict=True))
    kinds: collections.Counter[str] = collections.Counter()
    for s, b in pairs:
        kinds.update(s["received"])
        kinds.subtract(b["received"])
    return {
        "topology": topology,
        "phase": label,
        "reports": len(sent),
        "pace_s": pace,
        "deliveries": summary_ms(deliveries),
        "all_peers": summary_ms(per_report),
        "all_peers_samples_ms": samples_ms(per_report),
        "missing": missing,
        "complete_reports": len(per_report),
        "cpu_s": sum(b - a for a, b in zip(cpu_before, cpu_after, strict=True)),
        "machine_cpu_s": machine,
        "elapsed_s": elapsed,
        "messages_received_total": sum(
            s["gossip"]["received"] - b["gossip"]["received"] for s, b in pairs
        ),
        "received_by_kind": dict(sorted(kinds.items())),
        "dropped_local": sum(
            s["gossip"]["dropped_local"] - b["gossip"]["dropped_local"] for s, b in pairs
        ),
        "peers_per_peer": [len(s["peers"]) for s in stats],
        "leaders": sorted({str(s.get("leader")) for s in stats}),
        "slowest": [text for _, text in sorted(slowest, reverse=True)[:3]],
    }


def run_topology(
    sandbox: Sandbox,
    topology: str,
    phases: list[tuple[str, int, float]],
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Start a mesh, warm it up, run each (label, count, pace) phase; then stop it."""
    started = time.monotonic()
    peers = start_mesh(sandbox, topology, rng)
    try:
        startup = time.monotonic() - started
        wait_for(lambda: all(p.stats()["peers"] for p in peers), 30.0, 0.2, "every peer connected")
        time.sleep(2.0)  # settle the election and the first digests
        warm = publish_round(peers, PEERS, 0.2, f"warm-{topology}")
        arrivals = wait_delivered(peers, warm, 20.0)
        missing_warm = sum(
            PEERS - 1 - len(arrivals.get((o, s), {}).keys() - {p}) for p, o, s, _ in warm
        )
        if missing_warm:
            print(f"  warning: {missing_warm} warm-up deliveries missing in {topology}")
        results = []
        for label, count, pace in phases:
            what = f"{count} reports, one every {pace:.2f} s" if count else f"at rest, {pace:.0f} s"
            print(f"  {topology}: {what}", flush=True)
            results.append(measure_phase(peers, topology, label, count, pace))
            results[-1]["startup_s"] = startup
        return results
    finally:
        for p in peers:
            if p.child is not None:
                p.child.kill()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--topologies", nargs="+", default=["star", "random"])
    args = p.parse_args()
    rest = ("rest", 0, 3.0 if args.quick else 5.0)
    light = ("light", 10 if args.quick else 25, 1.0)
    busy = ("busy", 10 if args.quick else 20, 0.25)
    rng = random.Random(3)
    results: list[dict[str, Any]] = []
    sandbox = Sandbox()
    try:
        for i, topology in enumerate(args.topologies):
            print(f"{topology}: starting {PEERS} relays ...", flush=True)
            phases = [rest, light, busy] if i == 0 else [rest, light]
            results.extend(run_topology(sandbox, topology, phases, rng))
    finally:
        sandbox.close()

    print(
        f"\npropagation: {PEERS} relay processes; publishers in turn; ms from publish to "
        f"arrival in MeshPeer.handle\n(light: one report every {light[2]:.2f} s; busy: one every "
        f"{busy[2]:.2f} s, first topology only)\n"
    )
    rows = []
    for r in results:
        if not r["reports"]:
            continue
        for what in ("deliveries", "all_peers"):
            s = r[what]
            rows.append(
                [
                    r["topology"],
                    r["phase"],
                    "each delivery" if what == "deliveries" else "report -> all 9 peers",
                    int(s["n"]),
                    s["p50"],
                    s["p90"],
                    s["p99"],
                    s["max"],
                ]
            )
    print(
        table(
            ["topology", "rate", "latency of", "n", "p50", "p90", "p99", "max"],
            rows,
            align="lllrrrrr",
        )
    )
    print()
    rows = [
        [
            r["topology"],
            r["phase"],
            r["missing"],
            r["messages_received_total"],
            r["received_by_kind"].get("AckMsg", 0),
            r["received_by_kind"].get("HeartbeatMsg", 0),
            r["received_by_kind"].get("StateMsg", 0),
            r["dropped_local"],
            r["cpu_s"],
            r["machine_cpu_s"] - r["cpu_s"],
            r["elapsed_s"],
            r["startup_s"],
        ]
        for r in results
    ]
    print(
        table(
            [
                "topology",
                "rate",
                "missing",
                "msgs recv",
                "acks",
                "hb",
                "state",
                "dropped",
                "CPU s",
                "other CPU s",
                "wall s",
                "start s",
            ],
            rows,
            align="llrrrrrrrrrr",
        )
    )
    print(
        "(msgs recv: validated pubsub messages delivered to the 10 relays during the phase, "
        "acks/hb/state among them;\n CPU s: the 10 relays together during the phase; other CPU s: "
        "every other process on the machine (this one too) meanwhile; "
        f"pubsub peers per relay: {', '.join(str(r['peers_per_peer']) for r in results[:1])})"
    )
    for r in results:
        if r["slowest"]:
            print(f"slowest, {r['topology']} {r['phase']} (leader {', '.join(r['leaders'])}):")
            for text in r["slowest"]:
                print(f"  {text}")
    light_results = [r for r in results if r["phase"] == "light"]
    worst = max(r["all_peers"]["p99"] for r in light_results)
    missing = sum(r["missing"] for r in light_results)
    met = worst <= GOAL_MS and missing == 0
    print(
        f"\ngoal: report -> every other peer p99 <= {GOAL_MS:.0f} ms (light rate): worst p99 "
        f"{worst:.1f} ms, {missing} deliveries missing -> {'met' if met else 'NOT met'}"
    )
    emit(
        "propagation",
        goal=f"publish -> all {PEERS - 1} other peers p99 <= {GOAL_MS:.0f} ms",
        met=met,
        quick=args.quick,
        results={
            "phases": results,
            "headline": "; ".join(
                f"{r['topology']} {r['phase']}: p99 {r['all_peers']['p99']:.0f} ms "
                f"(p50 {r['all_peers']['p50']:.0f}), {r['missing']} missing"
                for r in results
                if r["reports"]
            ),
        },
    )


if __name__ == "__main__":
    main()
