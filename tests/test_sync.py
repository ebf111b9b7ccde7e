"""A relay that connects to another pulls what it lacks over a stream of their own.

``mesh.sync`` decides when to pull and what to send; ``node.sync_stream``
carries it out over a direct libp2p stream. The rules are tested without a
network first, then with real relays in their own processes.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import time
from pathlib import Path

import pytest
from mesh_cluster import CLUSTER, CONVERGE, STARTUP, Cluster, Relay, print_figure, wait_until

from mesh import wire
from mesh.aggregate import Aggregate
from mesh.antientropy import AntiEntropy, digest_entry, digest_messages
from mesh.report import Report
from mesh.sigstate import state_of_report
from mesh.store import Store
from mesh.sync import SyncOptions, SyncSchedule, ahead, to_send, to_spread


def a_report(i: int, count: int = 1) -> Report:
    return Report(
        origin=b"o" * 16,
        seq=i + 1,
        count=count,
        signature=i.to_bytes(16, "big"),
        kind="exception",
        exc_type=f"acme.errors.Error{i}",
        message=f"error number {i}",
        host="web-1",
        timestamp=1_800_000_000.0 + i,
    )


def entries(*reports: Report) -> dict[bytes, wire.DigestEntry]:
    return {r.signature: digest_entry(state_of_report(r)) for r in reports}


# -- what is sent ------------------------------------------------------------


def test_a_joiner_with_nothing_is_sent_everything() -> None:
    mine = entries(*(a_report(i) for i in range(5)))
    assert to_send(mine, digest_messages({})) == sorted(mine)


def test_only_what_the_puller_lacks_or_holds_behind_is_sent() -> None:
    same, newer, missing = a_report(1), a_report(2, count=5), a_report(3)
    mine = entries(same, newer, missing)
    theirs = entries(same, a_report(2, count=1))
    assert to_send(mine, digest_messages(theirs)) == [newer.signature, missing.signature]


def test_a_puller_ahead_gets_nothing_for_that_signature() -> None:
    mine = entries(a_report(2, count=1))
    theirs = entries(a_report(2, count=9))
    assert to_send(mine, digest_messages(theirs)) == []


def test_signatures_outside_the_digests_ranges_are_not_sent() -> None:
    mine = entries(*(a_report(i) for i in range(10)))
    first_half = digest_messages(entries(*(a_report(i) for i in range(10))), batch=5)[0]
    assert first_half.until  # it covers only the first five
    assert to_send(mine, [first_half]) == []  # it holds those five already
    assert to_send(mine, [wire.DigestMsg(entries=(), after=first_half.until)]) == sorted(mine)[5:]


# -- when to pull ------------------------------------------------------------


def test_a_bootstrap_peer_is_pulled_from_when_its_connection_opens() -> None:
    schedule = SyncSchedule()
    assert schedule.connected("boot", 0.0, bootstrap=True)
    assert not schedule.connected("cli", 0.0, bootstrap=False)  # a failing CLI, maybe
    assert not schedule.heard("boot", 1.0, direct=True)  # already pulling


def test_a_peer_heard_beating_is_pulled_from_once_per_connection() -> None:
    schedule = SyncSchedule()
    assert not schedule.heard("r2", 0.0, direct=False)  # heard through a third relay
    assert schedule.heard("r2", 1.0, direct=True)
    schedule.pulled("r2", 2.0, ok=True)
    assert not schedule.heard("r2", 3.0, direct=True)
    assert schedule.connected("r2", 4.0, bootstrap=False)  # a relay now: back after a cut


def test_a_failed_pull_is_retried_later_and_later() -> None:
    options = SyncOptions(retry_after=2.0, retry_max=5.0)
    schedule = SyncSchedule(options)
    assert schedule.heard("r2", 0.0, direct=True)
    schedule.pulled("r2", 0.0, ok=False)
    assert not schedule.heard("r2", 1.9, direct=True)
    assert schedule.heard("r2", 2.0, direct=True)
    schedule.pulled("r2", 2.0, ok=False)
    assert not schedule.heard("r2", 5.9, direct=True)  # 4 s now
    assert schedule.heard("r2", 6.0, direct=True)
    schedule.pulled("r2", 6.0, ok=False)
    assert not schedule.heard("r2", 10.9, direct=True)  # capped at 5 s
    assert schedule.heard("r2", 11.0, direct=True)


def test_pulls_and_serves_are_bounded() -> None:
    schedule = SyncSchedule(SyncOptions(pulls_at_once=1, serves_at_once=2, serve_every=5.0))
    assert schedule.heard("a", 0.0, direct=True)
    assert not schedule.heard("b", 0.0, direct=True)  # one at a time
    assert schedule.may_serve("x", 0.0) and schedule.may_serve("y", 0.0)
    assert not schedule.may_serve("z", 0.0)  # two at once
    schedule.served("x", 0.5, completed=True)
    schedule.served("y", 0.5, completed=False)  # ended on a bad frame
    assert not schedule.may_serve("x", 1.0)  # x was served half a second ago
    assert schedule.may_serve("y", 1.0) and schedule.may_serve("z", 1.0)
    assert not schedule.may_serve("w", 1.0)  # y's and z's: two at once


def test_the_peers_remembered_are_bounded() -> None:
    schedule = SyncSchedule(SyncOptions(max_peers=3))
    for i in range(100):
        schedule.heard(f"p{i}", float(i), direct=False)
    assert len(schedule._peers) == 3


# -- rounds: one peer at a time -------------------------------------------------


def test_a_round_pulls_from_one_connected_relay_at_random() -> None:
    schedule = SyncSchedule(rng=random.Random(7))
    for relay in ("r1", "r2", "r3"):
        schedule.heard(relay, 0.0, direct=False)  # relays, heard through others
    picked = set()
    for t in range(0, 400, 4):
        peer = schedule.round(["r1", "r2", "r3", "cli"], float(t))
        assert peer in ("r1", "r2", "r3")  # a known relay before a stranger
        schedule.pulled(peer, float(t), ok=True)
        picked.add(peer)
    assert picked == {"r1", "r2", "r3"}


def test_a_round_leaves_a_peer_it_pulled_from_moments_ago() -> None:
    """So that the peer's ``serve_every`` does not refuse the pull."""
    schedule = SyncSchedule(SyncOptions(serve_every=2.0))
    schedule.heard("r1", 0.0, direct=False)
    assert schedule.round(["r1"], 0.0) == "r1"
    schedule.pulled("r1", 0.5, ok=True)
    assert schedule.round(["r1"], 3.4) is None  # 2.9 s: within serve_every + 1
    assert schedule.round(["r1"], 3.5) == "r1"


