"""The replicated aggregate: merge laws, convergence under a bad network, bundling, bounds.

Everything here is pure: time is a number we pass in, the "network" is a
list of pending messages that the tests drop, duplicate, reorder and
partition at will (DESIGN sections 5, 7, 8; STYLE, the h11 model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from mesh.aggregate import Aggregate
from mesh.bundling import (
    Action,
    BundlePolicy,
    OpenIssue,
    ReopenIssue,
    UpdateIssue,
    effective_severity,
    next_due,
    per_hour,
    plan,
)
from mesh.errors import LocalError
from mesh.report import Occurrence, Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, Limits, OriginCount, SigState, empty_state, merge_states

SIG = b"\x01" * 16
OTHER_SIG = b"\x02" * 16
SIGS = (SIG, OTHER_SIG, b"\x03" * 16)
ORIGINS = tuple(bytes([i]) * 16 for i in range(1, 5))


def make_report(
    *,
    sig: bytes = SIG,
    origin: bytes = ORIGINS[0],
    seq: int = 1,
    count: int = 1,
    timestamp: float = 100.0,
    host: str = "h1",
    message: str = "boom",
    severity: Severity = Severity.MEDIUM,
) -> Report:
    return Report(
        origin=origin,
        seq=seq,
        count=count,
        signature=sig,
        kind="exception",
        exc_type="ValueError",
        message=message,
        host=host,
        timestamp=timestamp,
        severity=severity,
    )


def make_occ(
    *,
    sig: bytes = SIG,
    origin: bytes = ORIGINS[0],
    count: int = 1,
    first_seen: float = 100.0,
    last_seen: float | None = None,
    host: str = "h1",
    severity: Severity = Severity.MEDIUM,
) -> Occurrence:
    return Occurrence(
        origin=origin,
        signature=sig,
        count=count,
        first_seen=first_seen,
        last_seen=first_seen if last_seen is None else last_seen,
        host=host,
        severity=severity,
    )


def make_link(
    *,
    term: int = 1,
    state: str = "open",
    synced_total: int = 1,
    synced_at: float = 1000.0,
    number: int | None = 7,
    severity: Severity = Severity.MEDIUM,
) -> IssueLink:
    assert state in ("open", "closed")
    return IssueLink(
        ref=f"o/r#{number}",
        number=number,
        url=f"https://github.com/o/r/issues/{number}",
        state="open" if state == "open" else "closed",
        term=term,
        synced_total=synced_total,
        synced_at=synced_at,
        severity=severity,
    )


# --- strategies: small pools so that ties (equal counts, times, keys) are common ---

times = st.integers(0, 6).map(float)
severities = st.sampled_from(Severity)
hosts = st.sampled_from(["a", "b", "c"])


@st.composite
def origin_counts(draw: st.DrawFn) -> OriginCount:
    first = draw(times)
    return OriginCount(
        count=draw(st.integers(0, 4)),
        first_seen=first,
        last_seen=first + draw(times),
        host=draw(hosts),
    )


def reports(sig: bytes = SIG) -> st.SearchStrategy[Report]:
    return st.builds(
        make_report,
        sig=st.just(sig),
        origin=st.sampled_from(ORIGINS),
        seq=st.integers(1, 3),
        count=st.integers(1, 4),
        timestamp=times,
        host=hosts,
        message=st.sampled_from(["boom", "bang"]),  # same id, other bytes: still a total order
        severity=severities,
    )


links = st.builds(
    make_link,
    term=st.integers(0, 3),
    state=st.sampled_from(["open", "closed"]),
    synced_total=st.integers(0, 6),
    synced_at=times,
    number=st.none() | st.integers(1, 3),
    severity=severities,
)

sig_states = st.builds(
    SigState,
    signature=st.just(SIG),
    detail=st.none() | reports(),
    counts=st.dictionaries(st.sampled_from(ORIGINS), origin_counts(), max_size=len(ORIGINS)),
    severity=severities,
    link=st.none() | links,
    evicted_origins=st.integers(0, 3),
)

policies = st.builds(
    BundlePolicy,
    settle=st.integers(0, 10).map(float),
    window=st.integers(0, 20).map(float),
    reopen_on_regression=st.booleans(),
)


# --- 1. merge laws -------------------------------------------------------------------


@given(sig_states, sig_states)
def test_merge_is_commutative(a: SigState, b: SigState) -> None:
    assert merge_states(a, b) == merge_states(b, a)


@given(sig_states, sig_states, sig_states)
def test_merge_is_associative(a: SigState, b: SigState, c: SigState) -> None:
    assert merge_states(merge_states(a, b), c) == merge_states(a, merge_states(b, c))


@given(sig_states)
def test_merge_is_idempotent(a: SigState) -> None:
    assert merge_states(a, a) == a


@given(sig_states)
def test_the_empty_state_is_the_bottom(a: SigState) -> None:
    assert merge_states(empty_state(SIG), a) == a


@given(sig_states, sig_states)
def test_merge_is_an_upper_bound_of_both_sides(a: SigState, b: SigState) -> None:
    ab = merge_states(a, b)
    assert merge_states(ab, a) == ab
    assert merge_states(ab, b) == ab
    assert ab.total >= max(a.total, b.total)
    assert ab.severity == max(a.severity, b.severity)


@given(sig_states, sig_states)
def test_merge_stays_commutative_above_the_origin_cap(a: SigState, b: SigState) -> None:
    tight = Limits(max_origins=2)
    assert merge_states(a, b, tight) == merge_states(b, a, tight)


def one_origin(count: int, first_seen: float, last_seen: float, host: str) -> SigState:
    record = OriginCount(count=count, first_seen=first_seen, last_seen=last_seen, host=host)
    return SigState(signature=SIG, counts={ORIGINS[0]: record})


def test_per_origin_join_takes_max_count_widest_window_and_the_leading_host() -> None:
    merged = merge_states(one_origin(3, 5.0, 9.0, "x"), one_origin(2, 1.0, 20.0, "z"))
    assert merged.counts[ORIGINS[0]] == OriginCount(
        count=3, first_seen=1.0, last_seen=20.0, host="x"
    )


def test_host_ties_on_count_go_to_the_larger_host_name() -> None:
    a, b = one_origin(2, 1.0, 1.0, "a"), one_origin(2, 1.0, 1.0, "b")
    assert merge_states(a, b).counts[ORIGINS[0]].host == "b"
    assert merge_states(b, a).counts[ORIGINS[0]].host == "b"


def test_detail_is_the_earliest_report_and_none_loses() -> None:
    early = SigState(signature=SIG, detail=make_report(timestamp=1.0, origin=ORIGINS[1]))
    late = SigState(signature=SIG, detail=make_report(timestamp=2.0, origin=ORIGINS[0]))
    assert merge_states(late, early).detail == early.detail
    assert merge_states(SigState(signature=SIG), late).detail == late.detail


def test_links_that_differ_only_in_severity_still_merge_the_same_both_ways() -> None:
    low = SigState(signature=SIG, link=make_link(severity=Severity.LOW))
    high = SigState(signature=SIG, link=make_link(severity=Severity.HIGH))
    assert merge_states(low, high) == merge_states(high, low) == high


def test_merging_states_of_different_signatures_is_a_local_error() -> None:
    with pytest.raises(LocalError, match="different signatures"):
        merge_states(SigState(signature=SIG), SigState(signature=OTHER_SIG))


# --- 2. the aggregate: order, duplicates, and a bad network -----------------------------

Record = Report | Occurrence | tuple[bytes, IssueLink]


def apply(agg: Aggregate, record: Record) -> SigState:
    """Feed one gossip record to a peer, as the node's message handler does."""
    if isinstance(record, Report):
        return agg.add_report(record)
    if isinstance(record, Occurrence):
        return agg.add_occurrence(record)
    signature, link = record
    return agg.set_link(signature, link)


