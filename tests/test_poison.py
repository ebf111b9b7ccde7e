"""A frame that passes the decoder must never kill a peer, now or after a restart.

A key holder with a bug, or a stolen key, can send frames whose every field
is within its type's bounds and still choose the worst values: counts at
2**63 - 1 from many origins (their sum no longer fits the wire), terms at
the ceiling (the next term would not), strings at their limits. The relay
stores what it merges, so a poison that breaks it breaks every restart too.

The property: any sequence of frames the decoder accepts, with integers at
the extremes, merged in any order through the relay's own receive path
(``node.merging.merge_reports`` / ``merge_records``, the functions its apply
loop calls) into a real store, leaves every frame the relay would send in
reply (digest, state answers, heartbeat, ack, issue links) encodable and
decodable, and the store opens again and says the same.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mesh_cluster import Cluster

from mesh import wire
from mesh.antientropy import digest_entry, digest_messages
from mesh.bounds import MAX_COUNT, MAX_NUMBER, MAX_TERM
from mesh.election import Election, Heartbeat, SendHeartbeat
from mesh.report import Occurrence, Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, OriginCount, SigState
from mesh.store import Store
from node.merging import merge_records, merge_reports, signatures_of
from node.state_parts import state_messages

KEY = b"k" * 32
#: The integers a hostile key holder picks first.
EXTREMES = (0, 1, 2**53 - 1, 2**53, 2**53 + 1, 2**62, 2**63 - 2, 2**63 - 1, 2**64 - 1, -1, -(2**63))
uints = st.sampled_from([n for n in EXTREMES if 0 <= n < 2**63]) | st.integers(0, 2**63 - 1)
terms = st.sampled_from([0, 1, MAX_TERM - 1, MAX_TERM]) | st.integers(0, MAX_TERM)
numbers = st.sampled_from([0, 1, MAX_NUMBER - 1, MAX_NUMBER]) | st.integers(0, MAX_NUMBER)
#: A few signatures and origins, so that frames collide on them.
sigs = st.sampled_from([bytes([i]) * 16 for i in range(3)])
origins = st.sampled_from([bytes([0x80 + i]) * 16 for i in range(6)])
times = st.sampled_from([0.0, -1e308, 1e308, 1.7976931348623157e308, -0.0]) | st.floats(
    allow_nan=False, allow_infinity=False
)
hosts = st.sampled_from(["", "h", "é" * 100, "x" * wire.MAX_NAME]) | st.binary(
    min_size=100, max_size=100
).map(bytes.hex)
severities = st.sampled_from(Severity)

reports = st.builds(
    Report,
    origin=origins,
    seq=uints,
    count=uints,
    signature=sigs,
    kind=st.just("exception"),
    exc_type=st.sampled_from(["E", "x" * wire.MAX_NAME]),
    message=st.sampled_from(["m", "y" * wire.MAX_TEXT]),
    host=hosts,
    timestamp=times,
    severity=severities,
    exit_code=st.none() | st.sampled_from([-(2**63), 2**63 - 1]),
)
occurrences = st.builds(
    Occurrence,
    origin=origins,
    signature=sigs,
    count=uints,
    first_seen=times,
    last_seen=times,
    host=hosts,
    severity=severities,
)
links = st.builds(
    IssueLink,
    ref=st.sampled_from(["o/r#1", "r" * wire.MAX_URL]),
    number=st.none() | numbers,
    url=st.just("u"),
    state=st.sampled_from(("open", "closed")),
    term=terms,
    synced_total=uints,
    synced_at=times,
    severity=severities,
)
counts = st.builds(OriginCount, count=uints, first_seen=times, last_seen=times, host=hosts)
states = st.builds(
    SigState,
    signature=sigs,
    detail=st.none() | reports,
    counts=st.dictionaries(origins, counts, max_size=6),
    severity=severities,
    link=st.none() | links,
    evicted_origins=uints,
)
messages = st.one_of(
    st.builds(wire.ReportMsg, report=reports),
    st.builds(wire.OccMsg, occurrences=st.lists(occurrences, min_size=1, max_size=4).map(tuple)),
    st.builds(wire.StateMsg, states=st.lists(states, min_size=1, max_size=3).map(tuple)),
    st.builds(
        wire.IssueMsg, links=st.lists(st.tuples(sigs, links), min_size=1, max_size=3).map(tuple)
    ),
    st.builds(
        wire.AckMsg, ids=st.lists(st.tuples(origins, uints), min_size=1, max_size=3).map(tuple)
    ),
    st.builds(
        wire.HeartbeatMsg,
        heartbeat=st.builds(
            Heartbeat,
            peer=st.sampled_from(["12D3KooWa", "12D3KooWz"]),
            priority=st.sampled_from([-(2**63), 0, 2**63 - 1]),
            term=terms,
            leading=st.booleans(),
        ),
    ),
)


def _int_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if type(value) is int:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _int_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _int_paths(v, (*path, i))]
    return []


@st.composite
def accepted_frames(draw: st.DrawFn) -> wire.Message:
    """A message the decoder accepts, one integer of it possibly pushed to an extreme
    by hand (the encoder would refuse what the decoder refuses, so go around it)."""
    msg = draw(messages)
    payload = wire.encode(msg)
    fields = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if "z" in fields:
        return msg
    paths = [p for p in _int_paths(fields) if p[0] != "v"]
    if paths and draw(st.booleans()):
        path = draw(st.sampled_from(paths))
        parent = fields
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = draw(st.sampled_from(EXTREMES))
        payload = msgpack.packb(fields, use_bin_type=True)
    frame = payload + wire._mac(KEY, payload)
    decoded = wire.decode(frame, KEY)
    if isinstance(decoded, wire.Rejected):
        return msg  # refused at the door: nothing of it reaches the relay
    return decoded


def round_trips(msg: wire.Message) -> None:
    """What the relay would send: it must encode, and decode to itself."""
    frame = wire.encode(msg, KEY)
    assert len(frame) <= wire.MAX_MESSAGE
    assert wire.decode(frame, KEY) == msg


def replies(store: Store, heartbeats: list[Heartbeat], stored: list[Report]) -> list[SigState]:
    """Every frame the relay would send after merging: all must round-trip."""
    all_states = [s for batch in store.iter_states() for s in batch]
    entries = {s.signature: digest_entry(s) for s in all_states}
    for digest in digest_messages(entries):
        round_trips(digest)
    for answer in state_messages(all_states):  # what any digest could draw
        round_trips(answer)
    election = Election(me="12D3KooWm", now=0.0, term=store.max_link_term())
    election.tick(0.0)
    beats = []
    for i, hb in enumerate(heartbeats):
        beats += election.receive(hb, 0.001 * (i + 1))
    beats += election.tick(1000.0)  # all expired; so long a silence reads as a pause:
    for _ in range(20):  # ticked at its deadlines, it settles again and leads
        if election.role == "leader":
            break
        beats += election.tick(election.next_deadline())
    assert election.role == "leader"
    for event in beats:
        if isinstance(event, SendHeartbeat):
            round_trips(wire.HeartbeatMsg(heartbeat=event.heartbeat))
    for start in range(0, len(stored), 64):
        ids = tuple((r.origin, r.seq) for r in stored[start : start + 64])
        round_trips(wire.AckMsg(ids=ids, acker="12D3KooWm"))
    # The links the leader would write and announce: its term, the state's total.
    announced = tuple(
        (
            s.signature,
            IssueLink(
                ref="o/r#1",
                number=1,
                url="u",
                state="open",
                term=election.term,
                synced_total=s.total,
                synced_at=1.0,
            ),
        )
        for s in all_states
    )
    if announced:
        round_trips(wire.IssueMsg(links=announced))
    return all_states


@settings(
    max_examples=int(os.environ.get("POISON_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frames=st.lists(accepted_frames(), min_size=1, max_size=12), data=st.data())
def test_accepted_frames_in_any_order_leave_every_reply_encodable(
    frames: list[wire.Message], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(frames))
    batch_size = data.draw(st.integers(1, len(order)))
    sender = "12D3KooWpoison"
    with tempfile.TemporaryDirectory() as tmp:
        stored: list[Report] = []
        with Store.open(Path(tmp)) as store:
            for start in range(0, len(order), batch_size):
                batch = [(m, sender) for m in order[start : start + batch_size]]
                acked, _ = merge_reports(store, batch)
                stored += [m.report for m, _ in acked]
                merge_records(store, batch)
            heartbeats = [m.heartbeat for m in order if isinstance(m, wire.HeartbeatMsg)]
            before = replies(store, heartbeats, stored)
            for state in before:
                assert 0 <= state.total <= MAX_COUNT
                assert state.link is None or state.link.term <= MAX_TERM
        with Store.open(Path(tmp)) as again:  # a restart reads the same, and replies the same
            assert replies(again, heartbeats, stored) == before
            assert again.statistics().unreadable_rows == 0
        assert {sig for m in order for sig in signatures_of(m)} >= {s.signature for s in before}


def test_the_largest_state_goes_out_in_frames_that_join_back(tmp_path: Path) -> None:
    """A detail as big as a frame allows and 256 origins with 200-byte random hosts,
    none of it compressible: more than one frame, so it travels in parts."""
    rand = lambda n: base64.b64encode(os.urandom(n * 3 // 4)).decode()[:n]  # noqa: E731
    detail = wire.bound_report(
        Report(
            origin=b"o" * 16,
            seq=1,
            count=1,
            signature=b"s" * 16,
            kind="exception",
            exc_type=rand(wire.MAX_NAME),
            message=rand(wire.MAX_TEXT),
            log_tail=tuple(rand(wire.MAX_LOG_LINE) for _ in range(wire.MAX_LOG_LINES)),
            argv=tuple(rand(wire.MAX_ARGV_ITEM) for _ in range(wire.MAX_ARGV)),
            host=rand(wire.MAX_NAME),
            timestamp=1.0,
        )
    )
    link = IssueLink(
        ref=rand(wire.MAX_URL),
        number=MAX_NUMBER,
        url=rand(wire.MAX_URL),
        state="open",
        term=MAX_TERM,
        synced_total=MAX_COUNT,
        synced_at=1.0,
    )
    big = SigState(
        signature=b"s" * 16,
        detail=detail,
        counts={
            os.urandom(16): OriginCount(
                count=2**63 - 1, first_seen=0.0, last_seen=1.0, host=rand(wire.MAX_NAME)
            )
            for _ in range(wire.MAX_ORIGINS)
        },
        link=link,
    )
    with Store.open(tmp_path / "a") as a, Store.open(tmp_path / "b") as b:
        (stored,) = a.merge_states([big])
        assert stored.total == MAX_COUNT
        answers = state_messages([stored])
        assert len(answers) > 1
        for answer in answers:
            round_trips(answer)
            b.merge_states(answer.states)
        assert b.load_state(big.signature) == stored


# ---------------------------------------------------------------------------
# End to end: a real relay, a real libp2p peer holding the cluster key


def _patched(msg: wire.Message, path: tuple[Any, ...], value: int, key: bytes) -> bytes:
    """``msg`` as a frame with one integer set past what our encoder allows."""
    fields = msgpack.unpackb(wire.encode(msg), raw=False, strict_map_key=False)
    parent = fields
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    payload = msgpack.packb(fields, use_bin_type=True)
    return bytes(payload) + wire._mac(key, payload)


@pytest.mark.slow
def test_a_relay_fed_poison_by_a_key_holder_stays_up_and_restarts(cluster: Cluster) -> None:
    """Counts whose sum overflows 64 bits, terms at and past the ceiling: the
    unmodified relay died of each (its digest or heartbeat no longer encoded)
    and, having stored them, died again at every restart."""
    from mesh_cluster import CONVERGE, STARTUP, wait_until
    from test_mesh import RawPeer

    relay = cluster.start_relay(cluster.relay("R1"))
    wait_until(lambda: relay.status().get("role") == "leader", STARTUP, "R1 leads")
    key = bytes.fromhex(cluster.key.read_text())
    raw = RawPeer(cluster, relay)

    sig = os.urandom(16)
    overflowing = wire.OccMsg(
        occurrences=tuple(
            Occurrence(
                origin=os.urandom(16), signature=sig, count=2**63 - 1,
                first_seen=-1e308, last_seen=1e308, host="x" * wire.MAX_NAME,
            )
            for _ in range(3)
        )
    )  # fmt: skip
    link = IssueLink(
        ref="o/r#1", number=MAX_NUMBER - 10, url="u", state="open",
        term=MAX_TERM, synced_total=2**63 - 1, synced_at=1e308,
    )  # fmt: skip
    issue = wire.IssueMsg(links=((sig, link),))
    at_ceiling = Heartbeat(peer=raw.peer_id, priority=-(2**63), term=MAX_TERM, leading=True)
    raw.publish("reports", wire.encode(overflowing, key))
    raw.publish(
        "control",
        wire.encode(issue, key),
        _patched(issue, ("l", 0, 1, "n"), 2**63 - 1, key),
        wire.encode(wire.HeartbeatMsg(heartbeat=at_ceiling), key),
        _patched(wire.HeartbeatMsg(heartbeat=at_ceiling), ("h", "t"), MAX_TERM + 1, key),
        _patched(wire.HeartbeatMsg(heartbeat=at_ceiling), ("h", "t"), 2**63 - 1, key),
    )
    wait_until(
        lambda: relay.rejected().get("out-of-range") == 3,
        CONVERGE,
        "both terms past the ceiling and the number past its ceiling are refused and counted",
    )
    sent = relay.status()["stats"].get("digests_sent", 0)
    wait_until(
        lambda: relay.status().get("stats", {}).get("digests_sent", 0) >= sent + 2,
        CONVERGE,
        "digests keep going out (the poisoned state's among them)",
    )
    status = relay.status()
    assert relay.alive(), relay.story()
    assert status["term"] == MAX_TERM and status["role"] == "leader", status
    assert relay.totals().get(sig.hex()) == MAX_COUNT

    # Still serving: a CLI's report is stored and acked.
    machine = cluster.machine("M1")
    cluster.run_clis([(machine, "ValueError", [relay.maddr])])
    assert machine.spool_rows() == 0
    wait_until(lambda: relay.totals().get("ValueError") == 1, CONVERGE, "the report is merged")

    # And it comes back on its stored state.
    relay.kill()
    cluster.start_relay(relay)
    wait_until(lambda: relay.status().get("role") == "leader", STARTUP, "R1 leads again")
    sent = relay.status()["stats"].get("digests_sent", 0)
    wait_until(
        lambda: relay.status().get("stats", {}).get("digests_sent", 0) >= sent + 2,
        CONVERGE,
        "the restarted relay sends digests of its stored state",
    )
    assert relay.alive(), relay.story()
    assert relay.status()["term"] == MAX_TERM
    assert relay.status()["faults"] == {}
    assert relay.totals() == {sig.hex(): MAX_COUNT, "ValueError": 1}
