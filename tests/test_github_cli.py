"""A failing program with ``ERRMESH_REPO`` set and no mesh: its own process files the issue.

This is the original tool's setting (``IPFS_REPO``, a token in the
environment): a mesh of one is its own leader. The test GitHub is served on
loopback from this process; the program is a real child process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Sandbox
from github_sink.render import MARKER_RE
from tests.github_fake import GitHubApp, serve
from tests.github_fake.fixtures import assert_no_violations

REPO = "octo-org/octo-repo"
TOKEN = "ghp_" + "S3cr3tT0k3n" * 3
FAILING = "import sys; sys.stderr.write('disk quota exceeded on /var/x1\\n'); sys.exit(4)"


@pytest.fixture(params=["", "/api/v3"], ids=["github.com", "enterprise-server"])
def github(request: pytest.FixtureRequest) -> Iterator[tuple[GitHubApp, str]]:
    """The test GitHub, also as GitHub Enterprise Server (the API under ``/api/v3``)."""
    app = GitHubApp(repos=[REPO], tokens=[TOKEN], prefix=request.param)
    with serve(app) as url:
        yield app, url
    assert_no_violations(app)


def errmesh_issues(app: GitHubApp) -> list[int]:
    with app._lock:
        return sorted(
            n
            for n, issue in app.repo().issues.items()
            if not issue.is_pull and MARKER_RE.search(issue.body or "")
        )


def files_containing(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_a_failing_command_opens_one_issue_then_updates_it(
    sandbox: Sandbox, github: tuple[GitHubApp, str]
) -> None:
    app, url = github
    env = {
        "IPFS_REPO": REPO,  # the original tool's name
        "GITHUB_TOKEN": TOKEN,
        "ERRMESH_GITHUB_API_URL": url,
        "ERRMESH_WINDOW": "0",
        "ERRMESH_GITHUB_MIN_INTERVAL": "0.05",
    }
    first = sandbox.errmesh("run", "--", sys.executable, "-c", FAILING, **env)
    second = sandbox.errmesh("run", "--", sys.executable, "-c", FAILING, **env)

    assert first.returncode == second.returncode == 4
    assert "errmesh:" not in first.stderr + second.stderr, first.stderr + second.stderr
    (number,) = errmesh_issues(app)
    with app._lock:
        issue = app.repo().issues[number]
        comments = [c.body for c in app.repo().comments.values() if c.issue_number == number]
    assert issue.title.startswith("[errmesh] ")
    assert "disk quota exceeded" in (issue.body or "")
    assert len(comments) == 1 and "**2** in total" in comments[0]
    # The token went to GitHub in a header, and nowhere else on this machine.
    assert files_containing(sandbox.root, TOKEN.encode()) == []
    assert app.budget_report(per_minute=80, per_hour=500, min_interval=0.05) == []


def test_a_bad_token_is_said_once_and_the_report_is_kept(
    sandbox: Sandbox, github: tuple[GitHubApp, str]
) -> None:
    app, url = github
    done = sandbox.errmesh(
        "run",
        "--",
        sys.executable,
        "-c",
        FAILING,
        ERRMESH_REPO=REPO,
        ERRMESH_GITHUB_TOKEN="ghp_wrong",
        ERRMESH_GITHUB_API_URL=url,
    )

    assert done.returncode == 4
    warnings = [line for line in done.stderr.splitlines() if line.startswith("errmesh:")]
    assert len(warnings) == 1 and "ERRMESH_GITHUB_TOKEN" in warnings[0], done.stderr
    assert "ghp_wrong" not in done.stderr
    status = sandbox.errmesh("status", "--json")
    assert '"occurrences": 1' in status.stdout, status.stdout
    assert errmesh_issues(app) == []


def test_a_dry_run_without_a_token_prints_what_it_would_send(sandbox: Sandbox) -> None:
    done = sandbox.errmesh(
        "run",
        "--",
        sys.executable,
        "-c",
        FAILING,
        ERRMESH_REPO=REPO,
        ERRMESH_GITHUB_DRY_RUN="1",
        ERRMESH_GITHUB_API_URL="http://127.0.0.1:9",  # nothing listens: nothing is sent
    )

    assert done.returncode == 4
    assert f"[errmesh dry-run] POST http://127.0.0.1:9/repos/{REPO}/issues" in done.stderr
    assert '"title": "[errmesh] ' in done.stderr
    assert "errmesh: could not" not in done.stderr, done.stderr