occurrences = st.builds(
    make_occ,
    sig=st.sampled_from(SIGS),
    origin=st.sampled_from(ORIGINS),
    count=st.integers(0, 5),
    first_seen=times,
    host=hosts,
    severity=severities,
)
records: st.SearchStrategy[Record] = st.one_of(
    st.sampled_from(SIGS).flatmap(reports),
    occurrences,
    st.tuples(st.sampled_from(SIGS), links),
)


@given(st.lists(records, max_size=25), st.data())
def test_same_records_in_any_order_with_duplicates_give_the_same_aggregate(
    batch: list[Record], data: st.DataObject
) -> None:
    in_order, shuffled = Aggregate(), Aggregate()
    for record in batch:
        apply(in_order, record)
    repeats = data.draw(st.lists(st.sampled_from(batch), max_size=10)) if batch else []
    for record in data.draw(st.permutations(batch + repeats)):
        apply(shuffled, record)
    assert shuffled.snapshot() == in_order.snapshot()
    assert shuffled.digest() == in_order.digest()


def test_a_repeated_record_returns_the_same_state_object() -> None:
    agg = Aggregate()
    first = agg.add_occurrence(make_occ(count=3))
    assert agg.add_occurrence(make_occ(count=3)) is first
    assert agg.add_occurrence(make_occ(count=2)) is first  # an older cumulative count


