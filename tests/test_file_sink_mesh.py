"""The file sink in a mesh: every relay keeps its own issues folder, as deployed.

Three relays (``errmesh relay``, real libp2p on loopback), each with the
default folder ``<data_dir>/<cluster>/issues`` of its own machine; failing
CLIs report to them. The leader writes issues through the sink, the other
relays copy the replicated links into their folders. What the tests read is
what a person reads: ``errmesh issues list --json`` and ``errmesh status
--json`` run as processes on each relay's machine, and ``errmesh issues
close`` run there (DECISIONS 36).
"""

from __future__ import annotations

import json
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
    title_kind,
    wait_until,
)

pytestmark = pytest.mark.slow


def _listed(cluster: Cluster, relay: Relay) -> dict[str, dict[str, Any]]:
    """``errmesh issues list --json`` on ``relay``'s machine, by exception type."""
    done = cluster.errmesh(relay, "issues", "list", "--json")
    assert done.returncode == 0, done.stderr
    entries = list(json.loads(done.stdout)["issues"].values())
    out = {title_kind(e["title"]): e for e in entries}
    assert len(out) == len(entries), f"two issues for one signature: {entries}"
    return out


def _shown(cluster: Cluster, relay: Relay) -> dict[str, tuple[int, str, int]]:
    """What ``relay``'s folder shows: type -> (number, state, total); cheap to poll."""
    return {
        kind: (e["number"], e["state"], e["total"])
        for kind, e in cluster.issues(relay.own_issues_dir).items()
    }


def _start(cluster: Cluster, names: tuple[str, ...]) -> list[Relay]:
    """Relays with their own folders, bootstrapped to the first; once they agree on a leader."""
    relays: list[Relay] = []
    for name in names:
        relay = cluster.relay(name)
        relay.own_issues = True
        relays.append(cluster.start_relay(relay, bootstrap=relays[:1]))
    first, others = relays[0], relays[1:]
    wait_until(lambda: all(connected(first, r) for r in others), STARTUP, "the relays connect")
    wait_until(lambda: one_leader(*relays), STARTUP, "the relays agree on one leader")
    return relays


def _agreed(
    cluster: Cluster, relays: list[Relay], expected: dict[str, tuple[str, int]]
) -> dict[str, tuple[int, str, int]] | None:
    """The view every relay's folder shares, once it shows ``expected`` (type -> state, total)."""
    views = [_shown(cluster, r) for r in relays]
    if any(v != views[0] for v in views):
        return None
    if {kind: (state, total) for kind, (_, state, total) in views[0].items()} != expected:
        return None
    return views[0]


def _split(relays: list[Relay]) -> tuple[Relay, list[Relay]]:
    leader_id = one_leader(*relays)
    leader = next(r for r in relays if r.peer_id == leader_id)
    return leader, [r for r in relays if r is not leader]


def test_every_relay_lists_every_issue_under_one_numbering_across_a_failover(
    cluster: Cluster,
) -> None:
    relays = _start(cluster, ("R1", "R2", "R3"))
    leader, survivors = _split(relays)
    machine = cluster.machine("M1")
    peers = [r.maddr for r in relays]
    kinds = sorted(ERRORS)
    cluster.run_clis([(machine, kind, peers) for kind in kinds])

    before = wait_until(
        lambda: _agreed(cluster, relays, dict.fromkeys(kinds, ("open", 1))),
        CONVERGE,
        "every relay's folder shows the 4 issues alike",
    )
    numbers = {kind: n for kind, (n, _, _) in before.items()}
    assert sorted(numbers.values()) == [1, 2, 3, 4]

    leader.kill()
    wait_until(lambda: one_leader(*survivors), 10, "a survivor leads")
    cluster.run_clis([(machine, kind, [r.maddr for r in survivors]) for kind in kinds])
    after = wait_until(
        lambda: _agreed(cluster, survivors, dict.fromkeys(kinds, ("open", 2))),
        CONVERGE,
        "the new leader updates the same issues",
    )
    assert {kind: n for kind, (n, _, _) in after.items()} == numbers

    for relay in survivors:  # what a person on each machine sees
        listed = _listed(cluster, relay)
        assert {k: (e["number"], e["total"]) for k, e in listed.items()} == {
            k: (numbers[k], 2) for k in kinds
        }
        rows = cluster.status_rows(relay)
        shown = {title_kind(row["title"]): row["issue"]["number"] for row in rows}
        assert shown == numbers  # distinct numbers, the same on every machine


def test_a_close_on_a_followers_machine_reaches_the_mesh_and_a_regression_reopens(
    cluster: Cluster,
) -> None:
    relays = _start(cluster, ("R1", "R2"))
    leader, (follower,) = _split(relays)
    machine = cluster.machine("M1")
    peers = [r.maddr for r in relays]
    cluster.run_clis([(machine, kind, peers) for kind in ("ValueError", "LookupError")])
    opened = wait_until(
        lambda: _agreed(cluster, relays, {"ValueError": ("open", 1), "LookupError": ("open", 1)}),
        CONVERGE,
        "both folders show both issues",
    )
    prefix = _listed(cluster, follower)["ValueError"]["file"][:12]  # <sig12>.md
    done = cluster.errmesh(follower, "issues", "close", prefix)
    assert done.returncode == 0, done.stderr
    assert "no errmesh relay" not in done.stderr  # the follower's relay took it
    closed = {"ValueError": ("closed", 1), "LookupError": ("open", 1)}
    wait_until(lambda: _agreed(cluster, relays, closed), CONVERGE, "the leader shows the close")
    store = {r.name: r.totals() for r in relays}
    assert store == {r.name: {"ValueError": 1, "LookupError": 1} for r in relays}

    cluster.run_clis([(machine, "ValueError", peers)])
    reopened = {"ValueError": ("open", 2), "LookupError": ("open", 1)}
    after = wait_until(
        lambda: _agreed(cluster, relays, reopened), CONVERGE, "the regression reopens it"
    )
    assert after["ValueError"][0] == opened["ValueError"][0]  # the same issue
    for relay in relays:
        entry = _listed(cluster, relay)["ValueError"]
        assert "regression" in entry["labels"], (relay.name, entry)
    assert leader.alive()
