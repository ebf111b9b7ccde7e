"""Leader election as a pure state machine (DESIGN section 6).

Only the leader talks to GitHub, so the peers must agree on one. This module
decides who that is from heartbeats alone. It never reads a clock, sleeps,
draws a random number or touches a socket: the driver feeds it the
heartbeats it receives and its monotonic time, sends the heartbeats it is
asked to send, and calls :meth:`Election.tick` at
:meth:`Election.next_deadline`. That keeps the hard part testable in virtual
time (``tests/test_election.py`` runs whole clusters in memory).
"""

# ---------------------------------------------------------------------------
# Rules. Everything that decides who leads lives in this file.
#
# Rank     Higher priority is better; equal priorities: the smaller peer id
#          (plain ``str`` order) is better. Only eligible peers have a rank.
#          Non-eligible peers ("observers") never lead and never send
#          heartbeats, but still follow who leads.
# Beats    The leader, and a peer still settling, send a heartbeat every
#          ``heartbeat``; any other eligible peer every ``follower_beats``
#          heartbeats, at most ``timeout_beats - 1``: a leading heartbeat that
#          arrives late (sent before a step-down or a restart) keeps its
#          sender alive a timeout, by when its next one is due.
#          Every heartbeat is delivered to every peer, and on 2 cores ten
#          relays beating twice a second used a core between them; only the
#          leader's silence has to be noticed fast.
# Alive    A peer is alive while its last heartbeat was RECEIVED less than
#          ``timeout = heartbeat * timeout_beats`` ago if it said it leads,
#          ``timeout * follower_beats`` ago if not, on the receiver's own
#          clock. No timestamp crosses the wire, so clock offsets between
#          machines cannot matter.
# Gone     The transport reports that its direct connection to a peer
#          closed (``disconnected``): the peer stays alive for at most
#          ``grace`` (three heartbeats) more, whatever heartbeats still
#          arrive (a dead peer's may be in flight over other paths), unless
#          the transport reports it connected again (a live peer's
#          connection that was merely reset is redialled within a second).
#          A killed process's connections close within ~0.2 s, so failover
#          takes ~1.7 s instead of the timeout, and the timeout can be long
#          enough (3 s) that a busy mesh delaying a few heartbeats does not
#          elect a second leader.
# Settled  ``settle`` (default: the timeout) after construction. By then a
#          peer has heard every live peer (a follower beats more often than
#          the timeout) and the highest term. It is paid once per process,
#          never again at a failover.
# Paused   An eligible peer given no input for longer than a timeout was
#          paused (a driver calls at least every heartbeat): others have
#          expired it and may lead in a term it has not heard. A leader steps
#          down at once; every peer settles again before it may lead.
# Lease    A leader's side effects go out only while its last input is less
#          than ``timeout / 2`` old (``may_write``): a write that the process
#          checks right after a pause, before any tick, is refused. Any other
#          peer takes over only after a whole timeout without a heartbeat.
# Term     The highest term seen in any heartbeat, or taken. It never
#          decreases. Leading means taking ``term = highest seen + 1``, so a
#          leader's side effects carry a term newer than any it knows of.
#          Terms stop at ``mesh.bounds.MAX_TERM`` (the decoder refuses
#          higher ones): at the ceiling a leader takes the ceiling itself, so
#          a heartbeat claiming it can slow the mesh down (equal terms), but
#          never make a term that cannot be sent.
#
# Facts, recomputed from the state after every input:
#   outranked     an alive eligible peer ranks better than me
#   newer_leader  an alive eligible peer leads in my term or a higher one
#   behind        I lead, but have heard a higher term (from a non-leader)
#   ready         settled and not outranked
#
# Transitions: the first row matching (role, a fact) fires; repeat until no
# row matches (at most two rows fire per input):
#
#   role      fact          -> role      emits
#   leader    outranked     -> follower  SteppedDown
#   leader    newer_leader  -> follower  SteppedDown  (then usually `ready`)
#   leader    behind        -> leader    BecameLeader (a fresh term)
#   follower  ready         -> leader    BecameLeader (highest seen + 1)
#   observer  -             -  never changes
#
# Any transition is announced at once with a SendHeartbeat, besides the
# regular one every `heartbeat`. LeaderChanged is emitted whenever the
# belief (leader, its term) changes. The belief is this peer itself when it
# leads, else the alive eligible peer whose latest heartbeat says
# leading=True with the highest term (ties: the better rank), else None.
#
# Theory of operation
# -------------------
# Steady state: every eligible peer hears every other within the timeout, so
# all agree on the best-ranked one, which leads; the others are outranked.
# The best-ranked peer can never be outranked, so once settled it leads
# without a gap (a `newer_leader` step-down is followed by `ready` within the
# same input, i.e. it just moves to a fresh term).
#
# Failover: the leader dies after its last heartbeat at t. If N, the
# next-best peer, was connected to it directly, N leads one grace period
# after the transport reports the connection closed (the driver calls
# `disconnected`; a killed process is noticed in ~0.2 s). Otherwise N receives the last
# heartbeat by t + delay and expires it at t + delay + timeout; on that tick
# N is no longer outranked and, settled long ago, leads. So the leader is
# replaced within timeout + max delay of its death (and not before timeout -
# heartbeat): 2.5 s to 3.5 s with the defaults and delay < 0.5 s, when the
# death is seen only as silence (a machine lost, a partition).
#
# Joining: a newcomer sends a heartbeat at once, so a worse leader steps down
# as soon as it hears it; the newcomer leads only when settled. That leaves
# no leader for up to `settle`, on purpose: a gap delays issues, an overlap
# could duplicate them.
#
# Loss and partitions: two peers lead at once only if the worse one has not
# received a single heartbeat from the better one for a whole timeout (the
# two sides of a partition, or a run of losses). The first heartbeat that
# gets through ends it: the worse steps down; the better, hearing a newer
# leader, moves to a fresh term above it. Terms only grow, so the surviving
# leader's side effects win every last-writer-wins comparison by term
# (mesh/sigstate.py), and the sink reconciles duplicates (DESIGN 6).
# ---------------------------------------------------------------------------

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from mesh import defaults
from mesh.bounds import MAX_TERM
from mesh.errors import LocalError