def test_a_report_counts_raises_severity_and_becomes_the_detail() -> None:
    agg = Aggregate()
    agg.add_occurrence(make_occ(count=1, severity=Severity.LOW))
    assert agg.get(SIG) == SigState(
        signature=SIG,
        counts={ORIGINS[0]: OriginCount(count=1, first_seen=100.0, last_seen=100.0, host="h1")},
        severity=Severity.LOW,
    )
    report = make_report(count=2, timestamp=150.0, severity=Severity.HIGH)
    state = agg.add_report(report)
    assert state.detail == report
    assert state.total == 2
    assert state.severity == Severity.HIGH
    assert state.last_seen == 150.0


def test_anti_entropy_by_digest_makes_two_peers_equal() -> None:
    a, b = Aggregate(), Aggregate()
    a.add_report(make_report(sig=SIG))
    b.add_occurrence(make_occ(sig=SIG, origin=ORIGINS[1], count=4))
    b.add_occurrence(make_occ(sig=OTHER_SIG))
    to_b, to_a = a.delta_for(b.digest()), b.delta_for(a.digest())
    for state in to_b:
        b.merge_state(state)
    for state in to_a:
        a.merge_state(state)
    assert a.snapshot() == b.snapshot()
    assert a.digest() == b.digest()
    assert a.delta_for(b.digest()) == []
    merged = a.get(SIG)
    assert merged is not None
    assert merged.total == 5


def test_digests_tell_apart_states_with_equal_totals() -> None:
    a, b = Aggregate(), Aggregate()
    a.add_occurrence(make_occ(origin=ORIGINS[0], count=3))
    b.add_occurrence(make_occ(origin=ORIGINS[1], count=3))
    [summary_a], [summary_b] = a.digest(), b.digest()
    assert summary_a[:4] == summary_b[:4] == (SIG, 3, -1, -1)  # totals and links alike...
    assert summary_a.fingerprint != summary_b.fingerprint  # ...but the states differ
    for state in b.delta_for(a.digest()):
        a.merge_state(state)
    merged = a.get(SIG)
    assert merged is not None
    assert merged.total == 6


def test_malformed_input_is_a_local_error() -> None:
    agg = Aggregate()
    with pytest.raises(LocalError):
        agg.add_occurrence(make_occ(first_seen=math.nan))
    with pytest.raises(LocalError):
        agg.add_occurrence(make_occ(count=-1))
    with pytest.raises(LocalError, match="another signature"):
        agg.merge_state(SigState(signature=OTHER_SIG, detail=make_report(sig=SIG)))
    with pytest.raises(LocalError):
        Aggregate(Limits(max_signatures=0))
    assert len(agg) == 0


