"""The GitHub sink against the test GitHub, in process: what lands in the repository.

Every request goes through the real client (budget, retries, ETags) into the
fake GitHub's WSGI app, which validates it against GitHub's API description;
the ``github_app`` fixture fails a test on any request GitHub would refuse.
Both share one fake clock, and the client "sleeps" by advancing it, so the
budget audit at the end of a test is exact and nothing really waits.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from github_sink.errors import BadCredentials, SinkUnavailable
from github_sink.followup import COPILOT_LOGIN, branch_name, brief_path
from github_sink.github import GitHubSink, GitHubSinkOptions
from github_sink.render import marker
from github_sink.settings import GitHubSettings
from mesh.report import Frame, Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, OriginCount, SigState
from tests.github_fake import FakeClock, GitHubApp
from tests.github_fake.fixtures import HTTPX_TRANSPORT_ERRORS, assert_no_violations
from tests.github_fake.state import Issue

REPO = "octo-org/octo-repo"
TOKEN = "test-token"
SIG = bytes.fromhex("0123456789abcdef0123456789abcdef")
OTHER = bytes.fromhex("fedcba9876543210fedcba9876543210")
T0 = 1_800_000_000.0


def state(
    total: int = 3, *, sig: bytes = SIG, severity: Severity = Severity.MEDIUM, message: str = "x42"
) -> SigState:
    detail = Report(
        origin=b"O" * 16,
        seq=1,
        count=1,
        signature=sig,
        kind="exception",
        exc_type="ValueError",
        message=f"invalid literal for int() with base 10: '{message}'",
        frames=(
            Frame(
                module="app.io",
                function="parse",
                filename="app/io.py",
                lineno=2,
                in_app=True,
                line="return int(raw)",
            ),
        ),
        log_tail=("INFO app: reading batch.csv",),
        argv=("app", "import", "batch.csv"),
        app="app",
        host="web-1",
        timestamp=T0,
        severity=severity,
    )
    counts = {b"A" * 16: OriginCount(count=total, first_seen=T0, last_seen=T0 + 60, host="web-1")}
    return SigState(signature=sig, detail=detail, counts=counts, severity=severity)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def app(clock: FakeClock) -> Iterator[GitHubApp]:
    """The test GitHub on the tests' clock; fails the test on any request GitHub would refuse."""
    app = GitHubApp(
        repos=[REPO], tokens=[TOKEN], clock=clock, transport_errors=HTTPX_TRANSPORT_ERRORS
    )
    yield app
    assert_no_violations(app)


SinkFactory = Callable[..., GitHubSink]


@pytest.fixture
def make_sink(app: GitHubApp, clock: FakeClock, tmp_path: Path) -> Iterator[SinkFactory]:
    """Sinks on one machine's outbox folder (a restarted leader reuses it)."""
    made: list[GitHubSink] = []

    def make(
        *,
        outbox: Path | None = tmp_path / "leader",
        token: str = TOKEN,
        dry_run: bool = False,
        stream: io.StringIO | None = None,
        **options: object,
    ) -> GitHubSink:
        settings = GitHubSettings(
            repo=REPO, token=token, api_url="http://github.test", dry_run=dry_run
        )
        sink = GitHubSink.open(
            settings,
            GitHubSinkOptions(**options),  # type: ignore[arg-type]
            outbox,
            transport=httpx.WSGITransport(app=app),
            clock=clock,
            sleep=clock.advance,
            dry_run_stream=stream,
        )
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def issues_with_marker(app: GitHubApp, sig: bytes = SIG) -> list[int]:
    return sorted(
        n for n, i in app.repo().issues.items() if not i.is_pull and marker(sig) in (i.body or "")
    )


def pulls_of(app: GitHubApp) -> list[Issue]:
    """Pull requests (GitHub numbers them with the issues)."""
    return [i for i in app.repo().issues.values() if i.is_pull]


def comments_on(app: GitHubApp, number: int) -> list[str]:
    return [c.body for c in app.repo().comments.values() if c.issue_number == number]


def audit(app: GitHubApp) -> None:
    """GitHub's content limits held: 80/min, 500/h, writes 1 s apart."""
    assert app.budget_report(per_minute=80, per_hour=500, min_interval=1.0) == []


# -- issues ------------------------------------------------------------------


def test_an_issue_opens_with_its_labels_and_marker(app: GitHubApp, make_sink: SinkFactory) -> None:
    link = make_sink().open_issue(state(), now=T0, term=1)

    issue = app.repo().issues[link.number or 0]
    assert issue.title == "[errmesh] ValueError: invalid literal for int() with base <n>: <str>"
    assert marker(SIG) in issue.body
    assert {label for label in issue.labels} == {"errmesh", "bug", "severity:medium"}
    assert set(app.repo().labels) >= {"errmesh", "bug", "severity:medium"}
    assert link == IssueLink(
        ref=f"{REPO}#{link.number}",
        number=link.number,
        url=f"http://github.test/{REPO}/issues/{link.number}",
        state="open",
        term=1,
        synced_total=3,
        synced_at=link.synced_at,
        severity=Severity.MEDIUM,
    )
    assert link.synced_at >= T0, "stamped when GitHub answered"
    audit(app)


