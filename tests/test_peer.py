"""A relay's message handling, in process: a real store, a recording gossip fake.

The fake implements the part of ``mesh.gossip.Gossip`` the peer uses and
records what it publishes (trio's "fakes, not mocks"); the multi-process
behaviour over real libp2p is in test_mesh.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trio

from mesh import wire
from mesh.election import Heartbeat
from mesh.gossip import GossipCounters
from mesh.sigstate import OriginCount, SigState, state_fingerprint
from mesh.store import Store
from node.admission import RejectionCounter, make_validator
from node.relay import MeshPeer, PeerOptions

KEY = b"k" * 32
SIG = b"S" * 16


class RecordingGossip:
    peer_id = "12D3KooWrelayA"
    addrs = ("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWrelayA",)

    def __init__(self) -> None:
        self.sent: list[tuple[str, wire.Message]] = []
        self.direct: list[str] = []
        self.counters = GossipCounters()

    def queue_depths(self) -> dict[str, int]:
        return {}

    def peers(self) -> list[str]:
        return self.direct

    async def publish(self, topic: str, data: bytes, *, bulk: bool = False) -> None:
        decoded = wire.decode(data, KEY)
        assert not isinstance(decoded, wire.Rejected)
        self.sent.append((topic, decoded))


def peer_over(
    store: Store, clock: Callable[[], float] = lambda: 1000.0
) -> tuple[MeshPeer, RecordingGossip]:
    gossip = RecordingGossip()
    peer = MeshPeer(
        store=store,
        gossip=gossip,  # type: ignore[arg-type]
        options=PeerOptions(reports_topic="r", control_topic="c", key=KEY),
        sink=None,
        rejections=RejectionCounter(),
        clock=clock,
    )
    return peer, gossip


def state_from(origin: bytes, count: int) -> SigState:
    return SigState(
        signature=SIG,
        counts={origin: OriginCount(count=count, first_seen=1.0, last_seen=2.0, host="h")},
    )


def test_a_digest_with_equal_totals_but_another_state_is_answered(tmp_path: Path) -> None:
    """Each side heard a different origin 3 times: totals match, fingerprints do not."""
    with Store.open(tmp_path) as store:
        mine = store.merge_states([state_from(b"A" * 16, 3)])[0]
        theirs = state_from(b"B" * 16, 3)
        peer, gossip = peer_over(store)
        entry = wire.DigestEntry(
            signature=SIG, total=3, link_term=-1, link_synced_total=-1,
            fingerprint=state_fingerprint(theirs),
        )  # fmt: skip
        trio.run(peer.handle, wire.DigestMsg(entries=(entry,)), "12D3KooWrelayB")
        ((topic, answer),) = gossip.sent
        assert topic == "c"
        assert isinstance(answer, wire.StateMsg)
        assert answer.states == (mine,)
        # ... and merging the other side's answer yields the join on both.
        trio.run(peer.handle, wire.StateMsg(states=(theirs,)), "12D3KooWrelayB")
        joined = store.load_state(SIG)
        assert joined is not None
        assert joined.total == 6


def test_a_digest_of_the_same_state_is_not_answered(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        mine = store.merge_states([state_from(b"A" * 16, 3)])[0]
        peer, gossip = peer_over(store)
        entry = wire.DigestEntry(
            signature=SIG, total=3, link_term=-1, link_synced_total=-1,
            fingerprint=state_fingerprint(mine),
        )  # fmt: skip
        trio.run(peer.handle, wire.DigestMsg(entries=(entry,)), "12D3KooWrelayB")
        assert gossip.sent == []


def relay_given_a_report(
    tmp_path: Path, direct: list[str]
) -> tuple[Store, wire.ReportMsg, RecordingGossip]:
    """A relay (connected to ``direct``) that got a CLI's report from ``12D3KooWcli``."""
    from test_store import make_report

    with Store.open(tmp_path / "cli") as cli:
        report = cli.spool(make_report())
    relay_store = Store.open(tmp_path / "relay")
    peer, gossip = peer_over(relay_store)
    gossip.direct = direct
    msg = wire.ReportMsg(report=report)
    trio.run(peer.handle, msg, "12D3KooWcli")
    return relay_store, msg, gossip


