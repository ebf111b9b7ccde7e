"""The relay's dashboard page as HTML, and the per-minute ring its sparklines read.

Reports are attacker-influenced text: a message or a host name that holds
markup must reach the page as text, never as markup (the browser test,
``test_dashboard_browser.py``, checks the same in Chromium).
"""

from __future__ import annotations

import dataclasses
import html.parser
import re
from pathlib import Path
from typing import Any

from github_sink.budget import BudgetLimits
from github_sink.github import GitHubSink, GitHubSinkOptions
from github_sink.settings import GitHubSettings
from mesh.report import Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, SigState, join, state_of_report
from node.activity import Activity
from node.dashboard import add_pulls, assemble, github_budget, render_page, sparkline

NOW = 1_800_000_030.0  # 30 s into a minute
EVIL = '<script>window.pwned = 1</script><img src=x onerror="alert(1)">'


def report(
    sig: bytes,
    *,
    message: str = "boom",
    host: str = "web-1",
    at: float = NOW - 30,
    seq: int = 1,
    origin: bytes = b"O" * 16,
) -> Report:
    return Report(
        origin=origin,
        seq=seq,
        count=seq,
        signature=sig,
        kind="exception",
        exc_type="ValueError",
        message=message,
        host=host,
        timestamp=at,
        severity=Severity.HIGH,
    )


def status(**changes: Any) -> dict[str, Any]:
    """The keys of ``/status`` the page reads, as a relay writes them."""
    base: dict[str, Any] = {
        "peer_id": "12D3KooWRelayOne",
        "role": "leader",
        "leader": "12D3KooWRelayOne",
        "term": 3,
        "members": [],
        "spool_pending": 0,
        "signatures": 1,
        "rejected": {},
        "banned": [],
    }
    return {**base, **changes}


def page(states: list[SigState], activity: Activity | None = None, **status_changes: Any) -> str:
    data = assemble(status(**status_changes), states, activity or Activity(), None, now=NOW)
    return render_page(data)


