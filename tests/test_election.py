"""The election, first one rule at a time, then whole clusters in virtual time.

``Cluster`` wires pure ``Election``s together in memory, the way h11's tests
wire two connections: one global virtual clock (each peer reads it plus its
own offset), heartbeats over links with a delay, random loss, and
partitions. Every time in these tests is a multiple of 1/64 s, so float
arithmetic stays exact and the asserted instants are exact.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mesh.election import (
    BecameLeader,
    Election,
    ElectionConfig,
    ElectionEvent,
    ElectionStatistics,
    Heartbeat,
    LeaderChanged,
    Role,
    SendHeartbeat,
    SteppedDown,
)
from mesh.errors import LocalError

TICK = 1 / 64
#: The rule-by-rule tests use a 1.5 s timeout (the product's is 3 s, see
#: test_config_derived_timings): shorter scenarios, the same rules.
DEFAULT = ElectionConfig(
    follower_beats=1, timeout_beats=3
)  # heartbeat 0.5 s, timeout 1.5 s, settle 1.5 s


def run_until(e: Election, until: float) -> list[Any]:
    """Tick ``e`` at each of its deadlines up to ``until``, as a driver does.

    One call ``tick(until)`` after a long silence would read as a pause
    (the process stopped) and make a leader step down.
    """
    events: list[Any] = []
    while (due := e.next_deadline()) <= until:
        events += e.tick(due)
    return events + e.tick(until)


def hb(peer: str, *, priority: int = 0, term: int = 0, leading: bool = False) -> Heartbeat:
    return Heartbeat(peer=peer, priority=priority, term=term, leading=leading)


# ---------------------------------------------------------------------------
# The in-memory cluster


@dataclass
class Node:
    peer: str
    priority: int
    eligible: bool
    offset: float  # this peer's clock reads global time + offset
    election: Election
    joined_at: float
    incarnation: int

    def local(self, now: float) -> float:
        return now + self.offset


@dataclass(frozen=True)
class Logged:
    at: float  # global virtual time
    peer: str
    event: ElectionEvent


@dataclass
class Cluster:
    """Pure elections wired together; a fake network driven by a virtual clock.

    A heartbeat is sent to every peer that is up and on the sender's side of
    the partition, may be lost (probability ``loss``), and arrives after the
    link's delay plus up to ``jitter`` (so it may overtake an earlier one).
    A peer's ``tick`` runs exactly at its ``next_deadline()``, as a trio
    driver sleeping until then would.
    """

    config: ElectionConfig = DEFAULT
    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    now: float = 0.0
    nodes: dict[str, Node] = field(default_factory=dict)  # the peers that are up
    link_delay: dict[tuple[str, str], float] = field(default_factory=dict)
    sides: dict[str, int] = field(default_factory=dict)  # partition: peer -> side (default 0)
    history: list[Logged] = field(default_factory=list)
    last_heard: dict[tuple[str, str], float] = field(default_factory=dict)  # (to, from) -> at
    checks: list[Callable[[Cluster], None]] = field(default_factory=list)
    _queue: list[tuple[float, int, str, int, Heartbeat]] = field(default_factory=list)
    _notices: list[tuple[float, int, str, int, str]] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _incarnations: itertools.count[int] = field(default_factory=itertools.count)

    # -- script --------------------------------------------------------------

    def join(
        self, peer: str, *, priority: int = 0, eligible: bool = True, offset: float = 0.0
    ) -> None:
        assert peer not in self.nodes
        election = Election(
            me=peer,
            priority=priority,
            eligible=eligible,
            config=self.config,
            now=self.now + offset,
        )
        self.nodes[peer] = Node(
            peer, priority, eligible, offset, election, self.now, next(self._incarnations)
        )

    def kill(self, peer: str, *, noticed_after: float | None = None) -> None:
        """Stop ``peer``; with ``noticed_after``, every other peer's transport
        reports its connection closed that long after (a killed process)."""
        del self.nodes[peer]
        if noticed_after is not None:
            for node in self.nodes.values():
                notice = (self.now + noticed_after, next(self._seq), node.peer, node.incarnation)
                heapq.heappush(self._notices, (*notice, peer))

    def partition(self, *sides: Iterable[str]) -> None:
        self.sides = {peer: i for i, side in enumerate(sides) for peer in side}

    def heal(self) -> None:
        self.sides = {}

    def run_until(self, end: float) -> None:
        """Deliver and tick everything due up to ``end``; check after each instant."""
        while True:
            at, action = self._next()
            if at > self.now:
                self._check()
            if at > end:
                self.now = end
                return
            self.now = at
            action()

    # -- observations --------------------------------------------------------

    def leaders(self) -> list[str]:
        return sorted(p for p, n in self.nodes.items() if n.election.role == "leader")

    def best(self) -> str | None:
        """The best-ranked eligible peer that is up: who should lead."""
        eligible = [n for n in self.nodes.values() if n.eligible]
        return min(eligible, key=lambda n: (-n.priority, n.peer)).peer if eligible else None

    def roles(self) -> dict[str, Role]:
        return {p: n.election.role for p, n in self.nodes.items()}

    def beliefs(self) -> dict[str, str | None]:
        return {p: n.election.leader for p, n in self.nodes.items()}

    def log(self, peer: str | None = None, kind: type | None = None) -> list[tuple[float, object]]:
        return [
            (entry.at, entry.event)
            for entry in self.history
            if (peer is None or entry.peer == peer)
            and (kind is None or isinstance(entry.event, kind))
        ]

    # -- the machinery -------------------------------------------------------

    def _next(self) -> tuple[float, Callable[[], None]]:
        """The earliest pending thing: deliveries first, then ticks by peer id."""
        best: tuple[float, int, str, Callable[[], None]] = (math.inf, 2, "", lambda: None)
        if self._queue:
            best = (self._queue[0][0], 0, "", self._deliver)
        if self._notices and self._notices[0][0] < best[0]:
            best = (self._notices[0][0], 0, "", self._notice)
        for node in self.nodes.values():
            at = node.election.next_deadline() - node.offset
            candidate = (at, 1, node.peer, self._ticker(node))
            if candidate[:3] < best[:3]:
                best = candidate
        return best[0], best[3]

    def _ticker(self, node: Node) -> Callable[[], None]:
        def tick() -> None:
            local = node.local(self.now)
            self._handle(node, node.election.tick(local))
            assert node.election.next_deadline() > local, "tick must move the deadline on"

        return tick

    def _deliver(self) -> None:
        _, _, to, incarnation, heartbeat = heapq.heappop(self._queue)
        node = self.nodes.get(to)
        if node is None or node.incarnation != incarnation:
            return  # the receiver died (and maybe restarted) meanwhile
        self.last_heard[to, heartbeat.peer] = self.now
        self._handle(node, node.election.receive(heartbeat, node.local(self.now)))

    def _notice(self) -> None:
        _, _, to, incarnation, gone = heapq.heappop(self._notices)
        node = self.nodes.get(to)
        if node is not None and node.incarnation == incarnation:
            self._handle(node, node.election.disconnected(gone, node.local(self.now)))

    def _handle(self, node: Node, events: list[ElectionEvent]) -> None:
        for event in events:
            self.history.append(Logged(self.now, node.peer, event))
            if isinstance(event, SendHeartbeat):
                assert node.eligible, f"observer {node.peer} sent a heartbeat"
                self._broadcast(node, event.heartbeat)

    def _broadcast(self, sender: Node, heartbeat: Heartbeat) -> None:
        for to in self.nodes.values():
            if to is sender or self.sides.get(to.peer, 0) != self.sides.get(sender.peer, 0):
                continue
            if self.loss and self.rng.random() < self.loss:
                continue
            delay = self.link_delay.get((sender.peer, to.peer), self.delay)
            delay += self.rng.randint(0, round(self.jitter / TICK)) * TICK
            entry = (self.now + delay, next(self._seq), to.peer, to.incarnation, heartbeat)
            heapq.heappush(self._queue, entry)

    def _check(self) -> None:
        for check in self.checks:
            check(self)


def became_leader(net: Cluster, peer: str) -> list[tuple[float, int]]:
    """(time, term) of every BecameLeader of ``peer``."""
    return [
        (entry.at, entry.event.term)
        for entry in net.history
        if entry.peer == peer and isinstance(entry.event, BecameLeader)
    ]


# ---------------------------------------------------------------------------
# One peer, by hand


def test_a_lone_peer_beats_at_once_and_leads_once_settled() -> None:
    e = Election(me="a", config=DEFAULT, now=100.0)
    assert (e.role, e.leader, e.term) == ("follower", None, 0)
    assert e.next_deadline() == 100.0  # the first heartbeat is due at construction

    assert e.tick(100.0) == [SendHeartbeat(hb("a"))]
    assert e.next_deadline() == 100.5  # the next heartbeat; settling ends at 101.5
    assert e.tick(100.5) == [SendHeartbeat(hb("a"))]
    assert e.tick(101.0) == [SendHeartbeat(hb("a"))]
    assert e.tick(101.25) == []  # nothing due: settle is 1.5 s (the timeout) by default

    assert e.tick(101.5) == [
        BecameLeader(1),
        LeaderChanged("a", 1),
        SendHeartbeat(hb("a", term=1, leading=True)),
    ]
    assert (e.role, e.leader, e.term) == ("leader", "a", 1)
    assert e.tick(102.0) == [SendHeartbeat(hb("a", term=1, leading=True))]


def test_settle_counts_from_construction_and_is_never_paid_again() -> None:
    e = Election(
        me="b", config=ElectionConfig(follower_beats=1, timeout_beats=3, settle=0.25), now=0.0
    )
    e.receive(hb("a", leading=True, term=4), 0.0)  # a better peer leads
    assert e.tick(0.25) == []  # settled, but outranked
    assert e.leader == "a"
    # a falls silent: it expires 1.5 s after it was last heard, and b takes
    # over in the same instant, without settling again.
    assert e.next_deadline() == 0.5
    e.tick(0.5)
    e.tick(1.0)
    assert e.tick(1.5) == [
        BecameLeader(5),  # highest term seen + 1
        LeaderChanged("b", 5),
        SendHeartbeat(hb("b", term=5, leading=True)),
    ]


def test_a_higher_term_leader_makes_the_leader_step_down() -> None:
    """z ranks below a but leads in a newer term: a split brain just ended."""
    a = Election(
        me="a", config=ElectionConfig(follower_beats=1, timeout_beats=3, settle=0.5), now=0.0
    )
    a.tick(0.0)
    assert a.tick(0.5)[0] == BecameLeader(1)

    assert a.receive(hb("z", term=7, leading=True), 0.75) == [
        SteppedDown(1, "z leads in newer term 7"),
        BecameLeader(8),  # a is still the best: it leads again, in a term above z's
        LeaderChanged("a", 8),
        SendHeartbeat(hb("a", term=8, leading=True)),
    ]
    assert a.statistics() == ElectionStatistics(
        role="leader",
        leader="a",
        term=8,
        alive_peers=1,
        elections_won=2,
        step_downs=1,
        leader_changes=2,  # (a, 1), then (a, 8)
    )


def test_a_higher_term_from_a_follower_only_moves_the_leader_to_a_fresh_term() -> None:
    """Stale news of an old leader: no step-down, but the leader's term stays newest."""
    a = Election(
        me="a", config=ElectionConfig(follower_beats=1, timeout_beats=3, settle=0.5), now=0.0
    )
    a.tick(0.0)
    a.tick(0.5)
    assert a.receive(hb("z", term=7), 0.75) == [
        BecameLeader(8),
        LeaderChanged("a", 8),
        SendHeartbeat(hb("a", term=8, leading=True)),
    ]