def test_with_no_relay_due_a_round_tries_a_stranger_and_learns() -> None:
    """How observers (which send no heartbeat) find each other."""
    schedule = SyncSchedule(SyncOptions(retry_after=2.0))
    assert schedule.round(["x"], 0.0) == "x"
    schedule.pulled("x", 0.1, ok=False)  # a failing CLI: no sync protocol
    assert schedule.round(["x"], 1.0) is None  # backing off: the digest goes to the topic
    assert schedule.round(["x", "y"], 1.0) == "y"
    schedule.pulled("y", 1.1, ok=True)  # y served us: a relay
    schedule.pulled("x", 1.2, ok=False)
    assert not schedule.connected("x", 9.0, bootstrap=False)
    assert schedule.connected("y", 9.0, bootstrap=False)  # a relay: pulled on connect


def test_a_peer_that_pulls_from_us_is_a_relay() -> None:
    schedule = SyncSchedule()
    assert schedule.may_serve("obs", 0.0)
    schedule.served("obs", 0.1, completed=True)
    assert schedule.connected("obs", 1.0, bootstrap=False)


def test_no_round_while_the_pulls_are_all_running() -> None:
    schedule = SyncSchedule(SyncOptions(pulls_at_once=1))
    assert schedule.connected("boot", 0.0, bootstrap=True)  # a big first pull
    assert schedule.round(["boot", "r2"], 1.0) is None