class MeshCluster(RuleBasedStateMachine):
    """N pure peers gossiping over a network that drops, duplicates, reorders and partitions.

    Each peer is also an origin (its own spool). Its k-th failure of a
    signature is a full report the first time and a cumulative ``occ`` after,
    applied locally and broadcast. Any peer may lead: a leader announces issue
    links under a fresh, higher term. At the end the partition heals, every
    peer runs one anti-entropy round with every other, and all must agree on
    exactly what happened.
    """

    N = 3

    def __init__(self) -> None:
        super().__init__()
        self.peers = [Aggregate() for _ in range(self.N)]
        self.clock = 0.0
        self.counts: dict[tuple[int, bytes], int] = {}
        self.first_time: dict[tuple[int, bytes], float] = {}
        self.seq = [0] * self.N
        self.sent_reports: list[Report] = []
        self.sent_severity: dict[bytes, Severity] = {}
        self.links: dict[bytes, IssueLink] = {}
        self.term = 0
        self.leader: int | None = None
        self.side = [0] * self.N
        self.pending: list[tuple[int, int, Record | list[SigState]]] = []

    def broadcast(self, src: int, payload: Record) -> None:
        self.pending.extend((src, dst, payload) for dst in range(self.N) if dst != src)

    @rule(
        peer=st.integers(0, N - 1),
        sig=st.sampled_from(SIGS[:2]),
        dt=st.integers(0, 50),
        sev=severities,
    )
    def fail(self, peer: int, sig: bytes, dt: int, sev: Severity) -> None:
        self.clock += dt
        key = (peer, sig)
        count = self.counts[key] = self.counts.get(key, 0) + 1
        self.seq[peer] += 1
        self.sent_severity[sig] = max(self.sent_severity.get(sig, Severity.LOW), sev)
        record: Record
        if count == 1:
            self.first_time[key] = self.clock
            record = make_report(
                sig=sig,
                origin=ORIGINS[peer],
                seq=self.seq[peer],
                timestamp=self.clock,
                host=f"h{peer}",
                severity=sev,
            )
            self.sent_reports.append(record)
        else:
            record = make_occ(
                sig=sig,
                origin=ORIGINS[peer],
                count=count,
                first_seen=self.first_time[key],
                last_seen=self.clock,
                host=f"h{peer}",
                severity=sev,
            )
        apply(self.peers[peer], record)
        self.broadcast(peer, record)

    @rule(peer=st.integers(0, N - 1), sig=st.sampled_from(SIGS[:2]), closed=st.booleans())
    def lead_and_announce(self, peer: int, sig: bytes, closed: bool) -> None:
        self.term += 1
        self.leader = peer
        known = self.peers[peer].get(sig)
        link = make_link(
            term=self.term,
            state="closed" if closed else "open",
            synced_total=0 if known is None else known.total,
            synced_at=self.clock,
        )
        self.links[sig] = link
        apply(self.peers[peer], (sig, link))
        self.broadcast(peer, (sig, link))

    @rule(i=st.integers(0, 1000))
    def deliver(self, i: int) -> None:
        if self.pending:
            src, dst, payload = self.pending.pop(i % len(self.pending))  # any order
            if self.side[src] != self.side[dst]:
                return  # lost in the partition
            if isinstance(payload, list):
                for state in payload:
                    self.peers[dst].merge_state(state)
            else:
                apply(self.peers[dst], payload)

    @rule(i=st.integers(0, 1000))
    def drop(self, i: int) -> None:
        if self.pending:
            self.pending.pop(i % len(self.pending))

    @rule(i=st.integers(0, 1000))
    def duplicate(self, i: int) -> None:
        if self.pending:
            self.pending.append(self.pending[i % len(self.pending)])

    @rule(sides=st.lists(st.integers(0, 1), min_size=N, max_size=N))
    def partition(self, sides: list[int]) -> None:
        self.side = sides

    @rule()
    def heal(self) -> None:
        self.side = [0] * self.N

    @rule(src=st.integers(0, N - 1), dst=st.integers(0, N - 1))
    def gossip_digest(self, src: int, dst: int) -> None:
        """A partial anti-entropy exchange, itself subject to the network."""
        if src != dst:
            self.pending.append((src, dst, self.peers[src].delta_for(self.peers[dst].digest())))

    def teardown(self) -> None:
        self.heal()
        old_leader = None if self.leader is None else self.peers[self.leader].snapshot()
        # One full anti-entropy round, every delta computed before any is applied.
        deltas = [
            (dst, self.peers[src].delta_for(self.peers[dst].digest()))
            for dst in range(self.N)
            for src in range(self.N)
            if src != dst
        ]
        for dst, states in deltas:
            for state in states:
                self.peers[dst].merge_state(state)

        first = self.peers[0].snapshot()
        for peer in self.peers[1:]:
            assert peer.snapshot() == first, "peers did not converge"
        assert set(first) == {sig for _, sig in self.counts} | set(self.links)
        for sig, state in first.items():
            truth = {ORIGINS[p]: n for (p, s), n in self.counts.items() if s == sig}
            assert {origin: c.count for origin, c in state.counts.items()} == truth
            assert state.total == sum(truth.values())
            ours = [r for r in self.sent_reports if r.signature == sig]
            assert state.detail == min(
                ours, key=lambda r: (r.timestamp, r.origin, r.seq), default=None
            )
            assert state.link == self.links.get(sig)
            assert state.severity == self.sent_severity.get(sig, Severity.LOW)
        # Whoever leads next already knows everything the last leader knew.
        if old_leader is not None:
            for peer in self.peers:
                for sig, known in old_leader.items():
                    mine = peer.get(sig)
                    assert mine is not None
                    assert merge_states(mine, known) == mine