def test_a_better_peer_makes_the_leader_step_down_for_good() -> None:
    b = Election(
        me="b", config=ElectionConfig(follower_beats=1, timeout_beats=3, settle=0.5), now=0.0
    )
    b.tick(0.0)
    b.tick(0.5)
    assert b.receive(hb("a"), 0.75) == [
        SteppedDown(1, "outranked by a (priority 0)"),
        LeaderChanged(None, 1),
        SendHeartbeat(hb("b", term=1)),  # followers learn at once
    ]
    assert b.receive(hb("a", term=2, leading=True), 0.875) == [LeaderChanged("a", 2)]
    assert b.role == "follower"


def test_a_follower_believes_the_newest_leader_and_adopts_its_term() -> None:
    f = Election(me="m", config=DEFAULT, now=0.0)
    f.receive(hb("b", term=3, leading=True), 0.0)
    assert f.receive(hb("c", term=5, leading=True), 0.25) == [LeaderChanged("c", 5)]
    assert f.receive(hb("b", term=3, leading=True), 0.5) == [SendHeartbeat(hb("m", term=5))]
    assert (f.leader, f.term) == ("c", 5)
    assert f.alive(0.5) == ("b", "c")
    assert f.alive(1.75) == ("b",)  # c last heard at 0.25, timeout 1.5 s
    assert f.tick(1.75) == [LeaderChanged("b", 3), SendHeartbeat(hb("m", term=5))]
    assert f.term == 5  # terms never go back