def test_a_report_is_stored_before_it_is_acked(tmp_path: Path) -> None:
    relay_store, msg, gossip = relay_given_a_report(tmp_path, direct=["12D3KooWcli"])
    with relay_store:
        report = msg.report
        assert relay_store.load_state(report.signature) is not None
        ((topic, ack),) = gossip.sent
        assert topic == "c"
        assert isinstance(ack, wire.AckMsg)
        assert ack.ids == ((report.origin, report.seq),)
        assert ack.acker == gossip.peer_id


def test_only_the_reporters_direct_peers_ack(tmp_path: Path) -> None:
    """A report that reached us through another relay is stored, not acked:
    the reporter trusts only its configured relays, which it is connected to."""
    relay_store, msg, gossip = relay_given_a_report(tmp_path, direct=["12D3KooWanother-relay"])
    with relay_store:
        assert relay_store.load_state(msg.report.signature) is not None
        assert gossip.sent == []


def test_a_batch_is_merged_once_and_acked_together(tmp_path: Path) -> None:
    with Store.open(tmp_path / "cli") as cli, Store.open(tmp_path / "relay") as relay_store:
        from test_store import make_report

        reports = [cli.spool(make_report()) for _ in range(3)]
        peer, gossip = peer_over(relay_store)
        gossip.direct = ["12D3KooWcli"]
        batch: list[tuple[wire.Message, str]] = [
            (wire.ReportMsg(report=r), "12D3KooWcli") for r in reports
        ]
        trio.run(peer.apply, batch)
        state = relay_store.load_state(reports[0].signature)
        assert state is not None and state.total == 3
        ((topic, ack),) = gossip.sent
        assert topic == "c"
        assert isinstance(ack, wire.AckMsg)
        assert ack.ids == tuple((r.origin, r.seq) for r in reports)


def test_the_validator_refuses_forgeries_and_counts_by_reason() -> None:
    rejections = RejectionCounter()
    banned: list[str] = []
    validate = make_validator(KEY, rejections, on_ban=banned.append)
    hb = wire.HeartbeatMsg(
        heartbeat=Heartbeat(peer="12D3KooWother", priority=9, term=9, leading=True)
    )
    ack = wire.AckMsg(ids=((b"o" * 16, 1),), acker="12D3KooWother")
    assert validate("c", "12D3KooWother", "12D3KooWother", wire.encode(hb, KEY))
    assert not validate("c", "12D3KooWme", "12D3KooWme", wire.encode(hb, KEY))
    assert not validate("c", "12D3KooWme", "12D3KooWme", wire.encode(ack, KEY))
    assert not validate("c", "12D3KooWme", "12D3KooWme", wire.encode(ack, b"x" * 32))
    assert not validate("c", "12D3KooWme", "12D3KooWme", b"\x00garbage")
    # With a key, garbage fails the MAC check before anything is decoded.
    assert rejections.by_reason == {"forged-sender": 2, "bad-mac": 2}
    for _ in range(16):
        validate("c", "12D3KooWme", "12D3KooWme", b"junk")
    assert banned == ["12D3KooWme"]  # at 20 refusals


def test_a_newer_peers_frame_is_ignored_without_penalty() -> None:
    """A frame of a wire version or kind we do not know yet comes from a peer
    upgraded before us: dropped quietly (gossipsub's IGNORE), never a ban."""
    import msgpack

    rejections = RejectionCounter()
    banned: list[str] = []
    validate = make_validator(KEY, rejections, on_ban=banned.append)
    payload = msgpack.packb({"v": 2, "k": "report"})
    newer = payload + wire._mac(KEY, payload)
    for _ in range(50):
        assert validate("r", "12D3KooWnewer", "12D3KooWnewer", newer) == "ignore"
    assert banned == [] and rejections.by_reason == {"unknown-version": 50}
    assert "12D3KooWnewer" not in rejections.by_signer


