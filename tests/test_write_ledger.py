"""The mesh's ledger of GitHub writes: every leader keeps one hourly pace.

GitHub counts its secondary limits per token, and every leader of a mesh
writes with the same one. These tests drive ``mesh.write_ledger`` and the
budget that reads it with explicit clocks; the relay's side (heartbeats)
is tested with real relays in ``tests/test_github_mesh.py``.
"""

from __future__ import annotations

import random

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from github_sink.budget import Budget, BudgetLimits
from mesh import wire
from mesh.election import Heartbeat
from mesh.write_ledger import BUCKET, MAX_BUCKETS, WINDOW, WriteBucket, WriteLedger

NOW = 1_800_000_000.0
buckets = st.lists(
    st.builds(
        WriteBucket,
        writer=st.sampled_from(["a", "b", "c"]),
        minute=st.integers(int(NOW // BUCKET) - 5, int(NOW // BUCKET)),
        count=st.integers(1, 9),
    ),
    max_size=12,
)


def ledger_of(*parts: list[WriteBucket], me: str = "me") -> WriteLedger:
    ledger = WriteLedger(me)
    for part in parts:
        ledger.merge(part, NOW)
    return ledger


@given(buckets, buckets, buckets)
def test_ledgers_join_in_any_order_and_any_number_of_times(
    x: list[WriteBucket], y: list[WriteBucket], z: list[WriteBucket]
) -> None:
    once = ledger_of(x, y, z).buckets(NOW)
    assert ledger_of(z, x, y).buckets(NOW) == once
    assert ledger_of(y, z, x, y, x).buckets(NOW) == once


def test_a_bucket_heard_while_still_filling_is_raised_never_lowered() -> None:
    ledger = WriteLedger("me")
    minute = int(NOW // BUCKET)
    assert ledger.merge([WriteBucket(writer="a", minute=minute, count=2)], NOW)
    assert ledger.merge([WriteBucket(writer="a", minute=minute, count=5)], NOW)
    assert not ledger.merge([WriteBucket(writer="a", minute=minute, count=3)], NOW)
    assert ledger.total(NOW) == 5


def test_a_bucket_is_forgotten_once_it_ended_an_hour_ago() -> None:
    ledger = WriteLedger("me")
    minute = int(NOW // BUCKET)
    ledger.merge([WriteBucket(writer="a", minute=minute, count=1)], NOW)
    end = (minute + 1) * BUCKET
    assert ledger.total(end + WINDOW - 1) == 1
    assert ledger.buckets(end + WINDOW + 1) == ()
    assert not ledger.merge([WriteBucket(writer="a", minute=minute, count=1)], end + WINDOW + 1)


def test_others_writes_count_at_their_buckets_end_and_ours_not_at_all() -> None:
    ledger = WriteLedger("me")
    minute = int(NOW // BUCKET)
    ledger.record_own([NOW - 5, NOW - 4], NOW)
    ledger.merge([WriteBucket(writer="a", minute=minute - 1, count=2)], NOW)
    assert ledger.others(NOW) == (minute * BUCKET, minute * BUCKET)
    assert ledger.total(NOW) == 4


def test_past_its_bound_the_ledger_keeps_the_newest_buckets() -> None:
    ledger = WriteLedger("me")
    minute = int(NOW // BUCKET)
    writers = [f"w{i}" for i in range(MAX_BUCKETS // 50 + 1)]
    ledger.merge(
        [WriteBucket(writer=w, minute=minute - m, count=1) for w in writers for m in range(55)],
        NOW,
    )
    kept = ledger.buckets(NOW)
    assert len(kept) == MAX_BUCKETS
    assert min(b.minute for b in kept) > minute - 55  # the oldest went first


def test_other_leaders_writes_count_in_the_windows_but_not_in_the_spacing() -> None:
    budget = Budget(BudgetLimits(per_minute=80, per_hour=3, min_interval=1.0))
    budget.set_others((NOW - 100, NOW - 50))
    assert budget.delay("POST", NOW) == 0  # the others' last write was 50 s ago: no spacing
    budget.record("POST", NOW)
    # Three writes in the hour, two of them another leader's: the next waits
    # until the oldest of the three leaves the window.
    assert budget.delay("POST", NOW + 2) == (NOW - 100 + 3600) - (NOW + 2)
    assert budget.statistics(NOW + 2).others_last_hour == 2
    assert budget.delay("GET", NOW + 2) == 0


def hand_offs(seed: int, *, shared: bool, limits: BudgetLimits, hours: float = 2.0) -> list[float]:
    """Leaders in turn, each writing as fast as its budget lets it; GitHub's view.

    Each of three relays keeps its own budget (rebuilt from its outbox after
    a restart: its own writes survive) and a ledger; when ``shared``, the
    ledgers travel as heartbeats do, within half a second of each write.
    """
    rng = random.Random(seed)
    names = ["r1", "r2", "r3"]
    budgets = {n: Budget(limits) for n in names}
    ledgers = {n: WriteLedger(n) for n in names}
    sent: list[float] = []
    now = NOW
    end = NOW + hours * 3600
    while now < end:
        leader = rng.choice(names)
        tenure_end = now + rng.uniform(1, 900)
        # Heartbeats reached the new leader before it won (a beat is 0.5 s,
        # an election several).
        if shared:
            for name in names:
                ledgers[leader].merge(ledgers[name].buckets(now), now)
            budgets[leader].set_others(ledgers[leader].others(now))
        while now < tenure_end and now < end:
            wait = budgets[leader].delay("POST", now)
            if wait > 0:
                now += min(wait, tenure_end - now) + 0.001
                continue
            budgets[leader].record("POST", now)
            budgets[leader].finished("POST", now)
            ledgers[leader].record_own(budgets[leader].own_writes(), now)
            sent.append(now)
            now += rng.uniform(0, 0.5)
    return sent


def most_in_any(window: float, times: list[float]) -> int:
    times = sorted(times)
    start, most = 0, 0
    for i, t in enumerate(times):
        while times[start] + window <= t:
            start += 1
        most = max(most, i - start + 1)
    return most


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_a_mesh_of_changing_leaders_never_passes_githubs_hourly_limit(seed: int) -> None:
    limits = BudgetLimits(per_minute=8, per_hour=30, min_interval=1.0)
    sent = hand_offs(seed, shared=True, limits=limits)
    assert most_in_any(3600, sent) <= limits.per_hour
    assert most_in_any(60, sent) <= limits.per_minute
    assert len(sent) >= limits.per_hour  # it did write: the pace is kept, not stopped


def test_without_the_ledger_the_same_hand_offs_pass_the_limit() -> None:
    """What the soak found (501 writes in an hour): each leader kept only its own pace."""
    limits = BudgetLimits(per_minute=8, per_hour=30, min_interval=1.0)
    assert max(most_in_any(3600, hand_offs(s, shared=False, limits=limits)) for s in range(5)) > 30


def test_a_heartbeat_carries_the_ledger_and_an_empty_one_adds_no_byte() -> None:
    beat = Heartbeat(peer="12D3KooWpeer", priority=1, term=3, leading=True)
    writes = (WriteBucket(writer="12D3KooWpeer", minute=int(NOW // BUCKET), count=4),)
    msg = wire.HeartbeatMsg(heartbeat=beat, writes=writes)
    assert wire.decode(wire.encode(msg)) == msg
    assert "w" in msgpack.unpackb(wire.encode(msg))
    assert "w" not in msgpack.unpackb(wire.encode(wire.HeartbeatMsg(heartbeat=beat)))