def test_an_observer_follows_but_never_sends_nor_counts() -> None:
    o = Election(me="a", priority=9, eligible=False, config=DEFAULT, now=0.0)
    assert o.role == "observer"
    assert o.next_deadline() == math.inf  # nothing to do until someone speaks
    assert o.tick(10.0) == []
    assert o.receive(hb("b", term=2, leading=True), 10.0) == [LeaderChanged("b", 2)]
    assert o.next_deadline() == 11.5  # when b would expire
    assert o.tick(11.5) == [LeaderChanged(None, 2)]
    assert o.role == "observer"

    # and an eligible peer does not let a non-eligible one outrank it
    b = Election(
        me="b", config=ElectionConfig(follower_beats=1, timeout_beats=3, settle=0.5), now=0.0
    )
    b.receive(Heartbeat(peer="a", priority=9, term=0, leading=True, eligible=False), 0.0)
    assert b.tick(0.5)[0] == BecameLeader(1)


def test_own_heartbeat_echoed_back_is_ignored() -> None:
    a = Election(me="a", config=DEFAULT, now=0.0)
    assert a.receive(hb("a", term=9, leading=True), 0.0) == [SendHeartbeat(hb("a"))]
    assert (a.alive(0.0), a.term, a.leader) == ((), 0, None)


@pytest.mark.parametrize(
    "config",
    [
        {"heartbeat": 0},
        {"heartbeat": -0.5},
        {"heartbeat": math.nan},
        {"heartbeat": math.inf},
        {"heartbeat": True},
        {"timeout_beats": 1},  # any jitter would expire a live peer
        {"timeout_beats": 0},
        {"timeout_beats": 2.5},
        {"timeout_beats": True},
        {"settle": 0},
        {"settle": -1.0},
        {"settle": math.nan},
    ],
)
def test_invalid_config_is_the_callers_error(config: dict[str, Any]) -> None:
    with pytest.raises(LocalError):
        ElectionConfig(**config)


def test_misuse_of_the_machine_is_the_callers_error() -> None:
    with pytest.raises(LocalError, match="peer id"):
        Election(me="", now=0.0)
    with pytest.raises(LocalError, match="priority"):
        Election(me="a", priority=True, now=0.0)
    with pytest.raises(LocalError, match="finite"):
        Election(me="a", config=DEFAULT, now=math.nan)
    e = Election(me="a", config=DEFAULT, now=5.0)
    with pytest.raises(LocalError, match="go back"):
        e.tick(4.0)
    with pytest.raises(LocalError, match="go back"):
        e.receive(hb("b"), math.inf)


def test_config_derived_timings() -> None:
    product = ElectionConfig()
    assert (product.heartbeat, product.timeout, product.settle_period) == (0.5, 3.0, 3.0)
    assert (DEFAULT.timeout, DEFAULT.settle_period) == (1.5, 1.5)
    assert ElectionConfig(heartbeat=0.25, timeout_beats=4, settle=3).settle_period == 3


# ---------------------------------------------------------------------------
# Small clusters, with exact instants


@pytest.mark.parametrize(
    ("priorities", "winner"),
    [
        ({"c": 0, "b": 0, "a": 0}, "a"),  # equal priority: the smaller id
        ({"a": 0, "b": 5, "c": 1}, "b"),  # priority beats id
        ({"a": -2, "b": -1, "c": -1}, "b"),
        ({"9": 0, "10": 0}, "10"),  # ids compare as strings
    ],
)
def test_rank_decides_who_leads(priorities: dict[str, int], winner: str) -> None:
    net = Cluster(delay=0.125)
    for peer, priority in priorities.items():
        net.join(peer, priority=priority)
    net.run_until(10.0)
    assert net.leaders() == [winner]
    assert became_leader(net, winner) == [(1.5, 1)]  # exactly at the end of settling
    assert set(net.beliefs().values()) == {winner}
    assert not net.log(kind=SteppedDown)


def test_a_better_peer_joining_takes_over_without_overlap() -> None:
    net = Cluster(delay=0.125)
    net.join("b")
    net.run_until(5.0)
    assert became_leader(net, "b") == [(1.5, 1)]

    net.join("a")  # at 5.0; its first heartbeat reaches b at 5.125
    net.run_until(10.0)
    assert net.log("b", SteppedDown) == [(5.125, SteppedDown(1, "outranked by a (priority 0)"))]
    assert became_leader(net, "a") == [(6.5, 2)]  # settled at 5.0 + 1.5; knew term 1
    assert net.leaders() == ["a"]
    assert net.log("b", LeaderChanged) == [
        (1.5, LeaderChanged("b", 1)),
        (5.125, LeaderChanged(None, 1)),  # a deliberate gap: never two leaders
        (6.625, LeaderChanged("a", 2)),
    ]