def test_a_puller_ahead_is_pulled_from_in_turn() -> None:
    behind, further = entries(a_report(1, count=1)), entries(a_report(1, count=4))
    assert ahead(behind, digest_messages(further))
    assert ahead({}, digest_messages(further))  # it holds one we lack
    assert not ahead(further, digest_messages(behind))
    assert not ahead(further, digest_messages(further))
    schedule = SyncSchedule()
    assert schedule.heard("r2", 0.0, direct=True)
    schedule.pulled("r2", 1.0, ok=True)
    assert not schedule.heard("r2", 2.0, direct=True)  # once per connection...
    assert schedule.ahead("r2", 2.0)  # ...unless its digest shows it knows more


def test_only_a_join_nobody_holds_is_spread() -> None:
    """Across a healed partition both sides counted: the join is news to both.
    A joiner, or a relay that missed a message, merely catches up."""
    ours, theirs = a_report(1, count=2), a_report(1, count=3)
    theirs = dataclasses.replace(theirs, origin=b"p" * 16)
    lacked = a_report(2)
    agg = Aggregate()
    agg.add_report(ours)
    sent = [state_of_report(theirs), state_of_report(lacked)]
    for state in sent:
        agg.merge_state(state)
    held = {s.signature: digest_entry(s) for s in agg}
    assert to_spread(sent, held) == [ours.signature]
    assert held[ours.signature].total == 5


def test_a_spread_state_already_sent_by_another_relay_is_not_sent_again() -> None:
    agg = Aggregate()
    state = agg.add_report(a_report(1))
    ae = AntiEntropy()
    ae.note([state], 0.0)
    ae.heard_answer([state], 10.0)  # a relay beside us published the same join
    assert ae.unanswered([state.signature], 11.0) == []
    assert ae.unanswered([state.signature], 12.5) == [state.signature]
    assert ae.unanswered([state.signature], 13.0) == []  # ours counts now


# -- real relays ---------------------------------------------------------------


def preload(state_dir: Path, n: int) -> None:
    with Store.open(state_dir / CLUSTER, sync="normal") as store:
        for first in range(0, n, 500):
            store.merge_reports(a_report(i) for i in range(first, min(n, first + 500)))


def pulls(relay: Relay) -> int:
    return int(relay.status()["stats"].get("sync_pulls", 0))


