"""The file sink: one Markdown issue per signature, updated in place, reopened on regression."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from github_sink.errors import SinkRejected
from github_sink.file_sink import FileSink
from github_sink.render import MAX_BODY, marker, render_body, render_title
from mesh.report import Frame, Report
from mesh.severity import Severity
from mesh.sigstate import OriginCount, SigState

SIG = bytes.fromhex("0123456789abcdef0123456789abcdef")


def state(total: int = 1, *, hosts: tuple[str, ...] = ("web-1",), log_lines: int = 3) -> SigState:
    detail = Report(
        origin=b"O" * 16,
        seq=1,
        count=1,
        signature=SIG,
        kind="exception",
        exc_type="ValueError",
        message="invalid literal for int() with base 10: 'x42'",
        frames=(
            Frame(
                module="app.cli",
                function="main",
                filename="app/cli.py",
                lineno=10,
                in_app=True,
                line="run()",
            ),
            Frame(
                module="app.io",
                function="parse",
                filename="app/io.py",
                lineno=3,
                in_app=True,
                line="int(raw)",
            ),
        ),
        log_tail=tuple(f"INFO app: step {i}" for i in range(log_lines)),
        argv=("app", "import", "batch.csv"),
        app="app",
        host=hosts[0],
        timestamp=1_700_000_000.0,
        severity=Severity.MEDIUM,
    )
    per_host = max(1, total // len(hosts))
    counts = {
        bytes([i]) * 16: OriginCount(
            count=per_host, first_seen=1_700_000_000.0, last_seen=1_700_000_100.0, host=h
        )
        for i, h in enumerate(hosts)
    }
    return SigState(signature=SIG, detail=detail, counts=counts, severity=Severity.MEDIUM)


def test_open_writes_one_markdown_file_and_an_index(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    link = sink.open_issue(state(), now=1.0, term=0)
    index = json.loads((tmp_path / "index.json").read_text())
    entry = index["issues"][SIG.hex()]
    assert link.number == entry["number"] == 1
    assert link.state == "open" and link.synced_total == 1
    text = (tmp_path / entry["file"]).read_text()
    assert text.startswith("# [errmesh] ValueError: invalid literal for int() with base <n>: <str>")
    assert marker(SIG) in text
    assert "**Labels:** errmesh, bug, severity:medium" in text
    for section in (
        "## Stack trace",
        "## Preceding logs",
        "## Hosts",
        'File "app/io.py", line 3, in parse',
    ):
        assert section in text


def test_open_is_idempotent_per_signature(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    first = sink.open_issue(state(), now=1.0, term=0)
    again = sink.open_issue(state(total=2), now=2.0, term=1)
    assert again.number == first.number
    assert len(sink.read_index()["issues"]) == 1
    assert list(tmp_path.glob("*.md")) == [tmp_path / f"{SIG.hex()[:12]}.md"]


def test_update_rewrites_counts_and_adds_a_comment(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    link = sink.open_issue(state(), now=1.0, term=0)
    newer = sink.update_issue(
        state(total=6, hosts=("web-1", "web-2", "web-3")), link, now=2.0, term=0
    )
    assert newer.synced_total == 6
    text = (tmp_path / f"{SIG.hex()[:12]}.md").read_text()
    assert "**Occurrences:** 6 on 3 hosts" in text
    assert "**+5** new occurrences" in text
    assert sink.read_index()["issues"][SIG.hex()]["total"] == 6


def test_closed_issue_is_observed_and_reopened_as_regression(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    link = sink.open_issue(state(), now=1.0, term=0)
    assert sink.observe([SIG]) == {}  # nobody changed it
    sink.close(SIG.hex()[:6], now=2.0)
    assert sink.observe([SIG, b"\0" * 16]) == {SIG: "closed"}
    reopened = sink.reopen_issue(state(total=2), link, now=3.0, term=0)
    assert reopened.state == "open"
    entry = sink.read_index()["issues"][SIG.hex()]
    assert "regression" in entry["labels"]
    assert "**Regression:**" in (tmp_path / entry["file"]).read_text()


def test_closing_an_unknown_or_ambiguous_prefix_is_refused(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    with pytest.raises(SinkRejected, match="0 issues match"):
        sink.close("ffff", now=1.0)


def test_body_never_exceeds_githubs_limit() -> None:
    huge = state(log_lines=0)
    assert huge.detail is not None
    huge_detail = huge.detail.replace(
        log_tail=tuple("L" * 2000 for _ in range(50)),
        frames=tuple(
            Frame(
                module="m", function=f"f{i}", filename="m.py", lineno=i, in_app=True, line="x" * 300
            )
            for i in range(64)
        ),
    )
    body = render_body(
        SigState(signature=SIG, detail=huge_detail, counts=huge.counts), max_chars=MAX_BODY
    )
    assert len(body) <= MAX_BODY
    assert "earlier lines cut by errmesh" in body
    small = render_body(
        SigState(signature=SIG, detail=huge_detail, counts=huge.counts), max_chars=8_000
    )
    assert len(small) <= 8_000 and marker(SIG) in small


def test_title_is_bounded_and_single_line() -> None:
    s = state()
    assert s.detail is not None
    long = SigState(signature=SIG, detail=s.detail.replace(message="a b\n" * 400), counts=s.counts)
    title = render_title(long)
    assert len(title) <= 256 and "\n" not in title


def test_update_or_reopen_of_a_wiped_folder_opens_again(tmp_path: Path) -> None:
    """A link whose issue file is gone (folder wiped or moved) opens it again, no deadlock."""
    first = FileSink(tmp_path / "old").open_issue(state(), now=1.0, term=0)
    sink = FileSink(tmp_path / "new")
    updated = sink.update_issue(state(total=2), first, now=2.0, term=0)
    assert (updated.number, updated.synced_total) == (1, 2)
    closed = dataclasses.replace(first, state="closed")
    reopened = FileSink(tmp_path / "newer").reopen_issue(state(total=3), closed, now=3.0, term=0)
    assert reopened.state == "open"


# -- every relay's copy (DECISIONS 36)


def test_a_folder_that_never_held_the_issue_updates_it_under_its_number(tmp_path: Path) -> None:
    """A new leader's folder lacks issue #3 of an earlier leader: it keeps #3, not #1."""
    first = FileSink(tmp_path / "old").open_issue(state(), now=1.0, term=1)
    third = dataclasses.replace(first, number=3)
    sink = FileSink(tmp_path / "new")
    assert sink.update_issue(state(total=2), third, now=2.0, term=2).number == 3
    closed = dataclasses.replace(third, state="closed")
    other = FileSink(tmp_path / "newer")
    assert other.reopen_issue(state(total=3), closed, now=3.0, term=2).number == 3
    assert "#3" in (tmp_path / "newer" / f"{SIG.hex()[:12]}.md").read_text()