@pytest.mark.parametrize("killed_at", [10.0, 10.125, 10.25, 10.375])
def test_a_dead_leader_is_replaced_within_timeout_plus_delay(killed_at: float) -> None:
    net = Cluster(delay=0.25)
    for peer in "abc":
        net.join(peer)
    net.run_until(killed_at)  # a leads and beat last at 10.0 (every 0.5 s since 0)
    assert net.leaders() == ["a"]

    net.kill("a")
    net.run_until(20.0)
    # b last heard a at 10.0 + 0.25 and expires it 1.5 s later, then leads.
    assert became_leader(net, "b") == [(11.75, 2)]
    takeover = 11.75 - killed_at
    assert DEFAULT.timeout - DEFAULT.heartbeat <= takeover <= DEFAULT.timeout + 0.25
    assert net.log("c", LeaderChanged)[-2:] == [
        (11.75, LeaderChanged(None, 1)),
        (12.0, LeaderChanged("b", 2)),
    ]


def test_clock_offsets_change_nothing() -> None:
    def scenario(offsets: dict[str, float]) -> list[Logged]:
        net = Cluster(delay=0.125)
        for peer, offset in offsets.items():
            net.join(peer, offset=offset)
        net.run_until(4.0)
        net.kill("a")
        net.run_until(10.0)
        return net.history

    assert scenario({"a": 0, "b": 0, "c": 0}) == scenario({"a": -1e6, "b": 3.5, "c": 86400.0})


def test_a_partition_elects_one_leader_per_side_and_the_heal_keeps_the_best() -> None:
    net = Cluster(delay=0.125)
    for peer in "abcd":
        net.join(peer)
    net.run_until(5.0)
    net.partition("ab", "cd")
    net.run_until(10.0)
    assert net.leaders() == ["a", "c"]  # availability over consistency
    assert became_leader(net, "c") == [(6.625, 2)]
    net.heal()
    net.run_until(15.0)
    assert net.leaders() == ["a"]
    assert net.log("c", SteppedDown)[-1][1] == SteppedDown(2, "outranked by a (priority 0)")
    # a heard c lead in term 2 > 1 and moved to term 3: a's side effects win.
    assert became_leader(net, "a")[-1][1] == 3
    assert set(net.beliefs().values()) == {"a"}


# ---------------------------------------------------------------------------
# Any input sequence, one peer


@settings(max_examples=150, deadline=None)
@given(
    inputs=st.lists(
        st.tuples(
            st.integers(0, 40),  # time step, in 1/64 s
            st.none()
            | st.builds(
                Heartbeat,
                peer=st.sampled_from("abmyz"),
                priority=st.integers(0, 2),
                term=st.integers(0, 9),
                leading=st.booleans(),
                eligible=st.booleans(),
            ),
        ),
        max_size=60,
    ),
    eligible=st.booleans(),
)
def test_the_machine_keeps_its_invariants_on_any_input(
    inputs: list[tuple[int, Heartbeat | None]], eligible: bool
) -> None:
    """Ticks and heartbeats in any order: the rules hold after every input."""
    e = Election(
        me="m",
        priority=1,
        eligible=eligible,
        config=ElectionConfig(follower_beats=1, timeout_beats=3, settle=1),
        now=0.0,
    )
    heard: dict[str, tuple[Heartbeat, float]] = {}
    now, term = 0.0, 0
    for step, heartbeat in inputs:
        now += step * TICK
        if heartbeat is None:
            events = e.tick(now)
        else:
            events = e.receive(heartbeat, now)
            if heartbeat.peer != "m":
                heard[heartbeat.peer] = (heartbeat, now)
        assert e.term >= term, "terms never decrease"
        term = e.term
        assert e.next_deadline() > now, "the driver always has a future deadline"
        alive = {p: h for p, (h, at) in heard.items() if now - at < DEFAULT.timeout}
        assert set(e.alive(now)) == set(alive)
        if not eligible:
            assert e.role == "observer"
            assert not [ev for ev in events if isinstance(ev, SendHeartbeat | BecameLeader)]
        if e.role == "leader":
            assert e.leader == "m"
            assert now >= 1, "only after settling"
            assert not [
                h for h in alive.values() if h.eligible and (-h.priority, h.peer) < (-1, "m")
            ]
            assert not [h for h in alive.values() if h.eligible and h.leading and h.term > e.term]
        won = [ev.term for ev in events if isinstance(ev, BecameLeader)]
        if won:
            assert won[-1] == e.term, "a new leader takes the highest term"
            announce = events[-1]
            assert isinstance(announce, SendHeartbeat)
            assert announce.heartbeat.leading, "followers learn at once"


# ---------------------------------------------------------------------------
# Random clusters under hypothesis
#
# What holds, stated precisely (the bounds follow the theory of operation in
# mesh/election.py; d is the largest network delay, always < heartbeat):
#
# 1. Terms never decrease at any peer, on any input, and a leader always
#    leads in the highest term it has heard of (its side effects win).
# 2. Safety under any loss or partition: if two peers lead at the same
#    instant, the worse-ranked one has received no heartbeat from the better
#    one during the last timeout. Independent random losses make this happen
#    (three lost beats in a row at 30 % loss is 2.7 %), so "never two
#    leaders" cannot hold under loss; this is what does.
# 3. Lossless delivery: at every instant at most one peer leads among peers
#    that hear each other, and it is the best-ranked peer that is up, unless
#    that one joined less than d ago (its first heartbeat is in flight).
# 4. Convergence: once losses stop / a partition heals at `calm`, every up
#    peer agrees on exactly one leader, the best-ranked peer that is up, by
#        R = max(calm + heartbeat + d,          everyone heard everyone
#                last kill + d + timeout,       the dead have expired
#                last join + settle)            the newcomers have settled
#    (roles), and by R + heartbeat + 2d on who leads and in which term.
# 5. Failover: a killed leader is replaced by the next-best peer at a time
#    in [timeout - heartbeat, timeout + d] after the kill (< timeout + 2
#    heartbeats), with no leader in between.