__all__ = [
    "BecameLeader",
    "Election",
    "ElectionConfig",
    "ElectionEvent",
    "ElectionStatistics",
    "Heartbeat",
    "LeaderChanged",
    "Role",
    "SendHeartbeat",
    "SteppedDown",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """What a leader-eligible peer says every heartbeat.

    Rank: higher ``priority`` is better; among equal priorities the smaller
    ``peer`` id is better. ``term`` is the highest term the sender knows of,
    ``leading`` whether the sender currently acts as leader in that term.
    """

    peer: str
    priority: int
    term: int
    leading: bool
    eligible: bool = True


Role: TypeAlias = Literal["leader", "follower", "observer"]
_Fact: TypeAlias = Literal["outranked", "newer_leader", "behind", "ready"]

_TRANSITIONS: Final[tuple[tuple[Role, _Fact, Role], ...]] = (
    ("leader", "outranked", "follower"),
    ("leader", "newer_leader", "follower"),
    ("leader", "behind", "leader"),
    ("follower", "ready", "leader"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectionConfig:
    """Timing of the election.

    ``heartbeat``: seconds between heartbeats. ``timeout_beats``: a peer is
    alive while heard within ``heartbeat * timeout_beats``; at least 2, since
    with 1 any network jitter would expire a live peer between two beats.
    The default, 3 s, rides out a busy mesh delaying heartbeats for seconds
    (``scripts/bench/github_cost.py`` on 2 cores); a killed leader is still
    replaced within the 3 s failover goal because its closed connections
    are reported (:meth:`Election.disconnected`). ``settle``: how long a new
    peer waits before it may lead, so that it has heard the others; ``None``
    means the timeout, so that a newcomer leads only after a whole timeout
    without hearing a better peer, as a survivor does. It should exceed
    ``heartbeat`` plus the network delay.

    Raises :class:`~mesh.errors.LocalError` on a non-positive or non-finite
    value.
    """

    heartbeat: float = defaults.HEARTBEAT
    timeout_beats: int = 6
    settle: float | None = None
    #: A settled peer that does not lead beats every this many heartbeats,
    #: at most ``timeout_beats - 1`` (see :attr:`follower_every` and the rules).
    follower_beats: int = 3

    def __post_init__(self) -> None:
        if not _positive_number(self.heartbeat):
            raise LocalError(f"heartbeat must be a positive number, got {self.heartbeat!r}")
        beats = self.timeout_beats
        if isinstance(beats, bool) or not isinstance(beats, int) or beats < 2:
            raise LocalError(f"timeout_beats must be an int >= 2, got {beats!r}")
        every = self.follower_beats
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise LocalError(f"follower_beats must be an int >= 1, got {every!r}")
        if self.settle is not None and not _positive_number(self.settle):
            raise LocalError(f"settle must be a positive number or None, got {self.settle!r}")

    @property
    def timeout(self) -> float:
        """How long a silent peer stays alive."""
        return self.heartbeat * self.timeout_beats

    @property
    def follower_every(self) -> int:
        """``follower_beats``, at most ``timeout_beats - 1``."""
        return min(self.follower_beats, self.timeout_beats - 1)

    @property
    def settle_period(self) -> float:
        """``settle`` with ``None`` resolved to the timeout."""
        return self.timeout if self.settle is None else self.settle


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    """Publish this heartbeat to every peer now."""

    heartbeat: Heartbeat


@dataclass(frozen=True, slots=True)
class BecameLeader:
    """This peer now leads in ``term``; its side effects must carry it."""

    term: int


@dataclass(frozen=True, slots=True)
class SteppedDown:
    """This peer stopped leading in ``term``; stop side effects at once."""

    term: int
    reason: str


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """Who this peer believes leads, and in which term, changed.

    ``leader`` may be this peer itself, or ``None`` (then ``term`` is the
    highest term known).
    """

    leader: str | None
    term: int


ElectionEvent: TypeAlias = SendHeartbeat | BecameLeader | SteppedDown | LeaderChanged


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectionStatistics:
    """A snapshot for status pages and metrics; ``alive_peers`` excludes self."""

    role: Role
    leader: str | None
    term: int
    alive_peers: int
    elections_won: int
    step_downs: int
    #: Every change of the believed (leader, term), this peer's own elections included.
    leader_changes: int = 0


@dataclass(frozen=True, slots=True)
class _Seen:
    heartbeat: Heartbeat
    expires_at: float  # receiver's clock: received at + timeout


def _rank(hb: Heartbeat) -> tuple[int, str]:
    """Sort key: smaller is better."""
    return (-hb.priority, hb.peer)


_DEFAULT_CONFIG: Final = ElectionConfig()


class Election:
    """One peer's view of the election; feed it heartbeats and time.

    ``now`` is this peer's monotonic clock (any origin). Every method that
    takes ``now`` raises :class:`~mesh.errors.LocalError` if it goes
    backwards or is not finite. Call :meth:`tick` first right after
    construction (``next_deadline()`` is ``now`` then) and after that at
    :meth:`next_deadline`, and :meth:`receive` for every heartbeat; act on the
    returned events in order.
    """

    def __init__(
        self,
        *,
        me: str,
        priority: int = 0,
        eligible: bool = True,
        config: ElectionConfig = _DEFAULT_CONFIG,
        now: float,
        term: int = 0,
    ) -> None:
        """``term`` is the highest term known before joining (e.g. recorded in
        the store's issue links), so a restarted mesh never reuses a term
        whose writes already exist."""
        if not isinstance(me, str) or not me:
            raise LocalError(f"me must be a non-empty peer id, got {me!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise LocalError(f"priority must be an int, got {priority!r}")
        if not math.isfinite(now):
            raise LocalError(f"now must be finite, got {now!r}")
        self._me = me
        self._priority = priority
        self._eligible = eligible
        self._config = config
        self._timeout = config.timeout
        self._settled_at = now + config.settle_period
        self._now = now
        self._role: Role = "follower" if eligible else "observer"
        if isinstance(term, bool) or not isinstance(term, int) or term < 0:
            raise LocalError(f"term must be a non-negative int, got {term!r}")
        self._term = min(term, MAX_TERM)  # a store written before the ceiling
        self._lead_term = 0
        self._peers: dict[str, _Seen] = {}
        # peer -> (disconnected at, until): while gone, its heartbeats cannot
        # keep it alive past disconnected at + grace.
        self._gone: dict[str, tuple[float, float]] = {}
        self._grace = config.heartbeat * min(3, config.timeout_beats)
        self._next_heartbeat = now if eligible else math.inf
        self._belief: tuple[str | None, int | None] = (None, None)
        self._elections_won = 0
        self._step_downs = 0
        self._leader_changes = 0
        self._pending: list[ElectionEvent] = []
        self._driven = False  # a first input late after construction is no pause
        self._lease = self._timeout / 2

    # -- inputs --------------------------------------------------------------

    def receive(self, hb: Heartbeat, now: float) -> list[ElectionEvent]:
        """Take in a heartbeat received at ``now``; return what to do.

        Our own heartbeat echoed back is ignored. A heartbeat from a
        non-eligible sender only counts as a sign of life.
        """
        self._advance(now)
        if hb.peer != self._me:
            expires = now + self._lifetime(hb)
            gone = self._gone.get(hb.peer)
            if gone is not None:
                expires = min(expires, gone[0] + self._grace)
            if expires > now:
                self._peers[hb.peer] = _Seen(hb, expires)
            # The term is learnt even from a peer that no longer counts as
            # alive: a term once heard must never be taken again.
            self._term = max(self._term, min(hb.term, MAX_TERM))
        return self._step(now)

    def disconnected(self, peer: str, now: float) -> list[ElectionEvent]:
        """The transport's direct connection to ``peer`` closed: it may be dead.

        It stays alive for at most a grace period (three heartbeats, at most
        the timeout) unless it connects again: a killed process never does,
        a live one whose connection was merely reset does within a second
        (the redial). Heartbeats heard meanwhile, which a dead peer may still
        have in flight over other paths, do not extend the grace; after one
        timeout they count again as usual.
        """
        self._advance(now)
        if peer != self._me and peer not in self._gone:
            self._gone[peer] = (now, now + self._timeout)
            seen = self._peers.get(peer)
            if seen is not None:
                self._peers[peer] = _Seen(seen.heartbeat, min(seen.expires_at, now + self._grace))
        return self._step(now)

    def connected(self, peer: str, now: float) -> list[ElectionEvent]:
        """The transport has a direct connection to ``peer`` (again).

        An authenticated connection just opened proves the peer alive now, so
        one it had before the loss counts as fresh.
        """
        self._advance(now)
        if self._gone.pop(peer, None) is not None:
            seen = self._peers.get(peer)
            if seen is not None:
                self._peers[peer] = _Seen(seen.heartbeat, now + self._lifetime(seen.heartbeat))
        return self._step(now)

    def tick(self, now: float) -> list[ElectionEvent]:
        """Let time pass: expire silent peers, decide, send a due heartbeat."""
        self._advance(now)
        return self._step(now)

    # -- queries -------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    def may_write(self, now: float) -> bool:
        """Whether a leader's side effect may go out at ``now`` (see Lease).

        A pure query, safe from another thread: true while this peer leads
        and its last input is less than half a timeout old. A write checked
        right after a pause, before the first tick has stepped down, is
        refused.
        """
        return self._role == "leader" and now - self._now < self._lease

    @property
    def leader(self) -> str | None:
        """Who this peer believes leads (see the rules at the top)."""
        return self._current_belief()[0]

    @property
    def term(self) -> int:
        """The highest term seen or taken; never decreases."""
        return self._term

    def alive(self, now: float) -> tuple[str, ...]:
        """Other peers heard within the timeout at ``now``, best-ranked first.

        A pure query: it does not expire anyone (only ``tick``/``receive`` do).
        """
        seen = [s.heartbeat for s in self._peers.values() if s.expires_at > now]
        seen.sort(key=lambda hb: (not hb.eligible, *_rank(hb)))
        return tuple(hb.peer for hb in seen)

    def next_deadline(self) -> float:
        """When :meth:`tick` must next be called (``math.inf``: only on input).

        The earliest of the next heartbeat, the end of settling and the next
        expiry, so a driver can sleep exactly until then. Always later than
        the ``now`` of the last call.
        """
        deadlines = [s.expires_at for s in self._peers.values()]
        if self._eligible:
            deadlines.append(self._next_heartbeat)
            if self._settled_at > self._now:
                deadlines.append(self._settled_at)
        return min(deadlines, default=math.inf)

    def statistics(self) -> ElectionStatistics:
        return ElectionStatistics(
            role=self._role,
            leader=self.leader,
            term=self._term,
            alive_peers=len(self._peers),
            elections_won=self._elections_won,
            step_downs=self._step_downs,
            leader_changes=self._leader_changes,
        )

    # -- the machine ---------------------------------------------------------

    def _advance(self, now: float) -> None:
        if not math.isfinite(now) or now < self._now:
            raise LocalError(f"time must be finite and never go back: {now!r} < {self._now!r}")
        gap = now - self._now
        self._now = now
        if self._eligible and self._driven and gap > self._timeout:
            self._resume(now, gap)
        self._driven = True

    def _resume(self, now: float, gap: float) -> None:
        """Called with no input for longer than a timeout: this process was paused.

        A driver calls at least every heartbeat, so such a gap means the
        process was stopped (SIGSTOP, a VM frozen, a swap storm). Meanwhile
        the others have expired us and may have elected a leader in a newer
        term that we have not heard yet: whatever we knew is stale. A leader
        steps down at once, and every peer settles again (see Paused) before
        it may lead, so that it first hears the mesh as it is now.
        """
        self._settled_at = max(self._settled_at, now + self._config.settle_period)
        if self._role == "leader":
            self._role = "follower"
            self._step_downs += 1
            self._pending.append(
                SteppedDown(self._lead_term, f"paused for {gap:.1f} s: my view is stale")
            )

    def _step(self, now: float) -> list[ElectionEvent]:
        self._peers = {p: s for p, s in self._peers.items() if s.expires_at > now}
        self._gone = {p: g for p, g in self._gone.items() if g[1] > now}
        events: list[ElectionEvent] = self._pending
        self._pending = []
        changed = self._transition(now, events) or bool(events)
        belief = self._current_belief()
        if belief != self._belief:
            self._belief = belief
            self._leader_changes += 1
            leader, term = belief
            events.append(LeaderChanged(leader, self._term if term is None else term))
        if self._eligible and (changed or now >= self._next_heartbeat):
            events.append(SendHeartbeat(self._heartbeat()))
            settling = now < self._settled_at
            every = 1 if self._role == "leader" or settling else self._config.follower_every
            self._next_heartbeat = now + self._config.heartbeat * every
        return events

    def _lifetime(self, hb: Heartbeat) -> float:
        """How long a heartbeat keeps its sender alive (see Beats and Alive)."""
        return self._timeout if hb.leading else self._timeout * self._config.follower_every

    def _transition(self, now: float, events: list[ElectionEvent]) -> bool:
        """Fire rows of ``_TRANSITIONS`` until none matches; True if any did."""
        fired = False
        for _ in range(len(_TRANSITIONS)):  # at most two fire; see the rules
            facts = self._facts(now)
            row = next(
                (
                    (fact, to)
                    for role, fact, to in _TRANSITIONS
                    if role == self._role and fact in facts
                ),
                None,
            )
            if row is None:
                return fired
            fact, to = row
            if to == "leader":
                self._term = min(self._term + 1, MAX_TERM)
                self._lead_term = self._term
                self._elections_won += 1
                events.append(BecameLeader(self._term))
            else:
                self._step_downs += 1
                events.append(SteppedDown(self._lead_term, facts[fact]))
            self._role = to
            fired = True
        raise AssertionError(f"election transitions did not settle: {events}")  # pragma: no cover

    def _facts(self, now: float) -> dict[_Fact, str]:
        """The facts that hold now, each with a human-readable why."""
        facts: dict[_Fact, str] = {}
        me = (-self._priority, self._me)
        rivals = [s.heartbeat for s in self._peers.values() if s.heartbeat.eligible]
        better = min((hb for hb in rivals if _rank(hb) < me), key=_rank, default=None)
        if better is not None:
            facts["outranked"] = f"outranked by {better.peer} (priority {better.priority})"
        elif now >= self._settled_at:
            facts["ready"] = "settled and best-ranked"
        # A rival leading in our own term (the two sides of a healed
        # partition took the same "highest seen + 1") counts as newer: we
        # move to a term above it, so our writes from now on win every
        # comparison by term instead of tying with the loser's.
        # (Not at the ceiling, where no term above exists.)
        floor = self._lead_term + (0 if self._lead_term < MAX_TERM else 1)
        newer = [hb for hb in rivals if hb.leading and hb.term >= floor]
        if newer:
            top = max(newer, key=lambda hb: hb.term)
            facts["newer_leader"] = (
                f"{top.peer} leads in newer term {top.term}"
                if top.term > self._lead_term
                else f"{top.peer} leads in my term {top.term} too"
            )
        if self._term > self._lead_term:
            facts["behind"] = f"heard term {self._term}"
        return facts

    def _current_belief(self) -> tuple[str | None, int | None]:
        if self._role == "leader":
            return self._me, self._term
        claims = [
            s.heartbeat
            for s in self._peers.values()
            if s.heartbeat.leading and s.heartbeat.eligible
        ]
        if not claims:
            return None, None
        best = min(claims, key=lambda hb: (-hb.term, *_rank(hb)))
        return best.peer, best.term

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(
            peer=self._me,
            priority=self._priority,
            term=self._term,
            leading=self._role == "leader",
            eligible=self._eligible,
        )