def test_a_replayed_open_finds_the_issue_by_its_marker_never_by_search(
    app: GitHubApp, make_sink: SinkFactory, tmp_path: Path
) -> None:
    first = make_sink().open_issue(state(), now=T0, term=1)
    # A new leader on another machine (its own empty outbox) was never told the link.
    again = make_sink(outbox=tmp_path / "other").open_issue(state(5), now=T0 + 5, term=2)

    assert issues_with_marker(app) == [first.number] == [again.number]
    assert again.synced_total == 3, "the link records what the found issue shows"
    assert app.count("POST", "/repos/{owner}/{repo}/issues") == 1
    assert app.count("GET", "/search/issues") == 0


def test_an_update_is_one_comment_and_the_severity_label_follows(
    app: GitHubApp, make_sink: SinkFactory
) -> None:
    sink = make_sink()
    link = sink.open_issue(state(3), now=T0, term=1)

    updated = sink.update_issue(state(10, severity=Severity.HIGH), link, now=T0 + 900, term=1)

    comments = comments_on(app, link.number or 0)
    assert len(comments) == 1
    assert "**+7** new occurrences · **10** in total" in comments[0]
    issue = app.repo().issues[link.number or 0]
    assert "severity:high" in issue.labels and "severity:medium" not in issue.labels
    assert updated.synced_total == 10 and updated.severity is Severity.HIGH
    audit(app)


def test_an_update_is_not_posted_twice_by_a_restarted_or_a_new_leader(
    app: GitHubApp, make_sink: SinkFactory, tmp_path: Path
) -> None:
    link = make_sink().open_issue(state(3), now=T0, term=1)
    make_sink().update_issue(state(10), link, now=T0 + 900, term=1)  # then the leader died

    # The same machine restarted: its outbox remembers the confirmed comment.
    make_sink().update_issue(state(10), link, now=T0 + 901, term=1)
    # Another machine leads in a later term: it reads the comments since the last sync.
    make_sink(outbox=tmp_path / "other").update_issue(state(10), link, now=T0 + 902, term=2)

    assert len(comments_on(app, link.number or 0)) == 1


def test_a_closed_issue_with_new_occurrences_reopens_as_a_regression(
    app: GitHubApp, make_sink: SinkFactory
) -> None:
    sink = make_sink()
    link = sink.open_issue(state(3), now=T0, term=1)
    issue = app.repo().issues[link.number or 0]
    issue.state = "closed"  # a person fixed it
    sink._listed_at = float("-inf")  # the next round lists again

    assert sink.observe([SIG]) == {SIG: "closed"}
    reopened = sink.reopen_issue(
        state(4), dataclasses.replace(link, state="closed"), now=T0 + 60, term=1
    )

    assert issue.state == "open" and "regression" in issue.labels
    assert reopened.state == "open" and reopened.synced_total == 4
    (comment,) = comments_on(app, issue.number)
    assert comment.startswith("**Regression:**")


def test_two_issues_with_one_marker_are_reconciled_into_the_lowest(
    app: GitHubApp, make_sink: SinkFactory, clock: FakeClock
) -> None:
    # A partition had two leaders; each opened the signature's issue.
    first = make_sink().open_issue(state(3), now=T0, term=1)
    repo = app.repo()
    second = repo.create_issue(
        title="dup",
        body=marker(SIG) + "\nfrom the other side",
        labels=["errmesh"],
        assignees=[],
        user="errmesh-bot",
        now=clock(),
    )
    sink = make_sink()
    link_to_second = dataclasses.replace(first, number=second.number)

    kept = sink.update_issue(state(9), link_to_second, now=T0 + 900, term=2)

    assert kept.number == first.number and kept.synced_total == 9
    assert second.state == "closed" and second.state_reason == "duplicate"
    assert comments_on(app, second.number) == [
        f"Duplicate of #{first.number}: errmesh tracks this error there."
    ]
    assert any("**9** in total" in c for c in comments_on(app, first.number or 0))


# -- draft PRs and auto-heal ---------------------------------------------------------


def run_follow_ups(sink: GitHubSink, st: SigState, *, now: float, term: int = 1) -> int:
    return sink.follow_up(now=now, term=term, load=lambda sig: st if sig == st.signature else None)