@dataclass(frozen=True)
class PeerPlan:
    peer: str
    priority: int
    eligible: bool
    offset: float
    join_at: float
    kill_at: float | None = None
    rejoin_at: float | None = None


@dataclass(frozen=True)
class Scenario:
    config: ElectionConfig
    max_delay: float
    jitter: float
    peers: tuple[PeerPlan, ...]
    rng: random.Random

    def cluster(self, *checks: Callable[[Cluster], None]) -> Cluster:
        """A cluster with a fixed random delay per link, base + jitter <= max_delay."""
        net = Cluster(self.config, jitter=self.jitter, rng=self.rng, checks=list(checks))
        room = round((self.max_delay - self.jitter) / TICK)
        for a, b in itertools.permutations([p.peer for p in self.peers], 2):
            net.link_delay[a, b] = self.rng.randint(0, room) * TICK
        return net

    def script(self) -> list[tuple[float, Callable[[Cluster], None]]]:
        actions: list[tuple[float, Callable[[Cluster], None]]] = []
        for p in self.peers:

            def join(net: Cluster, p: PeerPlan = p) -> None:
                net.join(p.peer, priority=p.priority, eligible=p.eligible, offset=p.offset)

            def kill(net: Cluster, p: PeerPlan = p) -> None:
                net.kill(p.peer)

            actions.append((p.join_at, join))
            if p.kill_at is not None:
                actions.append((p.kill_at, kill))
            if p.rejoin_at is not None:
                actions.append((p.rejoin_at, join))
        actions.sort(key=lambda action: action[0])
        return actions

    def converged_by(self, calm: float) -> float:
        """R of property 4: when the roles must have converged."""
        kills = [p.kill_at for p in self.peers if p.kill_at is not None]
        joins = [t for p in self.peers for t in (p.join_at, p.rejoin_at) if t is not None]
        # A killed peer that did not lead stays alive for a follower's lifetime
        # (timeout * follower_beats), and after losses a follower's next
        # heartbeat may be follower_beats heartbeats away.
        every = self.config.follower_every
        return max(
            calm + self.config.heartbeat * every + self.max_delay,
            max(kills, default=-math.inf) + self.max_delay + self.config.timeout * every,
            max(joins) + self.config.settle_period,
        )


def times(low: float, high: float) -> st.SearchStrategy[float]:
    return st.integers(round(low / TICK), round(high / TICK)).map(lambda k: k * TICK)


@st.composite
def scenarios(
    draw: st.DrawFn, *, churn_until: float, kills: bool = True, late_joins: bool = True
) -> Scenario:
    """2-7 peers (some observers) with random ranks, clock offsets, delays, joins, kills."""
    heartbeat = draw(st.sampled_from([0.25, 0.5, 1.0]))
    timeout_beats = draw(st.integers(2, 4))
    config = ElectionConfig(
        heartbeat=heartbeat,
        timeout_beats=timeout_beats,
        follower_beats=draw(st.integers(1, timeout_beats - 1)),
    )
    max_steps = draw(st.integers(0, round(heartbeat / TICK) - 1))  # d < heartbeat
    jitter_steps = draw(st.integers(0, max_steps))
    ids = draw(
        st.lists(st.text("abcdefg", min_size=1, max_size=2), min_size=2, max_size=7, unique=True)
    )
    peers = []
    for i, peer in enumerate(ids):
        join_at = 0.0 if i < 2 or not late_joins else draw(times(0, churn_until))
        kill_at = rejoin_at = None
        if kills and draw(st.booleans()):
            kill_at = draw(times(join_at, churn_until))
            if draw(st.booleans()):
                rejoin_at = draw(times(kill_at, churn_until))
        peers.append(
            PeerPlan(
                peer=peer,
                priority=draw(st.integers(0, 2)),
                eligible=i == 0 or draw(st.sampled_from([True, True, True, False])),
                offset=draw(st.integers(-(2**24), 2**24)) * TICK,  # up to ~3 days apart
                join_at=join_at,
                kill_at=kill_at,
                rejoin_at=rejoin_at,
            )
        )
    return Scenario(
        config=config,
        max_delay=max_steps * TICK,
        jitter=jitter_steps * TICK,
        peers=tuple(peers),
        rng=draw(st.randoms(use_true_random=False)),
    )


def play(net: Cluster, script: list[tuple[float, Callable[[Cluster], None]]]) -> None:
    for at, action in script:
        net.run_until(at)
        action(net)


def rank(node: Node) -> tuple[int, str]:
    return (-node.priority, node.peer)


def terms_only_grow() -> Callable[[Cluster], None]:
    """Property 1, per process (a restarted peer is a new process)."""
    last: dict[tuple[str, int], int] = {}

    def check(net: Cluster) -> None:
        for n in net.nodes.values():
            assert n.election.term >= last.get((n.peer, n.incarnation), 0), "a term went back"
            last[n.peer, n.incarnation] = n.election.term

    return check


def leaders_act_in_the_newest_term(net: Cluster) -> None:
    """Property 1 for side effects: a leader's term is the highest it knows of."""
    for peer in net.leaders():
        assert became_leader(net, peer)[-1][1] == net.nodes[peer].election.term


def split_brain_needs_a_silent_timeout(net: Cluster) -> None:
    """Property 2."""
    leaders = sorted((net.nodes[p] for p in net.leaders()), key=rank)
    for better, worse in itertools.combinations(leaders, 2):
        heard = net.last_heard.get((worse.peer, better.peer), -math.inf)
        assert heard <= net.now - net.config.timeout, (
            f"{worse.peer} leads though it heard {better.peer}"
        )


