"""The relay's decisions (mesh/relay_policy.py), without a network or a clock.

Each test names the rule of the module's docstring it shows. The relay
(node/relay.py) only carries these answers out, so what holds here holds for
the running relay.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh import defaults, wire
from mesh.relay_policy import (
    Backlog,
    Backoff,
    Dialer,
    Rejections,
    RelayOptions,
    StatusThrottle,
    acks_for,
    plan_drain,
)
from mesh.report import Report


def report(sig: int, origin: int = 1, seq: int = 1, count: int = 1, at: float = 10.0) -> Report:
    return Report(
        signature=bytes([sig]) * 32,
        origin=bytes([origin]) * 16,
        seq=seq,
        count=count,
        timestamp=at,
        kind="exception",
        exc_type="RuntimeError",
        message="boom",
    )


# -- rule 1: bounded intake -------------------------------------------------


def test_a_full_backlog_refuses_and_counts_instead_of_growing() -> None:
    backlog: Backlog[int] = Backlog(3)
    assert [backlog.offer(i) for i in range(5)] == [True, True, True, False, False]
    assert len(backlog) == 3 and backlog.dropped == 2
    assert backlog.take(2) == [0, 1]
    assert backlog.offer(9)
    assert backlog.take(10) == [2, 9]
    assert not backlog


@given(st.lists(st.one_of(st.integers(0, 5), st.none()), max_size=200), st.integers(1, 20))
def test_the_backlog_never_exceeds_its_limit_and_keeps_order(
    ops: list[int | None], limit: int
) -> None:
    backlog: Backlog[int] = Backlog(limit)
    model: list[int] = []
    offered = 0
    for op in ops:
        if op is None:
            assert backlog.take(2) == model[:2]
            del model[:2]
        else:
            offered += 1
            if backlog.offer(offered):
                model.append(offered)
        assert len(backlog) == len(model) <= limit
    assert backlog.dropped + len(model) <= offered


# -- rule 2: acks only from direct peers ------------------------------------


def test_acks_go_only_to_reports_that_asked_and_came_from_a_direct_peer() -> None:
    asked = wire.ReportMsg(report=report(1, seq=1), ack=True)
    relayed = wire.ReportMsg(report=report(1, seq=2), ack=True)
    quiet = wire.ReportMsg(report=report(1, seq=3), ack=False)
    acks = acks_for(
        [(asked, "cli"), (relayed, "far-away"), (quiet, "cli")],
        direct={"cli"},
        acker="me",
        batch=64,
    )
    assert acks == [wire.AckMsg(ids=((asked.report.origin, 1),), acker="me")]


def test_acks_are_batched() -> None:
    msgs = [(wire.ReportMsg(report=report(1, seq=i), ack=True), "cli") for i in range(1, 8)]
    acks = acks_for(msgs, direct={"cli"}, acker="me", batch=3)
    assert [len(a.ids) for a in acks] == [3, 3, 1]
    assert [seq for a in acks for _, seq in a.ids] == list(range(1, 8))


# -- rule 3: drains coalesce -------------------------------------------------


def test_a_drain_sends_one_report_per_new_signature_and_one_count_per_origin() -> None:
    pending = [
        report(1, seq=1, count=1, at=1.0),
        report(1, seq=2, count=2, at=5.0),
        report(1, origin=2, seq=1, count=7, at=3.0),
        report(2, seq=3, count=1, at=2.0),
    ]
    plan = plan_drain(pending, known={bytes([2]) * 32}, occ_batch=256)
    assert plan.reports == (pending[0],)  # the earliest; signature 2 is known here
    (occ,) = plan.occurrences
    counts = {
        (o.origin[0], o.signature[0]): (o.count, o.first_seen, o.last_seen) for o in occ.occurrences
    }
    assert counts == {(1, 1): (2, 1.0, 5.0), (2, 1): (7, 3.0, 3.0), (1, 2): (1, 2.0, 2.0)}


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 3), st.integers(1, 50)), max_size=80))
def test_a_drain_plan_holds_every_signature_and_the_highest_count(
    rows: list[tuple[int, int, int]],
) -> None:
    pending = [report(s, origin=o, seq=i + 1, count=c) for i, (s, o, c) in enumerate(rows)]
    plan = plan_drain(pending, known=(), occ_batch=4)
    assert all(len(m.occurrences) <= 4 for m in plan.occurrences)
    got = {(o.origin, o.signature): o.count for m in plan.occurrences for o in m.occurrences}
    want: dict[tuple[bytes, bytes], int] = {}
    for r in pending:
        want[(r.origin, r.signature)] = max(want.get((r.origin, r.signature), 0), r.count)
    assert got == want
    assert {r.signature for r in plan.reports} == {r.signature for r in pending}


# -- rule 4: refusals lead to bans, in bounded memory ------------------------


def test_every_ban_after_th_refusal_bans_the_signer() -> None:
    rejections = Rejections(ban_after=3)
    assert [rejections.refuse("bad-mac", "x") for _ in range(7)] == [
        False, False, True, False, False, True, False,
    ]  # fmt: skip
    assert rejections.banned == {"x"} and rejections.by_reason["bad-mac"] == 7


def test_a_flood_of_fresh_signers_costs_bounded_memory() -> None:
    rejections = Rejections(signers_max=100)
    for i in range(10_000):
        rejections.refuse("bad-mac", f"signer-{i}")
    assert len(rejections.by_signer) == 100
    assert rejections.by_reason["bad-mac"] == 10_000
    assert "signer-9999" in rejections.by_signer and "signer-0" not in rejections.by_signer


# -- rule 5: restarts back off ----------------------------------------------


def test_a_failing_duty_backs_off_and_recovers_after_a_good_run() -> None:
    backoff = Backoff(0.05, 5.0)
    delays = [backoff.failed(ran_for=0.0) for _ in range(10)]
    assert delays[:3] == [0.05, 0.1, 0.2] and delays[-1] == 5.0
    assert backoff.failed(ran_for=51.0) == 0.05  # it had run ten maxima


# -- rule 6: candidates dialled with backoff ---------------------------------


def test_only_the_leader_and_the_best_candidate_are_dialled() -> None:
    dialer = Dialer(RelayOptions())
    for peer in ("leader", "second", "third", "me"):
        dialer.heard(peer, (f"/ip4/10.0.0.1/tcp/4747/p2p/{peer}",))
    due = dialer.due(me="me", leader="leader", ranked=["second", "third"], direct=(), now=0.0)
    assert [p for p, _ in due] == ["leader", "second"]
    due = dialer.due(me="me", leader="leader", ranked=["second"], direct={"leader"}, now=0.0)
    assert [p for p, _ in due] == ["second"]


def test_an_unreachable_candidate_is_retried_with_doubling_delays() -> None:
    dialer = Dialer(RelayOptions(dial_min=1.0, dial_max=8.0))
    dialer.heard("leader", ("/ip4/10.0.0.1/tcp/1",))
    delays = [dialer.unreachable("leader", now=0.0) for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert dialer.due(me="me", leader="leader", ranked=[], direct=(), now=7.9) == []
    assert dialer.due(me="me", leader="leader", ranked=[], direct=(), now=8.1) != []
    dialer.reached("leader")
    assert dialer.unreachable("leader", now=0.0) == 1.0


def test_candidate_addresses_are_bounded() -> None:
    dialer = Dialer(RelayOptions(candidates_max=10))
    for i in range(1_000):
        dialer.heard(f"p{i}", ("/ip4/10.0.0.1/tcp/1",))
    assert len(dialer.addrs) == 10 and "p999" in dialer.addrs


# -- rule 7: status rewrites -------------------------------------------------


def test_status_is_rewritten_on_a_change_else_once_per_period() -> None:
    throttle = StatusThrottle(1.0)
    assert throttle.due(("follower", None, 0), 0.0)
    assert not throttle.due(("follower", None, 0), 0.5)
    assert throttle.due(("leader", "me", 1), 0.6)
    assert throttle.due(("leader", "me", 1), 1.7)


def test_a_relay_at_rest_rewrites_its_status_only_every_refresh_period() -> None:
    """An election change goes out at once; other changes at most once a
    ``every``; nothing changing, once a ``refresh``."""
    throttle = StatusThrottle(1.0, refresh=10.0)
    leading, counters = ("leader", "me", 1), (("reports", 1),)
    assert throttle.due(leading, 0.0, counters)
    assert not throttle.due(leading, 5.0, counters)  # at rest
    assert throttle.due(leading, 10.0, counters)  # the refresh
    assert not throttle.due(leading, 10.5, (("reports", 2),))  # changed, but within ``every``
    assert throttle.due(leading, 11.0, (("reports", 2),))
    assert throttle.due(("follower", "them", 2), 11.1, (("reports", 2),))  # at once
    assert not throttle.due(("follower", "them", 2), 20.0, (("reports", 2),))


# -- options -----------------------------------------------------------------


def test_options_refuse_nonsense_and_share_the_settings_defaults() -> None:
    with pytest.raises(ValueError, match="backlog_max"):
        RelayOptions(backlog_max=0)
    with pytest.raises(ValueError, match="minimum exceeds"):
        RelayOptions(dial_min=60.0)
    assert RelayOptions().backlog_max == defaults.BACKLOG_MAX
    assert all(getattr(RelayOptions(), f.name) > 0 for f in dataclasses.fields(RelayOptions))


def test_config_fills_the_relays_options() -> None:
    from node.compose import peer_options
    from node.config import resolve

    config = resolve(
        environ={
            "ERRMESH_BACKLOG_MAX": "123",
            "ERRMESH_DIGEST_BATCH": "64",
            "ERRMESH_DIGEST_EVERY": "9",
            "ERRMESH_HEARTBEAT": "0.25",
        }
    )
    options = peer_options(config, key=None)
    assert options.relay.backlog_max == 123
    assert options.antientropy.digest_batch == 64
    assert options.digest_every == 9.0 and options.heartbeat == 0.25
