"""One leader round (node.leader.act): what is due goes to the sink once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from github_sink.file_sink import FileSink
from mesh.bundling import BundlePolicy
from mesh.report import Report
from mesh.sigstate import IssueLink
from mesh.store import Store
from node.leader import act

SIG = b"S" * 16


def report(ts: float, sig: bytes = SIG) -> Report:
    return Report(
        origin=b"",
        seq=0,
        count=0,
        signature=sig,
        kind="exception",
        exc_type="ValueError",
        message="boom" if sig == SIG else f"boom {sig.hex()[:4]}",
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


# -- the file sink in a mesh: one numbering for every leader (DECISIONS 36)


def _sigs(n: int) -> list[bytes]:
    return [bytes([0x10 * (i + 1)]) * 16 for i in range(n)]


def _numbers(store: Store) -> dict[bytes, int | None]:
    return {s.signature: s.link.number for s in store.states() if s.link is not None}


def test_a_new_leader_continues_the_replicated_numbering_not_its_folders(
    tmp_path: Path,
) -> None:
    """Leader A numbered three issues; B (its own, empty folder) opens the fourth as #4."""
    sigs = _sigs(4)
    policy = BundlePolicy(settle=0, window=0)
    with Store.open(tmp_path / "s", policy=policy) as store:
        store.merge_reports([store.spool(report(1000.0, s)) for s in sigs[:3]])
        assert act(store, FileSink(tmp_path / "A"), now=1001.0, term=1).opened == 3
        store.merge_reports([store.spool(report(1002.0, sigs[3]))])
        store.merge_reports([store.spool(report(1002.0, sigs[0]))])
        b = FileSink(tmp_path / "B")
        result = act(store, b, now=1003.0, term=2)
        assert (result.opened, result.updated) == (1, 1)
        numbers = _numbers(store)
        assert sorted(numbers.values()) == [1, 2, 3, 4]  # distinct, continued
        assert numbers[sigs[3]] == 4
        # B updated the first issue under its number, not as a new #1 of its folder.
        entry = b.read_index()["issues"][sigs[0].hex()]
        assert (entry["number"], entry["total"]) == (numbers[sigs[0]], 2)
        assert {s.signature for s in result.links} == {sigs[0], sigs[3]}


def test_an_old_issue_closed_here_is_not_reopened_by_a_stale_folder(tmp_path: Path) -> None:
    """A folder still showing a closed link must not undo a newer reopen from the mesh."""
    sig = _sigs(1)[0]
    policy = BundlePolicy(settle=0, window=1000)
    with Store.open(tmp_path / "s", policy=policy) as store:
        store.merge_reports([store.spool(report(1000.0, sig))])
        sink = FileSink(tmp_path / "A")
        act(store, sink, now=1001.0, term=1)
        sink.close(sig.hex()[:8], now=1002.0)
        act(store, sink, now=1003.0, term=1, flush=[sig])  # observed: the link says closed
        state = store.load_state(sig)
        assert state is not None and state.link is not None and state.link.state == "closed"
        # Another leader (term 2) reopened it; this folder has not shown that yet.
        reopened = dataclasses.replace(state.link, state="open", term=2, synced_at=1004.0)
        store.set_link(sig, reopened)
        act(store, sink, now=1005.0, term=2, flush=[sig])
        after = store.load_state(sig)
        assert after is not None and after.link is not None
        assert after.link.state == "open"


def _claim(store: Store, sig: bytes, number: int, term: int) -> None:
    store.set_link(
        sig,
        IssueLink(
            ref=f"file:/x/{sig.hex()[:12]}.md",
            number=number,
            url="file:///x",
            state="open",
            term=term,
            synced_total=1,
            synced_at=1000.0 + term,
        ),
    )


@pytest.mark.parametrize(
    ("terms", "keeper"),
    [((3, 4), 1), ((4, 3), 0), ((3, 3), 0)],  # higher term keeps it; a tie: lower signature
)
def test_two_leaders_numbering_alike_are_renumbered_by_term_then_signature(
    tmp_path: Path, terms: tuple[int, int], keeper: int
) -> None:
    """A partition's two leaders both gave #2 to different signatures; after the heal the
    leader keeps the claim of the higher term (then the lower signature) and renumbers the
    other above every known number, so every relay converges on distinct numbers."""
    a, b, c = _sigs(3)
    with Store.open(tmp_path / "s", policy=BundlePolicy(settle=0, window=1000)) as store:
        store.merge_reports([store.spool(report(1000.0, s)) for s in (a, b, c)])
        _claim(store, c, 1, 1)
        _claim(store, a, 2, terms[0])
        _claim(store, b, 2, terms[1])
        sink = FileSink(tmp_path / "issues")
        sink.mirror(store.states(), now=1001.0)
        result = act(store, sink, now=1010.0, term=5)
        assert result.renumbered == 1
        numbers = _numbers(store)
        loser = (a, b)[1 - keeper]
        assert numbers == {c: 1, (a, b)[keeper]: 2, loser: 3}
        loser_state = store.load_state(loser)
        assert loser_state is not None and loser_state.link is not None
        assert loser_state.link.term == 5  # wins over the old claim on every relay
        assert act(store, sink, now=1011.0, term=5).renumbered == 0
        entries = sink.read_index()["issues"]
        assert sorted(e["number"] for e in entries.values()) == [1, 2, 3]