TestMeshCluster = MeshCluster.TestCase
TestMeshCluster.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# --- 3. bundling: what the leader does, and when -------------------------------------

POLICY = BundlePolicy(settle=5.0, window=900.0)


def seen(
    *occs: Occurrence, detail: Report | None = None, link: IssueLink | None = None
) -> SigState:
    agg = Aggregate()
    if detail is not None:
        agg.add_report(detail)
    for occ in occs:
        agg.add_occurrence(occ)
    if link is not None:
        agg.set_link(SIG, link)
    state = agg.get(SIG)
    assert state is not None
    return state


def test_an_issue_opens_once_the_signature_has_settled() -> None:
    state = seen(detail=make_report(timestamp=100.0))
    assert plan(state, 104.9, POLICY) is None
    assert plan(state, 105.0, POLICY) == OpenIssue(state=state)
    assert next_due(state, POLICY) == 105.0


def test_flush_opens_at_once() -> None:
    state = seen(detail=make_report(timestamp=100.0))
    assert plan(state, 100.0, POLICY, flush=True) == OpenIssue(state=state)


def test_no_issue_without_the_full_report_even_on_flush() -> None:
    state = seen(make_occ(count=9))
    assert plan(state, 1e9, POLICY, flush=True) is None
    assert next_due(state, POLICY) is None


def test_a_reporter_clock_ahead_of_the_leader_delays_opening_by_the_skew_only() -> None:
    state = seen(detail=make_report(timestamp=500.0))
    assert plan(state, 100.0, POLICY) is None  # "in the future": age counts as zero
    assert plan(state, 505.0, POLICY) == OpenIssue(state=state)
    # Any origin with a sane clock settles it.
    sane = make_occ(origin=ORIGINS[1], first_seen=90.0)
    state = seen(sane, detail=make_report(timestamp=500.0))
    assert plan(state, 100.0, POLICY) == OpenIssue(state=state)


