"""Occurrence throughput: one peer fed 100,000 occurrences of 20 signatures (issue 3).

Goal: every occurrence is counted at every peer; report the messages on the
wire and the CPU seconds this costs.

The peer is fed the way DESIGN section 7 feeds a relay: failing processes
on its machine commit their reports to the relay's spool and nudge it. Here
the bench process plays those processes and spools 100,000 reports (10,000
in ``--quick``) of 20 signatures into the fed relay's spool as fast as it
can (full first reports, ``report_bytes.synthetic_report``, each stamped
with the spool's own seq and cumulative count, ``spool_sync=normal``),
nudging the relay after every 1,000. The relay's drain merges them and
gossips them coalesced (one full report per signature and drain round, then
cumulative ``occ`` counters in batches, paced); the other peers merge what
they hear, and anti-entropy digests repair anything gossip dropped.

Five peers, all real relays (``node.service.serve_relay``) run by
``_timed_relay.py`` so that they can count messages by kind: the fed relay
and four more, each bootstrapped to it. Reported:

- time until the fed relay, and until every peer, counts all occurrences
  (the sum of the 20 signatures' totals in each peer's SQLite store);
- messages: published by the fed relay, received by each peer (by kind,
  after validation), gossip's local drops; bytes received on ``lo``
  (every process on the machine counts there, so it is an upper bound);
- CPU seconds of each relay from the start of the feed until every peer
  counts everything, and of the feeding (spooling) process.
"""

from __future__ import annotations

import collections
import hashlib
import random
import resource
import socket
import time
from typing import Any

from _common import emit, parser, table
from _mesh import CLUSTER, Sandbox, TimedRelay, cpu_seconds, loopback_bytes, read_totals
from report_bytes import synthetic_report

from mesh.store import Store

