"""The operator's commands on a real mesh: ``errmesh members``, ``errmesh status``, /dashboard.

Three relays (``errmesh relay``, real libp2p on loopback: R2 and R3
bootstrapped to R1) and failing CLIs reporting to them. What is checked
is what an operator reads on each machine, run as processes: ``members``
shows the same three relays, one leader and one term everywhere; ``status``
lists the signatures most recently seen first with their severity, hosts
and issues, on 80 columns; the relay's dashboard serves the same.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from mesh_cluster import (
    CONVERGE,
    STARTUP,
    Cluster,
    Relay,
    connected,
    one_leader,
    title_kind,
    wait_until,
)

from tests.github_fake import GitHubApp, serve
from tests.github_fake.fixtures import assert_no_violations

pytestmark = pytest.mark.slow


def members(cluster: Cluster, relay: Relay) -> dict[str, Any]:
    done = cluster.errmesh(relay, "members", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def relays_heard(cluster: Cluster, relay: Relay, ids: set[str]) -> dict[str, Any] | None:
    """``relay``'s members once they are exactly the three relays, all heard in one term
    (a follower heartbeats less often: its last one may predate the election)."""
    data = members(cluster, relay)
    rows = {row["peer_id"]: row for row in data["members"]}
    one_term = len({r["term"] for r in rows.values()}) == 1
    return data if set(rows) == ids and one_term else None


def dashboard(relay: Relay) -> dict[str, Any]:
    base = relay.status()["status_url"].removesuffix("/status")
    with urllib.request.urlopen(base + "/dashboard.json", timeout=10) as answer:
        data: dict[str, Any] = json.loads(answer.read())
    return data


def start_three(cluster: Cluster) -> list[Relay]:
    r1 = cluster.start_relay(cluster.relay("R1"))
    r2 = cluster.start_relay(cluster.relay("R2"), bootstrap=[r1])
    r3 = cluster.start_relay(cluster.relay("R3"), bootstrap=[r1])
    wait_until(lambda: connected(r1, r2) and connected(r1, r3), STARTUP, "R2, R3 reach R1")
    wait_until(lambda: one_leader(r1, r2, r3), STARTUP, "one leader")
    return [r1, r2, r3]


def test_members_and_status_on_a_three_relay_mesh(cluster: Cluster) -> None:
    relays = start_three(cluster)
    ids = {r.peer_id for r in relays}
    leader = one_leader(*relays)
    for relay in relays:
        data = wait_until(
            lambda relay=relay: relays_heard(cluster, relay, ids), CONVERGE, "members"
        )
        rows = {row["peer_id"]: row for row in data["members"]}
        assert data["leader"] == leader
        assert [rows[p]["role"] for p in sorted(ids)].count("leader") == 1
        assert rows[str(leader)]["role"] == "leader"
        assert rows[relay.peer_id]["term"] == rows[str(leader)]["term"] >= 1
        me = rows[relay.peer_id]
        assert me["self"] and f"/tcp/{relay.port}" in me["addrs"][0]
        for other in relays:
            if other is not relay:
                assert f"/tcp/{other.port}" in rows[other.peer_id]["addrs"][0]
                assert rows[other.peer_id]["last_heard"] is not None

    text = cluster.errmesh(relays[1], "members")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"cluster meshtest: 3 members, leader {leader}")
    assert lines[1].split()[:4] == ["PEER", "ROLE", "TERM", "LINK"]
    assert sum(" leader " in line for line in lines[2:]) == 1
    assert any(line.split()[0].endswith(relays[1].peer_id[-11:] + "*") for line in lines[2:])
    assert all(len(line) <= 80 for line in lines[1:]), lines

    # Two errors, the second one later: status lists it first.
    machine = cluster.machine("M1")
    cluster.run_clis([(machine, "ValueError", [relays[1].maddr])] * 2)
    cluster.run_clis([(machine, "LookupError", [relays[2].maddr])])
    expected = {"ValueError": 2, "LookupError": 1}

    def filed(relay: Relay) -> list[dict[str, Any]] | None:
        rows = cluster.status_rows(relay)
        got = {title_kind(r["title"]): r["occurrences"] for r in rows}
        return rows if got == expected and all(r["issue"] for r in rows) else None

    for relay in relays:
        rows = wait_until(lambda relay=relay: filed(relay), CONVERGE, "every issue filed")
        assert [title_kind(r["title"]) for r in rows] == ["LookupError", "ValueError"]
        assert {r["severity"] for r in rows} <= {"low", "medium", "high", "critical"}
        assert all(r["hosts"] and r["issue"]["url"] for r in rows)

    status = cluster.errmesh(relays[0], "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("SIGNATURE"))
    assert lines[head].split() == [
        "SIGNATURE",
        "LAST",
        "SEEN",
        "COUNT",
        "SEVERITY",
        "HOSTS",
        "ISSUE",
    ]
    table = lines[head + 1 :]
    assert table[0].split()[3:5] == ["1", rows[0]["severity"]]  # LookupError first, seen last
    assert "LookupError" in table[1] and table[2].strip().startswith("file://")
    assert "ValueError" in table[4] and table[3].split()[3] == "2"
    assert all(len(line) <= 80 for line in lines[head:]), lines

    # The relay's dashboard shows the same (its data as JSON, its page as HTML).
    page = dashboard(relays[0])
    base = relays[0].status()["status_url"].removesuffix("/status")
    assert [title_kind(s["title"]) for s in page["signatures"]] == ["LookupError", "ValueError"]
    assert sum(page["signatures"][1]["last_hour"]) == 2  # both within the last minute or two
    assert {m["peer_id"] for m in page["members"] if m["role"] != "reporter"} == ids
    with urllib.request.urlopen(base + "/dashboard", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/html")
        body = answer.read().decode()
    assert "LookupError" in body and "ValueError" in body and "<svg" in body


def test_members_without_a_relay_says_there_is_none(cluster: Cluster) -> None:
    done = cluster.errmesh(cluster.relay("R1"), "members")
    assert done.returncode == 1
    assert "no relay is running on this machine for cluster meshtest" in done.stderr


def test_a_github_leaders_dashboard_links_the_issue_and_its_draft_pr_and_shows_the_budget(
    cluster: Cluster,
) -> None:
    repo, token = "octo-org/octo-repo", "test-token-for-the-dashboard"
    app = GitHubApp(repos=[repo], tokens=[token])
    with serve(app) as url:
        env = {
            "ERRMESH_SINK": "github",
            "ERRMESH_REPO": repo,
            "ERRMESH_GITHUB_TOKEN": token,
            "ERRMESH_GITHUB_API_URL": url,
            "ERRMESH_GITHUB_MIN_INTERVAL": "0.05",
            "ERRMESH_AUTO_PR": "1",  # a draft PR with the fix brief (no fixer command)
        }
        relay = cluster.start_relay(cluster.relay("R1"), env=env)
        cluster.run_clis([(cluster.machine("M1"), "ValueError", [relay.maddr])])

        def with_pull() -> dict[str, Any] | None:
            data = dashboard(relay)
            rows = data["signatures"]
            return data if rows and (rows[0]["issue"] or {}).get("pull") else None

        data = wait_until(with_pull, CONVERGE, "the dashboard shows the issue's draft PR")
        with app._lock:
            items = list(app.repo().issues.values())
        issue = next(i for i in items if not i.is_pull)
        pull = next(i for i in items if i.is_pull)
        shown = data["signatures"][0]["issue"]
        assert shown["url"].endswith(f"/{repo}/issues/{issue.number}")
        assert shown["pull"] == {
            "number": pull.number,
            "url": shown["url"].rsplit("/issues/", 1)[0] + f"/pull/{pull.number}",
        }
        budget = data["budget"]
        assert budget["per_minute"] == 80 and budget["per_hour"] == 500
        assert 0 < budget["writes_left_minute"] < 80  # the issue, the branch, the brief, the PR
        assert budget["writes_left_hour"] == 500 - (80 - budget["writes_left_minute"])
        assert_no_violations(app)
