"""Bans by connection and by address (mesh/gate.py), on an explicit clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.gate import BanGate, GateOptions


def test_a_banned_peer_is_refused_until_its_ban_runs_out() -> None:
    gate = BanGate(GateOptions(ban_for=10.0))
    assert gate.ban("attacker", "10.0.0.9", now=0.0).deny_ip is None
    assert gate.refuses("attacker", "10.0.0.9", now=5.0)
    assert not gate.refuses("honest", "10.0.0.9", now=5.0)  # its address is not refused yet
    assert gate.expire(now=10.0) == (["attacker"], [])
    assert not gate.refuses("attacker", "10.0.0.9", now=10.0)


def test_an_address_that_burns_through_identities_is_refused_itself() -> None:
    gate = BanGate(GateOptions(ban_for=10.0, ip_ban_after=3))
    assert gate.ban("id-1", "10.0.0.9", now=0.0).deny_ip is None
    assert gate.ban("id-2", "10.0.0.9", now=1.0).deny_ip is None
    assert gate.ban("id-3", "10.0.0.9", now=2.0).deny_ip == "10.0.0.9"
    assert gate.ban("id-4", "10.0.0.9", now=3.0).deny_ip is None  # already refused
    assert gate.refuses("id-5", "10.0.0.9", now=4.0)  # a fresh identity: still refused
    assert not gate.refuses("id-5", "10.0.0.1", now=4.0)  # another machine is not
    peers, ips = gate.expire(now=13.0)
    assert ips == ["10.0.0.9"] and sorted(peers) == ["id-1", "id-2", "id-3", "id-4"]


def test_bans_that_ran_out_do_not_count_toward_an_address_ban() -> None:
    gate = BanGate(GateOptions(ban_for=10.0, ip_ban_after=3))
    gate.ban("id-1", "10.0.0.9", now=0.0)
    gate.ban("id-2", "10.0.0.9", now=20.0)
    assert gate.ban("id-3", "10.0.0.9", now=21.0).deny_ip is None


def test_a_flood_of_identities_costs_bounded_memory() -> None:
    gate = BanGate(GateOptions(max_peers=100, max_ips=10))
    for i in range(50_000):
        gate.ban(f"id-{i}", f"10.0.{i // 256 % 256}.{i % 256}", now=float(i))
    assert len(gate.banned_peers) == 100
    assert len(gate) <= 100 + 10 + 10


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3), st.floats(0, 100)), max_size=60))
def test_a_refused_connection_always_has_a_running_ban(
    events: list[tuple[int, int, float]],
) -> None:
    gate = BanGate(GateOptions(ban_for=10.0, ip_ban_after=2))
    bans: list[tuple[str, str, float]] = []
    for peer, ip, now in sorted(events, key=lambda e: e[2]):
        gate.ban(f"p{peer}", f"10.0.0.{ip}", now)
        bans.append((f"p{peer}", f"10.0.0.{ip}", now))
    end = max((now for _, _, now in bans), default=0.0)
    for peer in range(31):
        for ip in range(4):
            if gate.refuses(f"p{peer}", f"10.0.0.{ip}", end):
                assert any(
                    (p == f"p{peer}" or a == f"10.0.0.{ip}") and t + 10.0 > end for p, a, t in bans
                )


def test_scoring_orders_its_thresholds_so_the_relays_ban_comes_first() -> None:
    """A connection is banned after 20 refused frames (score -20): gossip to it
    stops earlier (-10), its messages are dropped unread only later (-30),
    so the ban, which disconnects, is what an attacker meets."""
    from mesh.relay_policy import BAN_AFTER
    from mesh.scoring import ScoringOptions, score_params

    options = ScoringOptions()
    at_ban = -options.invalid_weight * BAN_AFTER
    assert options.gossip_threshold > at_ban > options.publish_threshold
    assert options.publish_threshold > options.graylist_threshold
    params = score_params(options)
    assert params.p4_invalid_messages.weight == options.invalid_weight
    assert params.graylist_threshold == options.graylist_threshold


def test_an_ignored_message_costs_its_forwarder_nothing() -> None:
    from libp2p.peer.id import ID
    from libp2p.pubsub.score import PeerScorer

    from mesh.scoring import install, score_params

    scorer = PeerScorer(score_params())
    mark = install(scorer)
    peer = ID(b"\x00\x24" + b"p" * 36)
    mark(True)
    scorer.on_invalid_message(peer, "t")
    assert scorer.score(peer, ["t"]) == 0.0
    mark(False)
    scorer.on_invalid_message(peer, "t")
    assert scorer.score(peer, ["t"]) == -1.0