def test_auto_pr_opens_a_draft_with_the_fix_brief_once(
    app: GitHubApp, make_sink: SinkFactory, tmp_path: Path
) -> None:
    st = state()
    sink = make_sink(auto_pr=True)
    link = sink.open_issue(st, now=T0, term=1)
    run_follow_ups(sink, st, now=T0)

    repo = app.repo()
    (pull,) = pulls_of(app)
    assert pull.pull is not None and pull.pull.draft
    assert pull.pull.head == branch_name(SIG) and pull.pull.base == "main"
    assert f"Fixes #{link.number}" in (pull.body or "")
    _, brief = repo.git.read(brief_path(SIG), branch_name(SIG))  # type: ignore[misc]
    assert marker(SIG).encode() in brief and b"## How to reproduce" in brief

    # A new leader elsewhere sweeps what GitHub shows and finds nothing missing.
    other = make_sink(outbox=tmp_path / "other", auto_pr=True)
    run_follow_ups(other, st, now=T0 + 10, term=2)
    assert len(pulls_of(app)) == 1
    assert app.count("POST", "/repos/{owner}/{repo}/git/refs") == 1
    audit(app)


def test_a_draft_pr_interrupted_by_an_outage_resumes_without_duplicates(
    app: GitHubApp, make_sink: SinkFactory, clock: FakeClock
) -> None:
    st = state()
    sink = make_sink(auto_pr=True)
    sink.open_issue(st, now=T0, term=1)
    app.faults.error(status=502, route="POST /repos/{owner}/{repo}/pulls", times=1)

    run_follow_ups(sink, st, now=clock())  # branch and brief land, the pull fails
    (job,) = sink.outbox.jobs()
    assert job.step == "pull" and job.state == "pending" and job.attempts == 1

    clock.advance(60)
    make_sink(auto_pr=True)  # (a restarted leader would resume the same outbox)
    run_follow_ups(sink, st, now=clock())
    assert len(pulls_of(app)) == 1
    assert sink.outbox.jobs()[0].state == "done"


FIXER = textwrap.dedent(
    """
    import sys
    brief = sys.stdin.read()
    assert "ValueError" in brief
    print("--- a/app/io.py")
    print("+++ b/app/io.py")
    print("@@ -1,2 +1,5 @@")
    print(" def parse(raw):")
    print("-    return int(raw)")
    print("+    try:")
    print("+        return int(raw)")
    print("+    except ValueError:")
    print("+        return None")
    """
)


def seed_repo(app: GitHubApp, clock: FakeClock) -> None:
    app.repo().git.write(
        "app/io.py",
        b"def parse(raw):\n    return int(raw)\n",
        branch="main",
        sha=None,
        message="initial",
        now=clock(),
    )


def test_a_fixer_command_diff_is_committed_to_the_draft_branch(
    app: GitHubApp, make_sink: SinkFactory, clock: FakeClock, tmp_path: Path
) -> None:
    seed_repo(app, clock)
    script = tmp_path / "fixer.py"
    script.write_text(FIXER)
    st = state()
    sink = make_sink(auto_heal=True, fixer=(sys.executable, str(script)), fixer_timeout=60.0)
    sink.open_issue(st, now=T0, term=1)

    run_follow_ups(sink, st, now=T0)

    repo = app.repo()
    _, fixed = repo.git.read("app/io.py", branch_name(SIG))  # type: ignore[misc]
    assert (
        fixed
        == b"def parse(raw):\n    try:\n        return int(raw)\n    except ValueError:\n        return None\n"
    )
    _, untouched = repo.git.read("app/io.py", "main")  # type: ignore[misc]
    assert untouched == b"def parse(raw):\n    return int(raw)\n"
    assert len(pulls_of(app)) == 1 and app.agent_assignments == []


@pytest.mark.parametrize(
    ("program", "why"),
    [
        ("import sys; sys.exit(3)", "exited with status 3"),
        ("import time; time.sleep(30)", "did not finish within 1 s"),
        ("print('--- a/app/io.py\\n+++ b/app/io.py\\n@@ -1 +1 @@\\n-nope\\n+x')", "does not match"),
    ],
)
def test_a_failing_fixer_leaves_a_comment_not_a_broken_branch(
    app: GitHubApp,
    make_sink: SinkFactory,
    clock: FakeClock,
    tmp_path: Path,
    program: str,
    why: str,
) -> None:
    seed_repo(app, clock)
    st = state()
    sink = make_sink(auto_heal=True, fixer=(sys.executable, "-c", program), fixer_timeout=1.0)
    link = sink.open_issue(st, now=T0, term=1)

    run_follow_ups(sink, st, now=T0)

    repo = app.repo()
    _, kept = repo.git.read("app/io.py", branch_name(SIG))  # type: ignore[misc]
    assert kept == b"def parse(raw):\n    return int(raw)\n"
    (comment,) = comments_on(app, link.number or 0)
    assert "could not apply an automatic fix" in comment and why in comment
    assert len(pulls_of(app)) == 1, "the draft PR still carries the brief"


