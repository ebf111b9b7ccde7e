"""The mesh against the test GitHub: relays and failing CLIs as real processes.

The relays (``errmesh relay``, real libp2p on loopback) run the GitHub sink
against the fake GitHub served over HTTP from this process; the failing CLIs
hand their reports to the relays as in ``test_mesh.py``. What a test reads
is the repository the fake holds: its issues, comments, labels, branches,
files and pulls, and the requests it received. The fake validates every
request against GitHub's API description and the ``github`` fixture fails
the test on any that GitHub would refuse; every test ends with the budget
audit (the content limits, scaled to this test's pace: 80 writes a minute,
500 an hour, 50 ms apart, as the relays are configured).
"""

from __future__ import annotations

import re
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mesh_cluster import (
    CONVERGE,
    ERRORS,
    STARTUP,
    Cluster,
    Relay,
    connected,
    one_leader,
    print_figure,
    wait_until,
)

from github_sink.followup import COPILOT_LOGIN
from tests.github_fake import GitHubApp, serve
from tests.github_fake.fixtures import assert_no_violations
from tests.github_fake.state import Issue

pytestmark = pytest.mark.slow

REPO = "octo-org/octo-repo"
TOKEN = "test-token-for-the-mesh"
MIN_INTERVAL = 0.05
WINDOW = 2.0
_OCCURRENCES = re.compile(r"\*\*Occurrences:\*\* (\d+)")
_TOTAL = re.compile(r"\*\*(\d+)\*\* in total")
_KIND = re.compile(r"\[errmesh\] (\w+)")


@dataclass
class GitHub:
    app: GitHubApp
    url: str

    def env(self, **extra: str) -> dict[str, str]:
        """A relay's settings for this GitHub (tokens never reach the CLIs)."""
        return {
            "ERRMESH_SINK": "github",
            "ERRMESH_REPO": REPO,
            "ERRMESH_GITHUB_TOKEN": TOKEN,
            "ERRMESH_GITHUB_API_URL": self.url,
            "ERRMESH_GITHUB_MIN_INTERVAL": str(MIN_INTERVAL),
            "ERRMESH_GITHUB_TIMEOUT": "10",
            **extra,
        }

    def issues(self) -> dict[str, list[Issue]]:
        """errmesh's issues by exception type (more than one: a duplicate)."""
        with self.app._lock:
            found = [
                i
                for i in self.app.repo().issues.values()
                if not i.is_pull and "errmesh:sig=" in (i.body or "")
            ]
        out: dict[str, list[Issue]] = {}
        for issue in sorted(found, key=lambda i: i.number):
            match = _KIND.match(issue.title)
            out.setdefault(match[1] if match else issue.title, []).append(issue)
        return out

    def comments(self, number: int) -> list[tuple[float, str]]:
        with self.app._lock:
            return sorted(
                (c.created_at, c.body)
                for c in self.app.repo().comments.values()
                if c.issue_number == number
            )

    def shown(self) -> dict[str, int]:
        """What each issue shows now: its last comment's total, else its body's count."""
        out: dict[str, int] = {}
        for kind, issues in self.issues().items():
            issue = issues[0]
            totals = [
                int(m[1]) for _, body in self.comments(issue.number) if (m := _TOTAL.search(body))
            ]
            body = _OCCURRENCES.search(issue.body or "")
            out[kind] = totals[-1] if totals else int(body[1]) if body else 0
        return out

    def pulls(self) -> list[Issue]:
        with self.app._lock:
            return [i for i in self.app.repo().issues.values() if i.is_pull]

    def read(self, path: str, ref: str) -> bytes | None:
        with self.app._lock:
            found = self.app.repo().git.read(path, ref)
        return found[1] if isinstance(found, tuple) else None

    def audit(self) -> None:
        assert self.app.budget_report(per_minute=80, per_hour=500, min_interval=MIN_INTERVAL) == []
        assert_no_violations(self.app)


@pytest.fixture
def github() -> Iterator[GitHub]:
    app = GitHubApp(repos=[REPO], tokens=[TOKEN])
    with serve(app) as url:
        yield GitHub(app, url)
    assert_no_violations(app)


def start_github_pair(c: Cluster, gh: GitHub, **extra: str) -> tuple[Relay, Relay]:
    r1 = c.start_relay(c.relay("R1"), window=WINDOW, env=gh.env(**extra))
    r2 = c.start_relay(c.relay("R2"), bootstrap=[r1], window=WINDOW, env=gh.env(**extra))
    wait_until(lambda: connected(r1, r2), STARTUP, "R1 and R2 are connected")
    wait_until(lambda: one_leader(r1, r2), STARTUP, "R1 and R2 agree on one leader")
    return r1, r2


def fail(c: Cluster, relays: list[Relay], *jobs: tuple[str, str]) -> None:
    """CLIs on named machines fail with the given kinds, concurrently."""
    peers = [r.maddr for r in relays]
    c.run_clis([(c.machine(m), kind, peers) for m, kind in jobs])