def test_the_validator_bans_the_connection_not_the_fresh_signers_it_carries() -> None:
    """An attacker signing every frame with a new identity still delivers them
    over one connection: that connection's peer is what gets banned."""
    rejections = RejectionCounter()
    banned: list[str] = []
    validate = make_validator(KEY, rejections, on_ban=banned.append)
    for i in range(45):
        assert not validate("r", f"12D3KooWfresh{i}", "12D3KooWattacker", b"junk")
    assert banned == ["12D3KooWattacker", "12D3KooWattacker"]  # at 20 and 40
    assert rejections.by_reason["bad-mac"] == 45
    assert list(rejections.by_signer) == ["12D3KooWattacker"]  # one entry, not 45


def test_a_split_digest_still_shows_what_its_sender_lacks(tmp_path: Path) -> None:
    """Only signatures inside a batch's (after, until] range count as lacking."""
    sigs = [bytes([i]) * 16 for i in (1, 2, 3, 4)]
    with Store.open(tmp_path) as store:
        store.merge_states(
            [SigState(signature=s, counts=state_from(b"A" * 16, 1).counts) for s in sigs]
        )
        peer, gossip = peer_over(store)
        # A batch covering (sig1, sig3] that holds none of them: sig2 and sig3 are lacking.
        digest = wire.DigestMsg(entries=(), after=sigs[0], until=sigs[2])
        trio.run(peer.handle, digest, "12D3KooWrelayB")
        ((_, answer),) = gossip.sent
        assert isinstance(answer, wire.StateMsg)
        assert [s.signature for s in answer.states] == [sigs[1], sigs[2]]


def test_a_difference_younger_than_gossip_is_left_to_gossip(tmp_path: Path) -> None:
    """Our state just changed: the message that changed it is probably on its
    way to the digest's sender too, so we answer only once it is older."""
    from trio.testing import MockClock

    from mesh.antientropy import AntiEntropyOptions

    ANSWER_DEFER_MAX = AntiEntropyOptions().answer_defer_max
    ANSWER_YOUNG = AntiEntropyOptions().answer_young

    with Store.open(tmp_path) as store:
        peer, gossip = peer_over(store)
        lacks_everything = wire.DigestMsg(entries=())

        async def scenario() -> None:
            await peer.handle(wire.StateMsg(states=(state_from(b"A" * 16, 3),)), "12D3KooWrelayC")
            await peer.handle(lacks_everything, "12D3KooWrelayB")
            assert gossip.sent == []
            await trio.sleep(ANSWER_YOUNG)
            await peer.handle(lacks_everything, "12D3KooWrelayB")
            assert [type(m) for _, m in gossip.sent] == [wire.StateMsg]

            # A signature that changes all the time is still answered, late.
            gossip.sent.clear()
            started = trio.current_time()
            while not gossip.sent:
                count = 4 + round(trio.current_time() - started)
                await peer.handle(
                    wire.StateMsg(states=(state_from(b"A" * 16, count),)), "12D3KooWrelayC"
                )
                await peer.handle(lacks_everything, "12D3KooWrelayB")
                await trio.sleep(0.5)
            assert trio.current_time() - started <= ANSWER_DEFER_MAX + 2.5

        trio.run(scenario, clock=MockClock(autojump_threshold=0))