def signatures(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM states").fetchone()[0])


@pytest.mark.slow
def test_a_relay_joining_a_mesh_of_thousands_of_signatures_holds_them_all_in_seconds(
    cluster: Cluster,
) -> None:
    n = 3000
    r1 = cluster.relay("R1")
    preload(r1.state_dir, n)
    cluster.start_relay(r1)
    wait_until(lambda: r1.status().get("role") == "leader", STARTUP, "R1 leads")

    started = time.monotonic()
    r2 = cluster.start_relay(cluster.relay("R2"), bootstrap=[r1])
    wait_until(lambda: signatures(r2.db) >= n, CONVERGE, f"R2 holds all {n} signatures")
    took = time.monotonic() - started
    print_figure(f"a joining relay held {n} signatures {took:.1f} s after it was started")

    # Topic anti-entropy runs too (R1 answers R2's first digest), so some
    # states come both ways; most must have come over the stream.
    pulled = wait_until(
        lambda: r2.status()["stats"].get("sync_states_pulled", 0) >= n // 2 or None,
        CONVERGE,
        "R2's status counts the states it pulled",
    )
    assert pulled
    wait_until(
        lambda: r1.status()["stats"].get("sync_served", 0) >= 1, CONVERGE, "R1 served the pull"
    )


@pytest.mark.slow
def test_two_relays_that_meet_each_pull_what_the_other_holds(cluster: Cluster) -> None:
    """Both sides of the new connection pull: the exchange is push-pull (a
    relay back from a partition reconnects the same way)."""
    r1, r2 = cluster.relay("R1"), cluster.relay("R2")
    preload(r1.state_dir, 200)
    with Store.open(r2.state_dir / CLUSTER, sync="normal") as store:
        store.merge_reports(a_report(i) for i in range(1000, 1300))
    cluster.start_relay(r1)
    cluster.start_relay(r2, bootstrap=[r1])
    wait_until(lambda: signatures(r1.db) == signatures(r2.db) == 500, CONVERGE, "both hold all 500")
    for relay in (r1, r2):
        wait_until(lambda r=relay: pulls(r) >= 1, CONVERGE, f"{relay.name} pulled from the other")


@pytest.mark.slow
def test_in_steady_state_a_round_is_a_pull_from_one_relay_not_a_digest_to_all(
    cluster: Cluster,
) -> None:
    """Every ``digest_every`` each relay pulls from one peer (``mesh.sync``
    rule 6): no relay sends its digest to the topic while it has a relay to
    pull from, so what a relay hears of anti-entropy does not grow with the fleet."""
    r1, r2, r3 = cluster.relay("R1"), cluster.relay("R2"), cluster.relay("R3")
    cluster.start_relay(r1)
    cluster.start_relay(r2, bootstrap=[r1])
    cluster.start_relay(r3, bootstrap=[r1, r2])

    def stat(relay: Relay, name: str) -> int:
        return int(relay.status().get("stats", {}).get(name, 0))

    relays = (r1, r2, r3)
    wait_until(lambda: all(stat(r, "sync_rounds") >= 1 for r in relays), CONVERGE, "rounds run")
    digests = {r.name: stat(r, "digests_sent") for r in relays}
    rounds = {r.name: stat(r, "sync_rounds") for r in relays}
    wait_until(
        lambda: all(stat(r, "sync_rounds") >= rounds[r.name] + 2 for r in relays),
        CONVERGE,
        "two more rounds on every relay",
    )
    assert {r.name: stat(r, "digests_sent") for r in relays} == digests
    assert all(stat(r, "sync_served") >= 1 for r in relays)


def test_the_sync_protocol_is_named_for_the_cluster() -> None:
    from node.sync_stream import protocol_of

    assert protocol_of("/errmesh/prod/control/1") == "/errmesh/prod/sync/1"


@pytest.mark.slow
def test_a_pull_by_hand_gets_states_and_a_bad_one_gets_nothing(cluster: Cluster) -> None:
    """A key holder that misbehaves on the stream costs a session, never the relay.

    The raw peer is in the private network but builds every frame itself: a
    pull with a forged MAC, one of the wrong kind, and a frame longer than
    the wire allows end the session with nothing sent, and the relay goes
    on; a pull with the cluster key's MAC is answered with every state.
    """
    from test_mesh import RawPeer

    r1 = cluster.relay("R1")
    preload(r1.state_dir, 40)
    cluster.start_relay(r1)
    wait_until(lambda: r1.status().get("role") == "leader", STARTUP, "R1 leads")
    key = bytes.fromhex(cluster.key.read_text())
    raw = RawPeer(cluster, r1)
    peer = r1.peer_id

    forged = wire.encode(digest_messages({})[0], b"k" * 32)
    wrong_kind = wire.encode(wire.StateMsg(states=()), key)
    for name, bad in (("forged", forged), ("wrong kind", wrong_kind)):
        answer = raw.sync(peer, bad)
        assert answer["frames"] == [] and not answer["ended"], (name, answer)
    too_long = (wire.MAX_MESSAGE + 1).to_bytes(4, "big") + b"x" * 64
    answer = raw.sync(peer, raw=too_long)
    assert answer["frames"] == [] and not answer["ended"], answer

    good = raw.sync(peer, *(wire.encode(m, key) for m in digest_messages({})))
    assert good["ended"] and not good["error"], good
    states = [wire.decode(bytes.fromhex(f), key) for f in good["frames"]]
    assert sum(len(m.states) for m in states if isinstance(m, wire.StateMsg)) == 40
    # A peer served in full waits before it is served again (the costly part).
    assert raw.sync(peer, *(wire.encode(m, key) for m in digest_messages({})))["frames"] == []
    wait_until(
        lambda: r1.status()["stats"].get("sync_aborted", 0) >= 3,
        CONVERGE,
        "R1 counts the three bad sessions",
    )
    assert r1.alive and r1.status()["role"] == "leader"