def test_a_copy_shows_the_leaders_issues_and_never_an_older_link(tmp_path: Path) -> None:
    leader, copy = FileSink(tmp_path / "leader"), FileSink(tmp_path / "copy")
    link = leader.open_issue(state(), now=1.0, term=1)
    assert copy.mirror([dataclasses.replace(state(), link=link)], now=1.5) == 1
    entry = copy.read_index()["issues"][SIG.hex()]
    assert (entry["number"], entry["state"], entry["total"]) == (1, "open", 1)
    newer = leader.update_issue(state(total=6), link, now=2.0, term=1)
    assert copy.mirror([dataclasses.replace(state(total=6), link=newer)], now=2.5) == 1
    index_file = tmp_path / "copy" / "index.json"
    written = index_file.stat().st_mtime_ns
    assert copy.mirror([dataclasses.replace(state(total=6), link=link)], now=3.0) == 0  # late
    assert copy.mirror([dataclasses.replace(state(total=6), link=newer)], now=3.0) == 0  # again
    assert index_file.stat().st_mtime_ns == written  # not even rewritten
    entry = copy.read_index()["issues"][SIG.hex()]
    assert entry["total"] == 6
    assert "**+5** new occurrences" in (tmp_path / "copy" / entry["file"]).read_text()
    reopened = dataclasses.replace(newer, state="closed", synced_at=3.0)
    copy.mirror([dataclasses.replace(state(total=6), link=reopened)], now=3.5)
    assert copy.read_index()["issues"][SIG.hex()]["state"] == "closed"
    again = dataclasses.replace(reopened, state="open", synced_total=7, synced_at=4.0)
    copy.mirror([dataclasses.replace(state(total=7), link=again)], now=4.5)
    entry = copy.read_index()["issues"][SIG.hex()]
    assert entry["state"] == "open" and "regression" in entry["labels"]