class _Elements(html.parser.HTMLParser):
    """The tags a browser would build from the page, with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(text)
    return parser.tags


def test_markup_in_a_report_reaches_the_page_as_text() -> None:
    state = state_of_report(report(b"A" * 16, message=EVIL, host='"><b>host</b>'))
    text = page([state], rejected={"<i>reason</i>": 2}, peer_id="<peer>")
    tags = [tag for tag, _ in elements(text)]
    assert tags.count("script") == 1  # the page's own poller, nothing from the report
    assert "img" not in tags and "b" not in tags and "i" not in tags
    assert not any("onerror" in attrs for _, attrs in elements(text))
    assert "ValueError: &lt;script&gt;window.pwned = " in text  # the title (numbers normalised)
    assert "&quot;&gt;&lt;b&gt;host&lt;/b&gt;" in text
    assert "&lt;i&gt;reason&lt;/i&gt; 2" in text


def test_a_signature_shows_its_counts_hosts_severity_times_and_issue() -> None:
    first = state_of_report(report(b"A" * 16, host="web-1", at=NOW - 7200))
    state = join(first, state_of_report(report(b"A" * 16, host="web-2", origin=b"P" * 16)))
    link = IssueLink(
        ref="7",
        number=7,
        url="https://github.com/acme/shop/issues/7",
        state="open",
        term=3,
        synced_total=2,
        synced_at=NOW,
    )
    text = page([dataclasses.replace(state, link=link)])
    row = re.search(r'<tr class="sig sev-high">.*?</tr>', text)
    assert row is not None, text
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
    assert "ValueError: boom" in cells[0]
    assert cells[1:4] == ["2", "high", "web-1, web-2"]
    assert ">2h ago<" in cells[4] and ">30s ago<" in cells[5]
    assert cells[7] == '<a href="https://github.com/acme/shop/issues/7">#7 open</a>'


def test_only_an_http_issue_url_becomes_a_link() -> None:
    link = IssueLink(
        ref="1", number=1, url="javascript:alert(1)", state="open", term=1, synced_total=1,
        synced_at=NOW,
    )  # fmt: skip
    state = dataclasses.replace(state_of_report(report(b"A" * 16)), link=link)
    text = page([state])
    assert not any(tag == "a" for tag, _ in elements(text))
    assert "#1 open" in text


def test_the_sparkline_has_one_bar_per_busy_minute_scaled_to_the_busiest() -> None:
    svg = sparkline([0] * 57 + [1, 0, 4])
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert heights == [5.0, 20.0]
    assert "<title>5 in the last hour</title>" in svg
    assert "<rect" not in sparkline([0] * 60)


def test_the_ring_puts_growth_in_the_minute_it_was_last_seen() -> None:
    sig = b"A" * 16
    activity = Activity()
    one = state_of_report(report(sig, at=NOW - 600))
    activity.noted([one], NOW - 590)
    two = join(one, state_of_report(report(sig, at=NOW - 5, seq=3)))  # two more occurrences
    activity.noted([two, two], NOW)  # noted twice (anti-entropy repeats it): counted once
    series = activity.series(sig, NOW)
    assert len(series) == 60 and sum(series) == 3
    assert series[-1] == 2 and series[-11] == 1
    assert sum(activity.series(sig, NOW + 3600)) == 0  # an hour later, gone


def test_a_state_first_noted_after_a_restart_counts_only_if_it_began_within_the_hour() -> None:
    recent = state_of_report(report(b"R" * 16, at=NOW - 60))
    old = join(
        state_of_report(report(b"O" * 16, at=NOW - 86400)),
        state_of_report(report(b"O" * 16, at=NOW - 60, seq=9)),
    )
    activity = Activity()
    activity.noted([recent, old], NOW)
    assert sum(activity.series(b"R" * 16, NOW)) == 1
    assert sum(activity.series(b"O" * 16, NOW)) == 0  # nine, but when? only the baseline


def test_the_ring_forgets_the_least_recently_changed_signatures_first() -> None:
    activity = Activity(max_signatures=3)
    for i in range(5):
        activity.noted([state_of_report(report(bytes([i]) * 16))], NOW)
    assert len(activity) == 3
    assert sum(activity.series(bytes([0]) * 16, NOW)) == 0
    assert sum(activity.series(bytes([4]) * 16, NOW)) == 1


def github_sink(directory: Path) -> GitHubSink:
    """The sink a leader with a GitHub repository has (no request is sent here)."""
    settings = GitHubSettings(repo="acme/shop", token="t", budget=BudgetLimits())
    return GitHubSink.open(settings, GitHubSinkOptions(), directory)


def test_the_budget_left_is_the_limits_minus_the_writes_in_each_window(tmp_path: Path) -> None:
    with github_sink(tmp_path) as sink:
        for t in (NOW - 1800, NOW - 10, NOW - 5):
            sink.client.budget.record("POST", t)
        left = github_budget(sink, NOW)
    assert left is not None
    assert (left["writes_left_minute"], left["writes_left_hour"]) == (78, 497)
    assert github_budget(None, NOW) is None  # a file sink, or a relay that never leads
    data = assemble(status(), [], Activity(), left, now=NOW)
    assert "78/80 writes left this minute, 497/500 this hour" in render_page(data)


def test_an_issue_shows_the_draft_pr_its_leader_opened(tmp_path: Path) -> None:
    sig = b"A" * 16
    link = IssueLink(
        ref="7", number=7, url="https://github.com/acme/shop/issues/7", state="open", term=3,
        synced_total=1, synced_at=NOW,
    )  # fmt: skip
    states = [dataclasses.replace(state_of_report(report(sig)), link=link)]
    with github_sink(tmp_path) as sink:
        sink.outbox.enqueue(sig, "pr", 7, "branch")
        job = sink.outbox.get(sig, "pr")
        assert job is not None
        data = assemble(status(), states, Activity(), None, now=NOW)
        add_pulls(data, states, sink)
        assert data["signatures"][0]["issue"].get("pull") is None  # not opened yet
        sink.outbox.advance(job, "done", pull=12)  # as the follow-up's last step records it
        add_pulls(data, states, sink)
    assert data["signatures"][0]["issue"]["pull"] == {
        "number": 12,
        "url": "https://github.com/acme/shop/pull/12",
    }
    assert ', PR <a href="https://github.com/acme/shop/pull/12">#12</a>' in render_page(data)
