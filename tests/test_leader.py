"""One leader round (node.leader.act): what is due goes to the sink once."""

from __future__ import annotations

from pathlib import Path

from github_sink.file_sink import FileSink
from mesh.aggregate import BundlePolicy, IssueLink
from mesh.report import Report
from mesh.store import Store
from node.leader import act

SIG = b"S" * 16


def report(ts: float) -> Report:
    return Report(
        origin=b"",
        seq=0,
        count=0,
        signature=SIG,
        kind="exception",
        exc_type="ValueError",
        message="boom",
        host="h",
        timestamp=ts,
    )


def test_a_round_opens_then_waits_for_the_window(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "issues")
    with Store.open(tmp_path / "s", policy=BundlePolicy(settle=5, window=60)) as store:
        store.merge_reports([store.spool(report(1000.0))])
        assert act(store, sink, now=1001.0, term=1).opened == 0  # settling
        assert act(store, sink, now=1005.0, term=1).opened == 1
        store.merge_reports([store.spool(report(1010.0))])
        assert act(store, sink, now=1010.0, term=1).updated == 0  # within the window
        assert act(store, sink, now=1065.0, term=1).updated == 1
        assert act(store, sink, now=1066.0, term=1).updated == 0


def test_acting_in_the_recorded_term_does_not_repeat_updates(tmp_path: Path) -> None:
    """Links written in term 5 (by an earlier leader) win over term-0 writes;
    a later round must act in term >= 5 or it would update on every round."""
    sink = FileSink(tmp_path / "issues")
    with Store.open(tmp_path / "s", policy=BundlePolicy(settle=0, window=0)) as store:
        store.merge_reports([store.spool(report(1000.0))])
        link = sink.open_issue(store.due_states(1000.0)[0], now=1000.0, term=5)
        store.set_link(SIG, link)
        store.merge_reports([store.spool(report(1001.0))])
        term = store.max_link_term()
        assert term == 5
        assert act(store, sink, now=1002.0, term=term).updated == 1
        assert act(store, sink, now=1003.0, term=term).updated == 0
        state = store.load_state(SIG)
        assert state is not None and state.link is not None
        assert (state.link.term, state.link.synced_total) == (5, 2)


def test_a_stale_term_would_repeat_forever(tmp_path: Path) -> None:
    """The failure the test above prevents, shown: term 0 never wins over term 5."""
    sink = FileSink(tmp_path / "issues")
    with Store.open(tmp_path / "s", policy=BundlePolicy(settle=0, window=0)) as store:
        store.merge_reports([store.spool(report(1000.0))])
        store.set_link(
            SIG,
            IssueLink(
                ref="r", number=1, url="u", state="open", term=5, synced_total=0, synced_at=0.0
            ),
        )
        assert act(store, sink, now=1.0, term=0).updated == 1
        assert act(store, sink, now=2.0, term=0).updated == 1  # the write lost: due again
