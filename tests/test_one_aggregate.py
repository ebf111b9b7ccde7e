"""The store the relay runs on and the aggregate the property tests prove agree.

``mesh.store.Store`` persists what ``mesh.aggregate`` decides (the join,
the converters from records to states, the eviction order); these tests
drive both with the same random records, one record per store call as the
relay's receive path merges them, and require the same states, the same
survivors at the signature cap and the same eviction count. A real SQLite
file per example.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_aggregate import SIGS, links, make_link, make_report, occurrences, reports, sig_states

from mesh.aggregate import Aggregate
from mesh.report import Occurrence, Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, Limits, SigState, state_of_occurrence
from mesh.store import Store

Record = Report | Occurrence | tuple[bytes, IssueLink] | SigState

#: Tight caps, so that origins and signatures are evicted often.
TIGHT = Limits(max_origins=2, max_signatures=2)

records: st.SearchStrategy[Record] = st.one_of(
    st.sampled_from(SIGS).flatmap(reports),
    occurrences,
    st.tuples(st.sampled_from(SIGS), links),
    st.tuples(st.sampled_from(SIGS), sig_states).map(
        lambda pair: SigState(
            signature=pair[0],
            detail=None,  # a detail must carry its state's signature
            counts=pair[1].counts,
            severity=pair[1].severity,
            link=pair[1].link,
            evicted_origins=pair[1].evicted_origins,
        )
    ),
)


def feed_store(store: Store, record: Record) -> None:
    """As the relay merges it: a report durably, the rest as gossip."""
    if isinstance(record, Report):
        store.merge_reports([record])
    elif isinstance(record, Occurrence):
        store.merge_states([state_of_occurrence(record)], durable=False)
    elif isinstance(record, SigState):
        store.merge_states([record], durable=False)
    else:
        store.set_link(*record)


def feed_aggregate(agg: Aggregate, record: Record) -> None:
    if isinstance(record, Report):
        agg.add_report(record)
    elif isinstance(record, Occurrence):
        agg.add_occurrence(record)
    elif isinstance(record, SigState):
        agg.merge_state(record)
    else:
        agg.set_link(*record)


def held(store: Store) -> dict[bytes, SigState]:
    return {state.signature: state for state in store.states()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, max_size=30), st.sampled_from([Limits(), TIGHT]))
def test_the_store_and_the_aggregate_hold_the_same_states(
    sequence: list[Record], limits: Limits
) -> None:
    agg = Aggregate(limits)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Store.open(Path(tmp), sync="normal", limits=limits) as store,
    ):
        for record in sequence:
            feed_store(store, record)
            feed_aggregate(agg, record)
        assert held(store) == agg.snapshot()
        assert store.statistics().signatures_evicted == agg.evicted_signatures


def test_a_low_report_is_low_in_the_store_too(tmp_path: Path) -> None:
    """The store started every new state at the dataclass default, MEDIUM."""
    report = make_report(severity=Severity.LOW)
    agg = Aggregate()
    with Store.open(tmp_path) as store:
        (stored,) = store.merge_reports([report])
        assert stored.severity == agg.add_report(report).severity == Severity.LOW


def test_a_link_alone_does_not_raise_the_severity(tmp_path: Path) -> None:
    """A link records what an issue shows; only occurrences make a state severe."""
    report = make_report(severity=Severity.LOW)
    link = make_link(severity=Severity.CRITICAL)  # what the issue shows
    with Store.open(tmp_path) as store:
        store.set_link(report.signature, link)
        (stored,) = store.merge_reports([report])
    assert stored.severity == Severity.LOW


def test_at_the_cap_the_store_keeps_open_issues_as_the_aggregate_does(tmp_path: Path) -> None:
    """Eviction prefers signatures without an open issue, however stale the open one."""
    stale_open = make_report(sig=SIGS[0], timestamp=1.0)
    fresh = [make_report(sig=sig, timestamp=50.0 + i) for i, sig in enumerate(SIGS[1:])]
    with Store.open(tmp_path, limits=Limits(max_signatures=2)) as store:
        store.merge_reports([stale_open])
        store.set_link(SIGS[0], make_link(state="open"))
        for report in fresh:
            store.merge_reports([report])
        kept = set(held(store))
    assert SIGS[0] in kept, "the open issue's signature stays"
    assert kept == {SIGS[0], SIGS[2]}