def one_best_leader_per_side(
    max_delay: float, *, until: float = math.inf
) -> Callable[[Cluster], None]:
    """Property 3, among the peers of each side of a partition (one side if none)."""

    def check(net: Cluster) -> None:
        if net.now >= until:
            return
        sides: dict[int, list[Node]] = {}
        for n in net.nodes.values():
            sides.setdefault(net.sides.get(n.peer, 0), []).append(n)
        for side in sides.values():
            leaders = [n for n in side if n.election.role == "leader"]
            assert len(leaders) <= 1, f"two leaders that hear each other: {leaders}"
            if leaders:
                best = min((n for n in side if n.eligible), key=rank)
                assert leaders[0] is best or net.now - best.joined_at < max_delay

    return check


def converges(roles_by: float, agreed_by: float) -> Callable[[Cluster], None]:
    """Property 4: from ``roles_by`` exactly the best leads; from ``agreed_by`` all agree.

    Agreeing means every up peer's latest ``LeaderChanged`` names the leader
    and its current term, and every eligible peer's term is that term (a
    leader that hears of a higher term moves above it).
    """

    def check(net: Cluster) -> None:
        best = net.best()
        if net.now >= roles_by:
            assert net.leaders() == ([] if best is None else [best]), f"at {net.now}: {net.roles()}"
        if net.now >= agreed_by:
            if best is None:
                assert set(net.beliefs().values()) == {None}
                return
            term = net.nodes[best].election.term
            for n in net.nodes.values():
                assert net.log(n.peer, LeaderChanged)[-1][1] == LeaderChanged(best, term)
                assert not n.eligible or n.election.term == term, f"{n.peer} is on another term"

    return check


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(s=scenarios(churn_until=12.0))
def test_lossless_at_most_one_leader_and_it_is_the_best(s: Scenario) -> None:
    roles_by = s.converged_by(calm=0.0)
    agreed_by = roles_by + s.config.heartbeat + 2 * s.max_delay
    net = s.cluster(
        terms_only_grow(),
        leaders_act_in_the_newest_term,
        split_brain_needs_a_silent_timeout,
        one_best_leader_per_side(s.max_delay),
        converges(roles_by, agreed_by),
    )
    play(net, s.script())
    net.run_until(agreed_by + 2.0)


@PROPERTY
@given(s=scenarios(churn_until=12.0), loss=st.sampled_from([0.1, 0.3, 0.5, 0.9]))
def test_random_losses_then_calm_converge_to_the_best(s: Scenario, loss: float) -> None:
    calm = 12.0
    roles_by = s.converged_by(calm)
    agreed_by = roles_by + s.config.heartbeat + 2 * s.max_delay
    net = s.cluster(
        terms_only_grow(),
        leaders_act_in_the_newest_term,
        split_brain_needs_a_silent_timeout,
        converges(roles_by, agreed_by),
    )
    net.loss = loss
    play(net, s.script())
    net.run_until(calm)
    net.loss = 0.0
    net.run_until(agreed_by + 2.0)


@PROPERTY
@given(
    s=scenarios(churn_until=12.0),
    split_at=times(0, 10),
    lasting=times(0, 6),
    sides=st.lists(st.integers(0, 2), min_size=7, max_size=7),
)
def test_a_healed_partition_converges_to_the_best(
    s: Scenario, split_at: float, lasting: float, sides: list[int]
) -> None:
    heal_at = split_at + lasting
    roles_by = s.converged_by(calm=heal_at)
    agreed_by = roles_by + s.config.heartbeat + 2 * s.max_delay
    net = s.cluster(
        terms_only_grow(),
        leaders_act_in_the_newest_term,
        split_brain_needs_a_silent_timeout,
        one_best_leader_per_side(s.max_delay, until=heal_at),
        converges(roles_by, agreed_by),
    )
    groups: list[list[str]] = [[], [], []]
    for plan, side in zip(s.peers, sides, strict=False):
        groups[side].append(plan.peer)

    def split(net: Cluster) -> None:
        net.partition(*groups)

    def heal(net: Cluster) -> None:
        net.heal()

    play(net, sorted([*s.script(), (split_at, split), (heal_at, heal)], key=lambda a: a[0]))
    net.run_until(agreed_by + 2.0)


@PROPERTY
@given(s=scenarios(churn_until=0.0, kills=False, late_joins=False), kill_after=times(0, 3))
def test_a_killed_leader_is_replaced_by_the_next_best_in_time(
    s: Scenario, kill_after: float
) -> None:
    assume(sum(p.eligible for p in s.peers) >= 2)
    cfg, d = s.config, s.max_delay
    net = s.cluster(terms_only_grow(), leaders_act_in_the_newest_term, one_best_leader_per_side(d))
    killed_at = s.converged_by(calm=0.0) + kill_after
    play(net, s.script())
    net.run_until(killed_at)
    [old] = net.leaders()
    old_term = net.nodes[old].election.term
    net.kill(old)
    successor = net.best()
    assert successor is not None
    net.run_until(killed_at + cfg.timeout + cfg.heartbeat + 2 * d)

    [(took_over_at, term)] = [
        entry for entry in became_leader(net, successor) if entry[0] > killed_at
    ]
    assert killed_at + cfg.timeout - cfg.heartbeat <= took_over_at <= killed_at + cfg.timeout + d
    assert term > old_term, "the new leader's side effects supersede the old one's"
    assert [entry for entry in net.log(kind=BecameLeader) if entry[0] > killed_at] == [
        (took_over_at, BecameLeader(term))
    ]
    assert net.leaders() == [successor]
    # Followers learn at once from the announcement; with jitter a stale
    # heartbeat may overtake it, and then the next regular one tells them.
    learned_by = took_over_at + d + (cfg.heartbeat if s.jitter else 0)
    for peer in net.nodes:
        at, event = net.log(peer, LeaderChanged)[-1]
        assert event == LeaderChanged(successor, term)
        assert at <= learned_by


