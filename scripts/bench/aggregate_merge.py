"""Aggregate merges per second on one core: the leader's and every peer's hot loop.

Every peer folds every ``occ`` record it hears into its replicated aggregate
(DESIGN section 5), so a busy cluster (many hosts repeating a few errors)
must not be limited by the merge. Goal: at least 100,000
``Aggregate.add_occurrence`` per second on one core.

Workload (one process, one thread, pure Python, no IO):

- ``add_occurrence, growing``: 20 signatures x 50 origins; operation ``i``
  is signature ``i % 20``, origin ``(i // 20) % 50`` with cumulative count
  ``i // 1000 + 1``, so every operation after the first 1,000 raises a count
  and builds a new state (a copy of a 50-entry dict): the worst case, and what
  a stream of fresh ``occ`` records does. 1,000,000 operations (100,000 with
  ``--quick``); the occurrences are built beforehand in chunks of 50,000, so
  only the merge is timed. This is the goal's figure.
- ``add_occurrence, repeats``: the same occurrences again (the aggregate has
  them all): idempotent re-deliveries, the fast path that changes nothing.
- ``merge_states``: joins of two random states of one signature (each with
  50 of 80 possible origins, random counts and times, a detail report in most,
  an issue link in some), as anti-entropy does; and the same at the origin
  cap (2 x 256 origins out of 400: the join evicts and counts).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence

from _common import emit, parser, table

from mesh.aggregate import Aggregate
from mesh.report import Occurrence, Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, Limits, OriginCount, SigState, merge_states

GOAL_PER_S = 100_000
SIGNATURES = 20
ORIGINS = 50
CHUNK = 50_000
T0 = 1_764_072_000.0

_SIGS = [hashlib.sha256(b"sig%d" % i).digest()[:16] for i in range(SIGNATURES)]
_ORIGIN_IDS = [hashlib.sha256(b"origin%d" % i).digest()[:16] for i in range(400)]
_HOSTS = [f"build-runner-{i:02d}.corp" for i in range(400)]


def occurrences(start: int, stop: int) -> list[Occurrence]:
    """Operations ``start..stop`` of the growing workload."""
    out = []
    for i in range(start, stop):
        o = (i // SIGNATURES) % ORIGINS
        out.append(
            Occurrence(
                origin=_ORIGIN_IDS[o],
                signature=_SIGS[i % SIGNATURES],
                count=i // (SIGNATURES * ORIGINS) + 1,
                first_seen=T0 + o,
                last_seen=T0 + i * 0.001,
                host=_HOSTS[o],
                severity=Severity.MEDIUM,
            )
        )
    return out


def run_growing(total: int) -> tuple[Aggregate, float, list[float]]:
    """Seconds spent in add_occurrence over ``total`` growing operations, per chunk rates."""
    agg = Aggregate()
    spent = 0.0
    rates: list[float] = []
    add = agg.add_occurrence
    for start in range(0, total, CHUNK):
        batch = occurrences(start, min(start + CHUNK, total))
        t = time.perf_counter()
        for occ in batch:
            add(occ)
        dt = time.perf_counter() - t
        spent += dt
        rates.append(len(batch) / dt)
    return agg, spent, rates


def run_repeats(agg: Aggregate, total: int) -> tuple[float, int]:
    """Seconds per re-delivery of occurrences the aggregate already holds, and how many."""
    # The last CHUNK operations are the newest records of every (signature, origin).
    last = total - CHUNK if total > CHUNK else 0
    batch = occurrences(last, total)
    before = {s.signature: s for s in agg}
    reps = max(1, total // len(batch) // 4)
    t = time.perf_counter()
    for _ in range(reps):
        for occ in batch:
            agg.add_occurrence(occ)
    dt = time.perf_counter() - t
    assert all(agg.get(sig) is state for sig, state in before.items()), "repeats changed state"
    return dt / (reps * len(batch)), reps * len(batch)


def random_state(rng: random.Random, sig: bytes, pool: int, origins: int) -> SigState:
    counts = {}
    for o in rng.sample(range(pool), origins):
        first = T0 + rng.uniform(0, 3600)
        counts[_ORIGIN_IDS[o]] = OriginCount(
            count=rng.randint(1, 5000),
            first_seen=first,
            last_seen=first + rng.uniform(0, 7200),
            host=_HOSTS[o],
        )
    detail = None
    if rng.random() < 0.8:
        o = rng.randrange(pool)
        detail = Report(
            origin=_ORIGIN_IDS[o],
            seq=rng.randint(1, 10_000),
            count=1,
            signature=sig,
            kind="exception",
            exc_type="acme_sync.codecs.csv_rows.RecordError",
            message="cannot read column 'amount' of record 1182-7",
            host=_HOSTS[o],
            timestamp=T0 + rng.uniform(0, 3600),
        )
    link = None
    if rng.random() < 0.5:
        link = IssueLink(
            ref="issue",
            number=rng.randint(1, 500),
            url="https://github.com/acme/sync/issues/1",
            state="open",
            term=rng.randint(1, 5),
            synced_total=rng.randint(0, 10_000),
            synced_at=T0 + rng.uniform(0, 3600),
        )
    return SigState(
        signature=sig,
        detail=detail,
        counts=counts,
        severity=rng.choice(list(Severity)),
        link=link,
    )


def run_merges(pairs: Sequence[tuple[SigState, SigState]], total: int, limits: Limits) -> float:
    """Seconds per ``merge_states`` over ``total`` joins cycling through ``pairs``."""
    reps = max(1, total // len(pairs))
    t = time.perf_counter()
    for _ in range(reps):
        for a, b in pairs:
            merge_states(a, b, limits)
    return (time.perf_counter() - t) / (reps * len(pairs))


def _pairs(
    rng: random.Random, pool: int, origins: int, n: int = 200
) -> list[tuple[SigState, SigState]]:
    """``n`` pairs of random states of one signature."""
    return [
        (random_state(rng, _SIGS[0], pool, origins), random_state(rng, _SIGS[0], pool, origins))
        for _ in range(n)
    ]


def main() -> None:
    args = parser(__doc__).parse_args()
    total = 100_000 if args.quick else 1_000_000
    merges = 5_000 if args.quick else 50_000

    agg, spent, rates = run_growing(total)
    per_s = total / spent
    state = agg.get(_SIGS[0])
    assert state is not None
    assert len(state.counts) == ORIGINS
    expected_total = ORIGINS * (total // (SIGNATURES * ORIGINS))
    assert state.total == expected_total, (state.total, expected_total)

    repeat_s, repeats = run_repeats(agg, total)
    rng = random.Random(20261125)
    merge_s = run_merges(_pairs(rng, 80, 50), merges, Limits())
    cap_s = run_merges(_pairs(rng, 400, 256), max(1, merges // 25), Limits(max_origins=256))

    rows = [
        [
            "add_occurrence, growing counts (goal)",
            f"{total:,}",
            per_s,
            1e6 / per_s,
        ],
        ["add_occurrence, repeats (no change)", f"{repeats:,}", 1 / repeat_s, repeat_s * 1e6],
        ["merge_states, 2 x 50 of 80 origins", f"{merges:,}", 1 / merge_s, merge_s * 1e6],
        [
            "merge_states, 2 x 256 of 400 origins (cap 256)",
            f"{max(1, merges // 25):,}",
            1 / cap_s,
            cap_s * 1e6,
        ],
    ]
    print(f"aggregate_merge: {SIGNATURES} signatures x {ORIGINS} origins, one core\n")
    print(table(["operation", "ops", "ops/s", "us/op"], rows))
    print(
        f"\nadd_occurrence per chunk of {CHUNK:,}: min {min(rates):,.0f}/s, max {max(rates):,.0f}/s"
    )
    met = per_s >= GOAL_PER_S
    print(
        f"goal: >= {GOAL_PER_S:,} add_occurrence/s: {per_s:,.0f}/s -> {'met' if met else 'NOT met'}"
    )
    emit(
        "aggregate_merge",
        goal=f">= {GOAL_PER_S:,} Aggregate.add_occurrence per second on one core",
        met=met,
        quick=args.quick,
        results={
            "operations": total,
            "add_occurrence_per_s": per_s,
            "add_occurrence_chunk_min_per_s": min(rates),
            "add_occurrence_chunk_max_per_s": max(rates),
            "repeat_per_s": 1 / repeat_s,
            "merge_states_per_s": 1 / merge_s,
            "merge_states_at_cap_per_s": 1 / cap_s,
            "headline": f"{per_s:,.0f} add_occurrence/s; merge_states {1 / merge_s:,.0f}/s",
        },
    )


if __name__ == "__main__":
    main()