def test_a_close_in_a_copy_is_a_change_until_a_link_shows_it(tmp_path: Path) -> None:
    leader, copy = FileSink(tmp_path / "leader"), FileSink(tmp_path / "copy")
    link = leader.open_issue(state(), now=1.0, term=1)
    copy.mirror([dataclasses.replace(state(), link=link)], now=1.5)
    assert copy.changes() == {}
    copy.close(SIG.hex()[:6], now=2.0)
    assert copy.changes() == {SIG: "closed"}
    # A newer link that does not show the close yet keeps the close pending.
    newer = leader.update_issue(state(total=2), link, now=2.5, term=1)
    copy.mirror([dataclasses.replace(state(total=2), link=newer)], now=2.6)
    assert copy.changes() == {SIG: "closed"}
    closed = dataclasses.replace(newer, state="closed", synced_at=3.0)
    copy.mirror([dataclasses.replace(state(total=2), link=closed)], now=3.5)
    assert copy.changes() == {}
    assert copy.read_index()["issues"][SIG.hex()]["state"] == "closed"


def test_a_close_on_a_mesh_machine_without_a_relay_says_where_to_run_it(tmp_path: Path) -> None:
    """Its folder is not the mesh's copy and nobody would send the close: the real CLI says so."""
    folder = tmp_path / "data" / "c" / "issues"
    FileSink(folder).open_issue(state(), now=1.0, term=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERRMESH_", "XDG_"))}
    env.update(
        HOME=str(tmp_path),
        PYTHONPATH=str(ROOT),
        ERRMESH_PEERS="/ip4/127.0.0.1/tcp/4747/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
    )

    def close(prefix: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "node", "--cluster", "c"),
                *("--state-dir", str(tmp_path / "s"), "--data-dir", str(tmp_path / "data")),
                *("issues", "close", prefix),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    missing = close("ffff")
    assert missing.returncode == 1
    assert "0 issues match" in missing.stderr and "on a relay's machine" in missing.stderr
    done = close(SIG.hex()[:6])
    assert done.returncode == 0, done.stderr
    assert "here only" in done.stderr and "on a relay's machine" in done.stderr
    assert FileSink(folder).read_index()["issues"][SIG.hex()]["state"] == "closed"


def test_a_folder_refuses_to_number_past_the_ceiling(tmp_path: Path) -> None:
    """A key holder's link at the highest number a link may carry: the next
    number could not be sent, so the sink says so instead of writing it."""
    from mesh.bounds import MAX_NUMBER

    sink = FileSink(tmp_path / "issues")
    sink.number_above(MAX_NUMBER)
    with pytest.raises(SinkRejected, match="no issue number left"):
        sink.open_issue(state(), now=1.0, term=1)
    sink = FileSink(tmp_path / "other")
    sink.number_above(MAX_NUMBER - 1)
    assert sink.open_issue(state(), now=1.0, term=1).number == MAX_NUMBER