def test_another_relays_answer_spares_ours(tmp_path: Path) -> None:
    """A state answer reaches every peer; repeating it would only cost CPU."""
    from trio.testing import MockClock

    from mesh.antientropy import AntiEntropyOptions

    ANSWER_QUIET = AntiEntropyOptions().answer_quiet

    with Store.open(tmp_path) as store:
        store.merge_states([state_from(b"A" * 16, 3)])
        peer, gossip = peer_over(store)
        lacks_everything = wire.DigestMsg(entries=())

        async def scenario() -> None:
            peer.accept(wire.StateMsg(states=(state_from(b"A" * 16, 3),)), "12D3KooWrelayC")
            await peer.handle(lacks_everything, "12D3KooWrelayB")
            assert gossip.sent == []
            await trio.sleep(ANSWER_QUIET)
            await peer.handle(lacks_everything, "12D3KooWrelayB")
            assert [type(m) for _, m in gossip.sent] == [wire.StateMsg]

        trio.run(scenario, clock=MockClock(autojump_threshold=0))


def _poison_signature(store: Store, sig: bytes) -> None:
    """A real SQLite trigger refusing every write of one signature's state:
    a fault that follows one signature, whatever the code around it."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        for event in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER poison_{event.lower()} BEFORE {event} ON states "
                f"WHEN NEW.sig = x'{sig.hex()}' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
            )


def test_a_poisoned_signature_costs_only_itself_and_is_quarantined(tmp_path: Path) -> None:
    """One message whose merge fails, in a batch with good ones: the good ones are
    stored and acked, the fault is counted, and after 3 failures the signature
    is quarantined (listed in the status, skipped by digest answers)."""
    from test_store import make_report

    from node.faults import QUARANTINE_AFTER

    poisoned = b"P" * 16
    with Store.open(tmp_path / "cli") as cli, Store.open(tmp_path / "relay") as relay_store:
        good = cli.spool(make_report())
        bad = cli.spool(make_report(sig=poisoned))
        _poison_signature(relay_store, poisoned)
        peer, gossip = peer_over(relay_store)
        gossip.direct = ["12D3KooWcli"]
        for _ in range(QUARANTINE_AFTER):
            batch: list[tuple[wire.Message, str]] = [
                (wire.ReportMsg(report=bad), "12D3KooWcli"),
                (wire.ReportMsg(report=good), "12D3KooWcli"),
                (wire.StateMsg(states=(state_from(b"A" * 16, 2),)), "12D3KooWrelayB"),
            ]
            trio.run(peer.apply, batch)
        assert relay_store.load_state(good.signature) is not None
        assert relay_store.load_state(poisoned) is None
        acked = {i for _, m in gossip.sent if isinstance(m, wire.AckMsg) for i in m.ids}
        assert acked == {(good.origin, good.seq)}, "only what was stored is acked"
        status = peer.status()
        assert status["faults"]["apply"] == QUARANTINE_AFTER
        assert status["quarantined"] == [poisoned.hex()]
        assert status["store"]["ok"] is True

        # Quarantined: the next copy is not even tried.
        trio.run(peer.apply, [(wire.ReportMsg(report=bad), "12D3KooWcli")])
        assert peer.status()["faults"]["apply"] == QUARANTINE_AFTER


def test_faults_and_the_store_show_in_the_metrics(tmp_path: Path) -> None:
    from mesh.errors import StoreUnavailable
    from node.metrics import relay_registry, scrape

    with Store.open(tmp_path) as store:
        peer, _ = peer_over(store)
        registry = relay_registry(peer)
        peer.faults.store_failed(StoreUnavailable("cannot merge: database or disk is full"))
        peer.faults.fault("answer", ValueError("x"), (SIG,))
        text = scrape(registry).decode()
        assert "errmesh_store_ok 0.0\n" in text
        assert 'errmesh_faults_total{loop="answer"} 1.0\n' in text
        assert 'errmesh_faults_total{loop="store"} 1.0\n' in text
        assert 'errmesh_faults_total{loop="drain"} 0.0\n' in text, "known loops start at zero"
        assert peer.status()["store"]["error"] == "cannot merge: database or disk is full"
        peer.faults.store_ok()
        assert "errmesh_store_ok 1.0\n" in scrape(registry).decode()


def test_the_lag_histogram_counts_each_message_in_its_bucket(tmp_path: Path) -> None:
    """Buckets are cumulative (Prometheus' le): a 0.3 s wait is in 0.5 and above."""
    from prometheus_client.parser import text_string_to_metric_families

    from node.metrics import relay_registry, scrape

    with Store.open(tmp_path) as store:
        peer, _ = peer_over(store)
        beat = Heartbeat(peer="12D3KooWrelayB", priority=0, term=1, leading=False)
        for lag in (0.002, 0.3, 0.3, 7.0):
            peer.accept(wire.HeartbeatMsg(heartbeat=beat), "12D3KooWrelayB", lag)
        families = {
            f.name: f for f in text_string_to_metric_families(scrape(relay_registry(peer)).decode())
        }
        samples = {
            (s.name, s.labels.get("le")): s.value
            for s in families["errmesh_gossip_lag_seconds"].samples
            if s.labels["kind"] == "HeartbeatMsg"
        }
        bucket = "errmesh_gossip_lag_seconds_bucket"
        assert samples[(bucket, "0.001")] == 0
        assert samples[(bucket, "0.005")] == 1
        assert samples[(bucket, "0.25")] == 1
        assert samples[(bucket, "0.5")] == 3
        assert samples[(bucket, "5.0")] == 3
        assert samples[(bucket, "+Inf")] == samples[("errmesh_gossip_lag_seconds_count", None)] == 4
        assert samples[("errmesh_gossip_lag_seconds_sum", None)] == 7.602
        assert peer.status()["lag_max_ms"]["HeartbeatMsg"] == 7000.0


def test_a_wall_clock_stepped_back_does_not_stop_the_election(tmp_path: Path) -> None:
    """NTP may step time.time() back; the election refuses time going back."""
    now = [1000.0]
    with Store.open(tmp_path) as store:
        peer, _ = peer_over(store, lambda: now[0])
        beat = Heartbeat(peer="12D3KooWrelayB", priority=0, term=1, leading=True)
        trio.run(peer.handle, wire.HeartbeatMsg(heartbeat=beat), "12D3KooWrelayB")
        now[0] = 940.0  # stepped back a minute
        trio.run(peer.handle, wire.HeartbeatMsg(heartbeat=beat), "12D3KooWrelayB")
        assert peer.election.leader == "12D3KooWrelayB"


def test_the_sinks_gate_holds_only_in_the_round_term_on_a_fresh_view(tmp_path: Path) -> None:
    """``MeshPeer._may_write`` is checked before every GitHub write and retry.

    A request begun in term 1, stuck while the leader was cut off, and
    retried after it came back leading in term 3 must not go out: its round
    was planned before it knew the other side's issues (the cluster's
    link-down scenario opened a duplicate so). Nor may one go out right
    after a pause, before the election has ticked.
    """
    from github_sink.file_sink import FileSink

    now = [100.0]
    with Store.open(tmp_path / "store") as store:
        peer = MeshPeer(
            store=store,
            gossip=RecordingGossip(),  # type: ignore[arg-type]
            options=PeerOptions(reports_topic="r", control_topic="c", key=KEY),
            sink=FileSink(tmp_path / "issues"),
            rejections=RejectionCounter(),
            monotonic=lambda: now[0],
        )
        election = peer.election
        while election.role != "leader":  # alone: it leads once settled
            now[0] = min(election.next_deadline(), now[0] + 0.5)
            election.tick(now[0])
        assert peer._may_write(), "leading, between rounds"
        peer.leading.round_term = election.term
        assert peer._may_write(), "leading, in the round's own term"
        peer.leading.round_term = election.term - 1 if election.term > 1 else 0
        assert not peer._may_write(), "the round was planned in an older term"
        peer.leading.round_term = None
        now[0] += 10.0  # SIGSTOP, SIGCONT: nothing ticked yet
        assert not peer._may_write(), "a stale view: the lease ran out"