@PROPERTY
@given(
    s=scenarios(churn_until=0.0, kills=False, late_joins=False),
    kill_after=times(0, 3),
    noticed=times(0, 0.25),
)
def test_a_killed_leader_whose_connections_close_is_replaced_within_the_grace(
    s: Scenario, kill_after: float, noticed: float
) -> None:
    """The product's path: closed connections, not only silence, show a death.

    Heartbeats the leader sent before dying are still in flight (up to the
    link delay plus jitter) when its death is noticed; none of them keeps it
    alive past the grace period.
    """
    assume(sum(p.eligible for p in s.peers) >= 2)
    net = s.cluster(terms_only_grow(), leaders_act_in_the_newest_term)
    killed_at = s.converged_by(calm=0.0) + kill_after
    play(net, s.script())
    net.run_until(killed_at)
    [old] = net.leaders()
    net.kill(old, noticed_after=noticed)
    successor = net.best()
    assert successor is not None
    cfg = s.config
    net.run_until(killed_at + cfg.timeout + cfg.heartbeat + 2 * s.max_delay)

    [(took_over_at, _)] = [e for e in became_leader(net, successor) if e[0] > killed_at]
    grace = cfg.heartbeat * min(3, cfg.timeout_beats)
    assert took_over_at <= killed_at + noticed + grace
    assert net.leaders() == [successor]


PRODUCT = ElectionConfig(settle=1.5)  # heartbeat 0.5 s, timeout 3 s, grace 1.5 s


def test_a_closed_connection_leaves_the_peer_a_grace_period() -> None:
    b = Election(me="b", config=PRODUCT, now=0.0)
    b.receive(hb("a", term=1, leading=True), 1.0)  # alive until 4.0
    b.tick(1.5)  # settled, outranked by a
    assert (b.role, b.leader) == ("follower", "a")
    assert b.disconnected("a", 1.75) == []
    assert b.next_deadline() <= 3.25
    b.tick(3.0)
    events = b.tick(3.25)  # 1.75 + 1.5, not 4.0
    assert events[0] == BecameLeader(2)
    assert b.leader == "b"


def test_heartbeats_in_flight_from_a_gone_peer_do_not_extend_its_grace() -> None:
    b = Election(me="b", config=PRODUCT, now=0.0)
    b.receive(hb("a", term=1, leading=True), 1.0)
    b.tick(1.5)
    b.disconnected("a", 1.75)
    # a's last heartbeats, sent before it died, arrive over other paths
    b.receive(hb("a", term=1, leading=True), 2.0)
    b.receive(hb("a", term=1, leading=True), 3.0)
    assert b.tick(3.25)[0] == BecameLeader(2)


def test_a_peer_that_connects_again_within_the_grace_stays_alive() -> None:
    """A live leader whose connection was reset (and redialled) is not replaced."""
    b = Election(me="b", config=PRODUCT, now=0.0)
    b.receive(hb("a", term=1, leading=True), 1.0)
    b.tick(1.5)
    b.disconnected("a", 1.75)
    b.connected("a", 2.25)  # alive until 5.25 now
    for t in (2.5, 3.0, 3.25, 3.5, 4.0):
        assert not any(isinstance(e, BecameLeader) for e in b.tick(t))
    b.receive(hb("a", term=1, leading=True), 4.5)
    assert (b.role, b.leader) == ("follower", "a")


def test_a_gone_peer_counts_again_after_a_timeout_without_reconnecting() -> None:
    """A live peer we lost our direct connection to is still reachable through others."""
    b = Election(me="b", config=PRODUCT, now=0.0)
    b.receive(hb("a", term=1, leading=True), 1.0)
    b.tick(1.5)
    b.disconnected("a", 1.75)
    b.tick(3.25)
    assert b.role == "leader"
    b.tick(4.75)  # 1.75 + 3 s: a's heartbeats count again
    b.receive(hb("a", term=3, leading=True), 4.75)
    assert (b.role, b.leader) == ("follower", "a")


def test_a_restarted_peer_starts_from_the_known_term() -> None:
    """Terms recorded before a restart (in issue links) are never reused."""
    election = Election(me="a", config=DEFAULT, now=0.0, term=7)
    events = election.tick(10.0)
    assert election.term == 8
    assert BecameLeader(8) in events
    with pytest.raises(LocalError):
        Election(me="a", config=DEFAULT, now=0.0, term=-1)


def test_followers_beat_every_third_heartbeat_and_count_as_alive_that_much_longer() -> None:
    """Every heartbeat reaches every peer; only the leader's silence must show fast."""
    b = Election(me="b", config=PRODUCT, now=0.0)
    sent = []
    for k in range(13):  # a leads throughout, heard every 0.5 s
        t = k * 0.25
        events = b.receive(hb("a", term=1, leading=True), t) if k % 2 == 0 else b.tick(t)
        sent += [t for e in events if isinstance(e, SendHeartbeat)]
    assert b.role == "follower"
    assert sent == [0.0, 0.5, 1.0, 1.5, 3.0]  # settling (to 1.5 s): every 0.5 s; then 1.5 s
    b.receive(hb("c", term=0, leading=False), 3.0)  # a follower: alive until 3 + 3 x 3 s
    b.receive(hb("a", term=1, leading=True), 3.0)  # the leader: alive until 3 + 3 s
    assert b.alive(8.9) == ("c",)
    assert b.alive(11.9) == ("c",) and b.alive(12.0) == ()

    leader = Election(me="a", config=PRODUCT, now=0.0)
    beats = [t for t in (x * 0.25 for x in range(0, 17)) if any(
        isinstance(e, SendHeartbeat) for e in leader.tick(t)
    )]  # fmt: skip
    assert leader.role == "leader"
    assert [t for t in beats if t > 1.5] == [2.0, 2.5, 3.0, 3.5, 4.0]  # a leader: every 0.5 s


# -- the term ceiling (mesh.bounds) ------------------------------------------