def test_updates_are_bundled_per_window_and_need_news() -> None:
    agg = Aggregate()
    agg.add_report(make_report(count=3, timestamp=0.0))
    agg.set_link(SIG, make_link(synced_total=3, synced_at=1000.0))
    assert agg.due(1e9, POLICY) == []  # nothing new: never an update
    assert agg.next_due(POLICY) is None

    agg.add_occurrence(make_occ(count=5, first_seen=0.0, last_seen=1100.0))
    assert agg.due(1899.0, POLICY) == []
    [update] = agg.due(1900.0, POLICY)
    assert isinstance(update, UpdateIssue)
    assert update.state.total == 5

    # The leader posts the comment and records what the issue now shows.
    agg.set_link(SIG, make_link(synced_total=5, synced_at=1900.0))
    assert agg.due(1e9, POLICY) == []
    agg.add_occurrence(make_occ(count=6, first_seen=0.0, last_seen=2000.0))
    assert agg.due(2799.0, POLICY) == []
    assert [type(a) for a in agg.due(2800.0, POLICY)] == [UpdateIssue]
    assert agg.next_due(POLICY) == 2800.0


def test_flush_does_not_skip_the_bundle_window() -> None:
    """A dying process opens new issues at once, but updates stay one per window."""
    link = make_link(synced_total=3, synced_at=1000.0)
    state = seen(make_occ(count=4), link=link)
    assert plan(state, 1000.0, POLICY, flush=True) is None
    assert plan(state, 1000.0 + POLICY.window, POLICY, flush=True) == UpdateIssue(
        state=state, link=link
    )


def test_a_severity_rise_alone_is_news_for_an_open_issue() -> None:
    state = seen(
        *(make_occ(origin=o, host=h) for o, h in zip(ORIGINS, ["a", "b", "c"], strict=False)),
        link=make_link(synced_total=3, severity=Severity.MEDIUM),
    )
    assert effective_severity(state) == Severity.HIGH  # three hosts
    assert isinstance(plan(state, 1900.0, POLICY), UpdateIssue)


def test_a_closed_issue_with_new_occurrences_is_reopened_at_once() -> None:
    state = seen(
        make_occ(count=4), link=make_link(state="closed", synced_total=3, synced_at=1000.0)
    )
    assert state.link is not None
    assert plan(state, 0.0, POLICY) == ReopenIssue(state=state, link=state.link)
    assert next_due(state, POLICY) == -math.inf
    no_reopen = BundlePolicy(reopen_on_regression=False)
    assert plan(state, 1e9, no_reopen, flush=True) is None
    assert next_due(state, no_reopen) is None


def test_a_closed_issue_without_new_occurrences_stays_closed() -> None:
    state = seen(make_occ(count=3), link=make_link(state="closed", synced_total=3))
    assert plan(state, 1e9, POLICY, flush=True) is None


def test_a_stale_link_from_a_lower_term_does_not_overwrite() -> None:
    agg = Aggregate()
    newer = make_link(term=2, synced_at=10.0, number=8)
    agg.set_link(SIG, newer)
    state = agg.set_link(SIG, make_link(term=1, synced_at=99.0, number=7))
    assert state.link == newer
    later = make_link(term=2, synced_at=11.0, number=8)
    assert agg.set_link(SIG, later).link == later


def test_spread_escalates_severity() -> None:
    burst = seen(make_occ(count=60, first_seen=0.0, last_seen=60.0, severity=Severity.LOW))
    assert per_hour(burst) == 60.0  # a burst is not extrapolated past one hour
    assert effective_severity(burst) == Severity.HIGH
    slow = seen(make_occ(count=60, first_seen=0.0, last_seen=7200.0, severity=Severity.LOW))
    assert effective_severity(slow) == Severity.LOW