# ---------------------------------------------------------------------------


def test_one_issue_per_signature_with_exact_counts_updated_at_most_once_a_window(
    cluster: Cluster, github: GitHub
) -> None:
    r1, r2 = start_github_pair(cluster, github)
    fail(cluster, [r1], ("M1", "ValueError"), ("M2", "LookupError"), ("M3", "ValueError"))
    wait_until(lambda: len(github.issues()) == 2, CONVERGE, "both signatures have an issue")
    fail(cluster, [r2], ("M1", "ValueError"), ("M2", "ValueError"), ("M3", "LookupError"))
    fail(cluster, [r1, r2], ("M1", "LookupError"), ("M2", "ValueError"))

    expected = dict(cluster.produced)
    assert expected == {"ValueError": 5, "LookupError": 3}
    wait_until(lambda: github.shown() == expected, CONVERGE, "every issue shows its exact count")

    issues = github.issues()
    assert {kind: len(found) for kind, found in issues.items()} == {
        "ValueError": 1,
        "LookupError": 1,
    }
    for found in issues.values():
        issue = found[0]
        assert {"errmesh", "bug"} <= set(issue.labels)
        assert any(label.startswith("severity:") for label in issue.labels)
        times = [t for t, _ in github.comments(issue.number)]
        gaps = [b - a for a, b in zip([issue.created_at, *times], times, strict=False)]
        assert all(gap >= WINDOW - 0.05 for gap in gaps), f"updates closer than the window: {gaps}"
    assert github.app.count("GET", "/search/issues") == 0
    # The token reached GitHub in headers only: no file of any machine holds it.
    leaks = [p for p in cluster.root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaks == []
    github.audit()


def test_a_closed_issue_reopens_as_a_regression(cluster: Cluster, github: GitHub) -> None:
    relay = cluster.start_relay(cluster.relay("R1"), window=WINDOW, env=github.env())
    fail(cluster, [relay], ("M1", "ValueError"))
    (issue,) = wait_until(lambda: github.issues().get("ValueError"), CONVERGE, "the issue opens")

    # A person closes it as fixed (on GitHub's side: not one of errmesh's requests).
    with github.app._lock:
        issue.state, issue.state_reason = "closed", "completed"
        issue.closed_at = issue.updated_at = time.time()  # as GitHub stamps a close
    fail(cluster, [relay], ("M2", "ValueError"))

    wait_until(
        lambda: issue.state == "open" and "regression" in issue.labels, CONVERGE, "it reopens"
    )
    wait_until(
        lambda: any(
            body.startswith("**Regression:**") for _, body in github.comments(issue.number)
        ),
        CONVERGE,
        "with a regression comment",
    )
    assert len(github.issues()["ValueError"]) == 1
    github.audit()


FIXER = textwrap.dedent(
    """
    import sys
    brief = sys.stdin.read()
    assert "## How to reproduce" in brief, brief
    sys.stdout.write(
        "--- a/app/io.py\\n+++ b/app/io.py\\n@@ -1,2 +1,2 @@\\n"
        " def parse(raw):\\n-    return int(raw)\\n+    return int(raw or 0)\\n"
    )
    """
)


def test_auto_pr_and_a_fixer_command_give_a_draft_pr_with_the_fix(
    cluster: Cluster, github: GitHub, tmp_path: Path
) -> None:
    with github.app._lock:
        github.app.repo().git.write(
            "app/io.py",
            b"def parse(raw):\n    return int(raw)\n",
            branch="main",
            sha=None,
            message="initial",
            now=time.time(),
        )
    fixer = tmp_path / "fixer.py"
    fixer.write_text(FIXER)
    env = github.env(
        IPFS_AUTO_PR="true",  # the original tool's names still work
        IPFS_AUTO_HEAL="yes",
        ERRMESH_FIXER=f"{sys.executable} {fixer}",
    )
    relay = cluster.start_relay(cluster.relay("R1"), window=WINDOW, env=env)
    fail(cluster, [relay], ("M1", "ValueError"))

    (pull,) = wait_until(github.pulls, CONVERGE, "a draft pull request opens")
    (issue,) = github.issues()["ValueError"]
    assert pull.pull is not None and pull.pull.draft and pull.pull.base == "main"
    assert f"Fixes #{issue.number}" in (pull.body or "")
    branch = pull.pull.head
    assert re.fullmatch(r"errmesh/fix-[0-9a-f]{12}", branch)
    sig12 = branch.removeprefix("errmesh/fix-")
    brief = github.read(f".errmesh/{sig12}.md", branch)
    assert brief is not None and f"Issue: #{issue.number}" in brief.decode()
    assert github.read("app/io.py", branch) == b"def parse(raw):\n    return int(raw or 0)\n"
    assert github.read("app/io.py", "main") == b"def parse(raw):\n    return int(raw)\n"
    assert github.app.agent_assignments == []
    github.audit()


def test_auto_heal_without_a_fixer_hands_the_issue_to_copilot(
    cluster: Cluster, github: GitHub
) -> None:
    env = github.env(ERRMESH_AUTO_HEAL="1", ERRMESH_AUTO_PR="1")
    relay = cluster.start_relay(cluster.relay("R1"), window=WINDOW, env=env)
    fail(cluster, [relay], ("M1", "LookupError"))

    (assignment,) = wait_until(lambda: github.app.agent_assignments, CONVERGE, "Copilot is asked")
    (issue,) = github.issues()["LookupError"]
    assert assignment.issue_number == issue.number
    assert assignment.assignees == (COPILOT_LOGIN,)
    sent: dict[str, Any] = assignment.agent_assignment or {}
    assert sent["target_repo"] == REPO and sent["base_branch"] == "main"
    assert "issue" in sent["custom_instructions"]
    assert github.pulls() == [], "Copilot opens its own PR; errmesh opens none"
    github.audit()


def test_a_leader_killed_between_creating_an_issue_and_announcing_it_leaves_no_duplicate(
    cluster: Cluster, github: GitHub
) -> None:
    r1, r2 = start_github_pair(cluster, github)
    # GitHub creates the issue, then its answer is held back: the leader is
    # killed while it waits, so no peer ever hears of the issue.
    github.app.faults.timeout(seconds=8, apply=True, route="POST /repos/{owner}/{repo}/issues")
    leader_id = one_leader(r1, r2)
    leader, survivor = (r1, r2) if r1.peer_id == leader_id else (r2, r1)
    fail(cluster, [r1, r2], ("M1", "ZeroDivisionError"))

    wait_until(lambda: github.issues().get("ZeroDivisionError"), CONVERGE, "the issue is created")
    killed_at = leader.kill()
    wait_until(lambda: survivor.status().get("role") == "leader", CONVERGE, "a new leader")
    fail(cluster, [survivor], ("M2", "ZeroDivisionError"))

    wait_until(
        lambda: github.shown().get("ZeroDivisionError") == 2, CONVERGE, "the new leader updates it"
    )
    print_figure(f"issue found again and updated {time.time() - killed_at:.1f} s after the kill")
    assert len(github.issues()["ZeroDivisionError"]) == 1
    assert github.app.count("POST", "/repos/{owner}/{repo}/issues") == 1
    github.audit()


def test_a_github_outage_loses_nothing_and_the_budget_holds(
    cluster: Cluster, github: GitHub
) -> None:
    r1, r2 = start_github_pair(cluster, github)
    github.app.down_until(time.time() + 6)
    fail(cluster, [r1], ("M1", "ValueError"), ("M2", "LookupError"), ("M3", "PermissionError"))
    fail(cluster, [r2], ("M1", "LookupError"), ("M2", "PermissionError"))
    expected = dict(cluster.produced)

    wait_until(lambda: github.shown() == expected, CONVERGE + 30, "every count after the outage")
    assert {kind: len(found) for kind, found in github.issues().items()} == {k: 1 for k in expected}
    refused = github.app.count(status=502)
    print_figure(f"{refused} requests refused during the outage, then every issue exact")
    assert refused > 0
    github.audit()


def test_a_new_leader_keeps_the_hourly_pace_of_the_leaders_before_it(
    cluster: Cluster, github: GitHub
) -> None:
    """GitHub counts writes per token: the hour's budget is the mesh's, not a leader's.

    The leader spends the hour's budget and dies; its successor heard of
    every write in heartbeats, so it holds its own back instead of spending
    the hour's budget again (the soak's 501 writes in an hour).
    """
    per_hour = 3
    r1, r2 = start_github_pair(cluster, github, ERRMESH_GITHUB_PER_HOUR=str(per_hour))
    leader_id = one_leader(r1, r2)
    leader, survivor = (r1, r2) if r1.peer_id == leader_id else (r2, r1)

    def writes() -> int:
        with github.app._lock:
            return sum(1 for r in github.app.requests if r.method != "GET")

    fail(cluster, [r1, r2], *[(f"M{i}", kind) for i, kind in enumerate(ERRORS)])
    wait_until(lambda: writes() == per_hour, CONVERGE, "the leader spends the hour's budget")
    wait_until(
        lambda: survivor.status().get("github_writes_last_hour", 0) >= per_hour,
        CONVERGE,
        "the survivor's ledger holds the leader's writes",
    )
    leader.kill()
    wait_until(lambda: survivor.status().get("role") == "leader", CONVERGE, "a new leader")
    wait_until(
        lambda: "held back" in survivor.stderr_path.read_text(errors="replace"),
        CONVERGE,
        "the new leader holds its first write back",
    )
    assert writes() == per_hour, survivor.story()
    assert github.app.budget_report(per_hour=per_hour, min_interval=MIN_INTERVAL) == []