def test_auto_heal_hands_the_issue_to_copilot_and_opens_no_pr_of_its_own(
    app: GitHubApp, make_sink: SinkFactory
) -> None:
    st = state()
    sink = make_sink(auto_pr=True, auto_heal=True)
    link = sink.open_issue(st, now=T0, term=1)
    run_follow_ups(sink, st, now=T0)
    run_follow_ups(sink, st, now=T0 + 10)

    (assignment,) = app.agent_assignments
    assert assignment.issue_number == link.number
    assert assignment.assignees == (COPILOT_LOGIN,)
    assert assignment.agent_assignment is not None
    assert assignment.agent_assignment["target_repo"] == REPO
    assert assignment.agent_assignment["base_branch"] == "main"
    assert assignment.agent_assignment["custom_instructions"]
    assert pulls_of(app) == [] and app.count("POST", "/repos/{owner}/{repo}/git/refs") == 0


# -- limits, failures, secrets ---------------------------------------------------------


def test_forty_new_signatures_stay_within_githubs_content_limits(
    app: GitHubApp, make_sink: SinkFactory, clock: FakeClock
) -> None:
    sink = make_sink()
    for i in range(40):
        sig = bytes([i]) * 16
        sink.open_issue(state(sig=sig, message=f"m{i}"), now=clock(), term=1)

    assert len(issues_with_marker(app, bytes([7]) * 16)) == 1
    assert len(app.repo().issues) == 40
    audit(app)
    assert clock() - T0 >= 40, "writes went out at most one per second"


def test_a_github_outage_fails_the_action_and_the_next_round_does_it_once(
    app: GitHubApp, make_sink: SinkFactory, clock: FakeClock
) -> None:
    sink = make_sink()
    app.down_until(clock() + 3600)
    with pytest.raises(SinkUnavailable):
        sink.open_issue(state(), now=clock(), term=1)
    assert app.repo().issues == {}

    clock.advance(3600)
    sink.open_issue(state(), now=clock(), term=1)
    assert len(issues_with_marker(app)) == 1


def test_a_bad_token_is_a_clear_error_naming_the_setting_not_the_token(
    app: GitHubApp, make_sink: SinkFactory
) -> None:
    secret = "ghp_" + "Z" * 36
    with pytest.raises(BadCredentials) as caught:
        make_sink(token=secret).open_issue(state(), now=T0, term=1)
    text = str(caught.value)
    assert (
        "ERRMESH_GITHUB_TOKEN" in text and secret not in text and secret not in repr(caught.value)
    )


def test_a_dry_run_prints_its_writes_and_sends_none(app: GitHubApp, make_sink: SinkFactory) -> None:
    out = io.StringIO()
    make_sink(dry_run=True, stream=out, outbox=None).open_issue(state(), now=T0, term=1)

    printed = out.getvalue()
    assert "[errmesh dry-run] POST http://github.test/repos/octo-org/octo-repo/issues" in printed
    assert marker(SIG) in printed and TOKEN not in printed
    assert app.count("POST") == app.count("PATCH") == 0


def test_a_comment_whose_answer_was_lost_is_not_posted_again(
    app: GitHubApp, make_sink: SinkFactory, clock: FakeClock
) -> None:
    sink = make_sink()
    link = sink.open_issue(state(3), now=T0, term=1)
    # GitHub stores the comment, but the answer never arrives.
    app.faults.timeout(
        seconds=30, apply=True, route="POST /repos/{owner}/{repo}/issues/{issue_number}/comments"
    )
    with pytest.raises(SinkUnavailable):
        sink.update_issue(state(10), link, now=clock(), term=1)

    sink.update_issue(state(10), link, now=clock(), term=1)  # the next round

    assert len(comments_on(app, link.number or 0)) == 1


def test_two_leaders_acting_at_once_post_one_update_per_window(
    app: GitHubApp, make_sink: SinkFactory, tmp_path: Path
) -> None:
    link = make_sink().open_issue(state(3), now=T0, term=1)
    # An election under load: two relays lead for a moment, neither heard the other's link.
    first = make_sink(outbox=tmp_path / "a").update_issue(state(10), link, now=T0 + 900, term=2)
    second = make_sink(outbox=tmp_path / "b").update_issue(state(12), link, now=T0 + 901, term=3)

    (comment,) = comments_on(app, link.number or 0)
    assert "**10** in total" in comment
    assert second.synced_total == 10, "the second leader adopts what the issue shows"
    assert second.synced_at <= first.synced_at + 1, "and waits a window from that comment"