@given(
    sig_states,
    policies,
    st.lists(st.integers(-50, 50).map(float), max_size=8),
    st.none() | st.integers(-50, 50).map(float),
)
def test_next_due_is_exactly_when_plan_starts_acting(
    state: SigState, policy: BundlePolicy, probes: Sequence[float], heard: float | None
) -> None:
    due = next_due(state, policy, heard)
    if due is None:
        assert all(plan(state, t, policy, heard=heard) is None for t in probes)
        return
    if due == -math.inf:
        assert all(plan(state, t, policy, heard=heard) is not None for t in probes)
        return
    assert plan(state, due, policy, heard=heard) is not None
    assert plan(state, math.nextafter(due, -math.inf), policy, heard=heard) is None
    for t in probes:
        assert (plan(state, t, policy, heard=heard) is not None) == (t >= due)


def test_a_leader_behind_every_reporter_opens_on_its_own_clock() -> None:
    """First seen 90 s in the leader's future: without ``heard`` the leader
    waits out the skew; with it, the settle delay runs from when its store
    first held the signature."""
    policy = BundlePolicy(settle=5.0, window=60.0)
    state = seen(detail=make_report(timestamp=1_090.0))
    assert plan(state, 1_005.0, policy) is None
    assert isinstance(plan(state, 1_005.0, policy, heard=1_000.0), OpenIssue)
    assert next_due(state, policy, heard=1_000.0) == 1_005.0
    assert next_due(state, policy, heard=2_000.0) == 1_095.0, "the earlier of the two"


@given(st.lists(records, max_size=15), policies, st.integers(0, 100).map(float))
def test_due_lists_every_planned_action_sorted_by_signature(
    batch: list[Record], policy: BundlePolicy, now: float
) -> None:
    agg = Aggregate()
    for record in batch:
        apply(agg, record)
    actions: list[Action] = agg.due(now, policy)
    expected = [a for s in agg.states() if (a := plan(s, now, policy)) is not None]
    assert actions == sorted(expected, key=lambda a: a.state.signature)


# --- 4. bounds -------------------------------------------------------------------


def test_the_origin_cap_keeps_the_biggest_counters_and_counts_the_rest() -> None:
    agg = Aggregate(Limits(max_origins=2))
    for origin, count in zip(ORIGINS, [5, 1, 3], strict=False):
        agg.add_occurrence(make_occ(origin=origin, count=count))
    state = agg.get(SIG)
    assert state is not None
    assert {o: c.count for o, c in state.counts.items()} == {ORIGINS[0]: 5, ORIGINS[2]: 3}
    assert (state.total, state.evicted_origins) == (8, 1)


def test_the_signature_cap_evicts_the_stalest_without_an_open_issue_first() -> None:
    agg = Aggregate(Limits(max_signatures=3))
    a, b, c, d, e = (bytes([i]) * 16 for i in range(10, 15))
    agg.add_occurrence(make_occ(sig=a, first_seen=10.0))
    agg.add_occurrence(make_occ(sig=b, first_seen=20.0))
    agg.add_occurrence(make_occ(sig=c, first_seen=30.0))
    agg.set_link(a, make_link())
    agg.add_occurrence(make_occ(sig=d, first_seen=40.0))
    assert {s.signature for s in agg} == {a, c, d}
    assert agg.evicted_signatures == 1
    agg.set_link(c, make_link())
    agg.set_link(d, make_link())
    agg.add_occurrence(make_occ(sig=e, first_seen=5.0))  # all open: the stalest overall goes
    assert {s.signature for s in agg} == {a, c, d}
    assert agg.evicted_signatures == 2


def test_origin_eviction_can_make_a_signature_stale_and_it_is_then_evicted_first() -> None:
    agg = Aggregate(Limits(max_signatures=2, max_origins=2))
    a, b, c, d = (bytes([i]) * 16 for i in range(10, 14))
    agg.add_occurrence(make_occ(sig=a, origin=ORIGINS[0], count=5, first_seen=1.0))
    agg.add_occurrence(make_occ(sig=a, origin=ORIGINS[1], count=1, first_seen=30.0))
    agg.add_occurrence(make_occ(sig=b, first_seen=10.0))
    agg.add_occurrence(make_occ(sig=c, first_seen=20.0))  # evicts b (a was seen at 30)
    assert {s.signature for s in agg} == {a, c}
    # A third origin of ``a`` pushes out the small counter that held its latest sighting.
    state = agg.add_occurrence(make_occ(sig=a, origin=ORIGINS[2], count=3, first_seen=2.0))
    assert (state.last_seen, state.evicted_origins) == (2.0, 1)
    agg.add_occurrence(make_occ(sig=d, first_seen=40.0))
    assert {s.signature for s in agg} == {c, d}
    assert agg.evicted_signatures == 2