def test_a_term_at_the_ceiling_is_never_exceeded() -> None:
    """A key holder's heartbeat at the ceiling must not make the next term unsendable."""
    from mesh import wire
    from mesh.bounds import MAX_TERM

    e = Election(me="a", config=ElectionConfig(heartbeat=0.5), now=0.0)
    e.tick(0.0)
    e.receive(hb("z", term=MAX_TERM, leading=True), 0.1)  # worse-ranked, so "a" takes over
    events = run_until(e, 10.0)
    assert e.role == "leader"
    assert e.term == MAX_TERM
    beats = [ev.heartbeat for ev in events if isinstance(ev, SendHeartbeat)]
    assert beats and all(b.term == MAX_TERM for b in beats)
    for beat in beats:
        assert not isinstance(
            wire.decode(wire.encode(wire.HeartbeatMsg(heartbeat=beat))), wire.Rejected
        )


def test_a_stored_term_above_the_ceiling_is_capped() -> None:
    """A store written before the ceiling existed may hold a term up to 2**63 - 1."""
    from mesh.bounds import MAX_TERM

    e = Election(me="a", now=0.0, term=2**63 - 1)
    assert e.term == MAX_TERM
    e.tick(0.0)
    run_until(e, 100.0)
    assert e.role == "leader" and e.term == MAX_TERM


# ---------------------------------------------------------------------------
# A paused process (SIGSTOP, a frozen VM): Paused, Lease


def leading_alone() -> Election:
    """``a`` leads in term 1, alone, at t = 2.0."""
    e = Election(me="a", config=DEFAULT, now=0.0)
    run_until(e, 2.0)
    assert e.role == "leader" and e.term == 1
    return e


def test_a_leader_paused_longer_than_a_timeout_steps_down_at_its_first_input() -> None:
    """Others have expired it and may lead in a term it has not heard yet."""
    e = leading_alone()
    events = e.tick(2.0 + 10.0)  # SIGSTOP for ten seconds, then SIGCONT
    assert e.role == "follower"
    (down,) = [ev for ev in events if isinstance(ev, SteppedDown)]
    assert down.term == 1 and "paused" in down.reason
    beats = [ev.heartbeat for ev in events if isinstance(ev, SendHeartbeat)]
    assert beats and not beats[-1].leading, "the mesh hears at once that it stopped"


def test_a_resumed_leader_settles_again_and_follows_the_leader_elected_meanwhile() -> None:
    """Hearing ``b`` lead in term 2 during the new settle period, ``a`` (the
    better rank) takes over in a term above it: never its old term 1."""
    e = leading_alone()
    e.tick(12.0)
    run_until(e, 12.4)
    assert e.role == "follower", "no leading before settling again"
    e.receive(hb("b", term=2, leading=True), 12.5)
    events = run_until(e, 12.0 + DEFAULT.settle_period + 0.01)
    assert [ev.term for ev in events if isinstance(ev, BecameLeader)] == [3]


def test_a_paused_follower_does_not_lead_on_its_stale_view() -> None:
    """All its peers expired while it slept; it waits to hear the mesh first."""
    e = Election(me="a", config=DEFAULT, now=0.0)
    e.tick(0.0)
    for at in (0.1, 0.6, 1.1, 1.6):  # "0" ranks better and leads
        run_until(e, at)
        e.receive(hb("0", term=4, leading=True), at)
    run_until(e, 2.0)
    assert e.role == "follower"
    e.tick(20.0)  # paused; "0" is long expired
    assert e.role == "follower"
    for at in (20.3, 20.8, 21.3, 21.8, 22.3):  # the mesh as it is now
        run_until(e, at)
        e.receive(hb("0", term=5, leading=True), at)
        assert e.role == "follower"
    assert e.leader == "0" and e.term == 5


def test_writes_are_refused_after_a_pause_until_the_view_is_fresh_again() -> None:
    """``may_write`` is what the sink checks before every GitHub write: a
    write the process reaches right after SIGCONT, before any tick, is refused."""
    e = leading_alone()
    assert e.may_write(2.0 + DEFAULT.timeout / 2 - 0.01)
    assert not e.may_write(2.0 + DEFAULT.timeout / 2)
    assert not e.may_write(12.0), "resumed, not ticked yet"
    e.tick(12.0)
    assert not e.may_write(12.0), "stepped down"
    follower = Election(me="b", config=DEFAULT, now=0.0)
    assert not follower.may_write(0.0)


def test_a_late_first_tick_after_construction_is_not_a_pause() -> None:
    """A relay may take seconds between building its election and its first tick."""
    e = Election(me="a", config=DEFAULT, now=0.0)
    e.tick(30.0)
    assert e.role == "leader"


def test_a_gone_peers_heartbeat_still_teaches_its_term() -> None:
    """Simulation finding F2: after a disconnect and its grace, a heartbeat
    still in flight from the peer no longer keeps it alive, but its term
    must be learnt, or a later leader could take that term again."""
    product = ElectionConfig()  # timeout 3 s, grace 1.5 s
    b = Election(me="b", config=product, now=0.0)
    run_until(b, 2.0)
    b.disconnected("a", 2.0)
    run_until(b, 4.0)
    b.receive(hb("a", term=9, leading=True), 4.0)  # past the grace, within the timeout
    assert "a" not in b.alive(4.0)
    assert b.term >= 9


def test_a_leader_hearing_a_rival_lead_in_its_own_term_moves_above_it() -> None:
    """The two sides of a healed partition took the same term: the better
    rank leads on in a fresh term, so its writes win every comparison by
    term instead of tying with the loser's; the loser, outranked, stops."""
    a = leading_alone()
    events = a.receive(hb("z", term=1, leading=True), 2.1)
    assert [ev for ev in events if isinstance(ev, (SteppedDown, BecameLeader))] == [
        SteppedDown(1, "z leads in my term 1 too"),
        BecameLeader(2),
    ]
    z = Election(me="z", config=DEFAULT, now=0.0)
    run_until(z, 2.0)
    assert z.role == "leader" and z.term == 1
    z.receive(hb("a", term=2, leading=True), 2.2)
    assert z.role == "follower" and z.leader == "a"