SIGNATURES = 20
OTHERS = 4
NUDGE_EVERY = 1_000


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def counted(peer: TimedRelay, signatures: list[bytes]) -> int:
    totals = read_totals(peer.state_dir)
    return sum(totals.get(sig, 0) for sig in signatures)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def main() -> None:
    args = parser(__doc__).parse_args()
    total = 10_000 if args.quick else 100_000
    signatures = [hashlib.sha256(f"occ-{k}".encode()).digest()[:16] for k in range(SIGNATURES)]
    template = synthetic_report(random.Random(9))
    sandbox = Sandbox()
    try:
        fed = TimedRelay(sandbox, "fed", settings={"window": 900})
        fed.start()
        fed.wait_ready(60.0)
        others = [TimedRelay(sandbox, f"peer-{i}", settings={"window": 900}) for i in range(OTHERS)]
        for peer in others:
            peer.start([fed.addr])
        for peer in others:
            peer.wait_ready(60.0)
        peers = [fed, *others]
        deadline = time.monotonic() + 30.0
        while any(len(p.stats()["peers"]) < 1 for p in peers) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # election settled, first digests exchanged
        before = [p.stats() for p in peers]
        cpu_before = [cpu_seconds(p.pid) for p in peers]
        lo_before = loopback_bytes()

        feeder_cpu = self_cpu()
        started = time.monotonic()
        sock_path = str(fed.state_dir / CLUSTER / "relay.sock")
        with (
            Store.open(fed.state_dir / CLUSTER, sync="normal", max_reports=total + 1) as store,
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nudge,
        ):
            for i in range(total):
                store.spool(
                    template.replace(signature=signatures[i % SIGNATURES], timestamp=time.time())
                )
                if (i + 1) % NUDGE_EVERY == 0:
                    nudge.sendto(b"spooled", sock_path)
        spooled_s = time.monotonic() - started
        feeder_cpu = self_cpu() - feeder_cpu

        fed_done: float | None = None
        all_done: float | None = None
        counts = [0] * len(peers)
        limit = started + (60.0 if args.quick else 120.0)
        while time.monotonic() < limit:
            counts = [counted(p, signatures) for p in peers]
            if fed_done is None and counts[0] >= total:
                fed_done = time.monotonic() - started
            if all(c >= total for c in counts):
                all_done = time.monotonic() - started
                break
            time.sleep(0.25)
        cpu_after = [cpu_seconds(p.pid) for p in peers]
        lo_bytes = loopback_bytes() - lo_before
        after = [p.stats() for p in peers]
    finally:
        sandbox.close()

    names = ["fed", *[f"peer-{i}" for i in range(OTHERS)]]
    print(
        f"occurrence throughput: {total:,} occurrences of {SIGNATURES} signatures spooled "
        f"into one relay, {len(peers)} relays in all\n"
    )
    received_kinds: collections.Counter[str] = collections.Counter()
    rows = []
    for i, name in enumerate(names):
        received = delta(after[i]["received"], before[i]["received"])
        published = delta(after[i]["published"], before[i]["published"])
        received_kinds.update(received)
        gossip_received = after[i]["gossip"]["received"] - before[i]["gossip"]["received"]
        dropped = after[i]["gossip"]["dropped_local"] - before[i]["gossip"]["dropped_local"]
        rows.append(
            [
                name,
                counts[i],
                sum(published.values()),
                published.get("ReportMsg", 0),
                published.get("OccMsg", 0),
                gossip_received,
                received.get("ReportMsg", 0),
                received.get("OccMsg", 0),
                received.get("StateMsg", 0),
                dropped,
                cpu_after[i] - cpu_before[i],
            ]
        )
    print(
        table(
            [
                "peer",
                "counted",
                "published",
                "reports",
                "occ",
                "received",
                "reports",
                "occ",
                "state",
                "dropped",
                "CPU s",
            ],
            rows,
        )
    )
    print("(published/received: pubsub messages of every kind; the kind columns break them down)")
    fed_pub = delta(after[0]["published"], before[0]["published"])
    print(f"\nfed relay published, by kind: {dict(sorted(fed_pub.items()))}")
    print(f"all peers received, by kind: {dict(sorted(received_kinds.items()))}")
    relay_cpu = sum(r[-1] for r in rows)
    print(
        f"feeding: {total:,} reports spooled in {spooled_s:.1f} s "
        f"({total / spooled_s:,.0f}/s), {feeder_cpu:.1f} CPU s in the feeding process"
    )
    fed_text = f"{fed_done:.1f} s" if fed_done is not None else "NOT within the deadline"
    all_text = f"{all_done:.1f} s" if all_done is not None else "NOT within the deadline"
    print(
        f"counted: by the fed relay after {fed_text}, by every peer after {all_text} "
        f"(from the first spooled report)"
    )
    if all_done:
        print(f"end-to-end rate: {total / all_done:,.0f} occurrences/s counted at every peer")
    print(
        f"relays' CPU: {relay_cpu:.1f} s in all; bytes received on lo meanwhile: "
        f"{lo_bytes / 1e6:.1f} MB"
    )
    met = all_done is not None
    print(
        f"\ngoal: all {total:,} counted at every peer: "
        f"{'yes' if met else 'NO'} (counts: {', '.join(f'{c:,}' for c in counts)})"
    )
    results: dict[str, Any] = {
        "occurrences": total,
        "signatures": SIGNATURES,
        "peers": len(names),
        "spooled_s": spooled_s,
        "feeder_cpu_s": feeder_cpu,
        "fed_counted_s": fed_done,
        "all_counted_s": all_done,
        "counts": counts,
        "fed_published": fed_pub,
        "received_by_kind": dict(received_kinds),
        "per_peer": [dict(zip(["peer", "counted", "published"], r[:3], strict=True)) for r in rows],
        "relay_cpu_s": [r[-1] for r in rows],
        "loopback_bytes": lo_bytes,
        "headline": f"{'all' if met else 'NOT all'} {total:,} counted at {len(names)} peers "
        f"in {all_done or float('nan'):.1f} s; fed relay sent {sum(fed_pub.values())} messages; "
        f"relays {relay_cpu:.1f} CPU s, feeder {feeder_cpu:.1f} CPU s",
    }
    emit(
        "occurrence_throughput",
        goal=f"{total:,} occurrences of {SIGNATURES} signatures counted at every peer",
        met=met,
        quick=args.quick,
        results=results,
    )


if __name__ == "__main__":
    main()