def _naive_evict(model: dict[bytes, SigState], cap: int) -> int:
    def stalest(s: SigState) -> tuple[bool, float, bytes]:
        is_open = s.link is not None and s.link.state == "open"
        return (is_open, s.last_seen, s.signature)

    evicted = 0
    while len(model) > cap:
        del model[min(model.values(), key=stalest).signature]
        evicted += 1
    return evicted


many_sigs = st.integers(1, 6).map(lambda i: bytes([i]) * 16)
capped_records: st.SearchStrategy[Record] = st.one_of(
    st.builds(
        make_occ,
        sig=many_sigs,
        origin=st.sampled_from(ORIGINS),
        count=st.integers(0, 5),
        first_seen=times,
        last_seen=st.integers(0, 30).map(float),
    ),
    st.tuples(many_sigs, links),
)


@given(st.lists(capped_records, max_size=40), st.integers(1, 4), st.integers(1, 3))
def test_capped_aggregate_matches_a_naive_model(
    batch: list[Record], max_sigs: int, max_origins: int
) -> None:
    """The fast paths and lazy eviction heap agree with merge_states plus a linear scan."""
    limits = Limits(max_signatures=max_sigs, max_origins=max_origins)
    agg = Aggregate(limits)
    model: dict[bytes, SigState] = {}
    evicted = 0
    for record in batch:
        apply(agg, record)
        if isinstance(record, Occurrence):
            rec = OriginCount(
                count=record.count,
                first_seen=record.first_seen,
                last_seen=record.last_seen,
                host=record.host,
            )
            delta = SigState(
                signature=record.signature, counts={record.origin: rec}, severity=record.severity
            )
        else:
            assert isinstance(record, tuple)
            delta = SigState(signature=record[0], link=record[1], severity=Severity.LOW)
        sig = delta.signature
        model[sig] = merge_states(model.get(sig, empty_state(sig)), delta, limits)
        evicted += _naive_evict(model, max_sigs)
        assert agg.snapshot() == model
        assert agg.evicted_signatures == evicted


# -- saturation (mesh.bounds) -------------------------------------------------


def test_counts_at_the_wire_limit_saturate_the_total() -> None:
    """Three origins at 2**63 - 1 sum past 64 bits: the digest must still encode."""
    from mesh import wire
    from mesh.bounds import MAX_COUNT

    top = OriginCount(count=2**63 - 1, first_seen=0.0, last_seen=1.0, host="h")
    state = SigState(signature=b"s" * 16, counts={bytes([i]) * 16: top for i in range(3)})
    assert state.total == MAX_COUNT
    entry = wire.DigestEntry(
        signature=state.signature, total=state.total, link_term=-1, link_synced_total=-1
    )
    assert wire.decode(wire.encode(wire.DigestMsg(entries=(entry,)))) == wire.DigestMsg(
        entries=(entry,)
    )


def test_evicted_origins_saturate() -> None:
    from mesh.bounds import MAX_COUNT

    rec = OriginCount(count=1, first_seen=0.0, last_seen=1.0, host="h")
    a = SigState(signature=b"s" * 16, counts={b"a" * 16: rec}, evicted_origins=MAX_COUNT)
    b = SigState(signature=b"s" * 16, counts={b"b" * 16: rec})
    merged = merge_states(a, b, Limits(max_origins=1))
    assert merged.evicted_origins == MAX_COUNT
