"""What a relay decides, apart from what it does: sans-IO, on explicit clocks.

The relay (``node.relay.MeshPeer``) is a trio shell: it feeds these objects
what arrived, what the store answered and what time it is, and carries out
what they return over gossip and the store. Anti-entropy (which digest
differences to answer, and when) is the sibling module ``mesh.antientropy``;
the election is ``mesh.election``. Nothing here reads a clock, sleeps, draws
a random number or touches a socket, so the tests drive every rule directly.

The rules:

1. **Bounded intake.** Data messages wait in a :class:`Backlog` of at most
   ``backlog_max``; past it new ones are dropped and counted (anti-entropy
   repairs a dropped record, a reporter resends an unacked report).
   Heartbeats and digests never wait there.
2. **Acks only from direct peers.** A report is acked only when it came
   straight from its reporter's connection (:func:`acks_for`): the
   reporter's configured relays are among its direct peers and it trusts no
   other acker (DECISIONS 12). Acks from every relay were 9 of every 10
   messages a report caused. At most ``ack_batch`` ids per ack.
3. **Drains coalesce.** A spool drained in one go becomes, per signature the
   store had no detail of, one full report (the earliest), and for every
   (origin, signature) one cumulative occurrence, ``occ_batch`` per message
   (:func:`plan_drain`): the wire carries state, not events (DESIGN section 7).
4. **Refusals lead to bans.** Every ``ban_after``-th refused message of one
   signer (re)bans it (:class:`Rejections`); the per-signer counts are an
   LRU of at most ``signers_max``, so a flood of fresh identities costs
   bounded memory.
5. **Failed duties restart with backoff** (:class:`Backoff`), from
   ``restart_min`` doubling to ``restart_max``, back to the minimum once a
   loop had run ten maxima without failing.
6. **Candidates are dialled with backoff** (:class:`Dialer`): only the
   leader and the best-ranked other candidate, each retried from
   ``dial_min`` doubling to ``dial_max`` seconds; their heartbeat addresses
   are kept for at most ``candidates_max`` peers.
7. **Status is rewritten** when the election's view changes, at most every
   ``status_every`` seconds while anything else in it changes, and every
   ``status_refresh`` seconds at rest (:class:`StatusThrottle`).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mesh import defaults, wire
from mesh.report import Occurrence, Report

__all__ = [
    "BAN_AFTER",
    "SIGNERS_MAX",
    "Backlog",
    "Backoff",
    "Dialer",
    "DrainPlan",
    "Rejections",
    "RelayOptions",
    "StatusThrottle",
    "acks_for",
    "plan_drain",
]

T = TypeVar("T")

#: Refusals of one signer per (re)ban, and signers whose refusals are counted.
BAN_AFTER = 20
SIGNERS_MAX = 4_096


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayOptions:
    """A relay's batch sizes, bounds and timings (``Config`` fills the tunable ones)."""

    #: Occurrences per ``occ`` message, and the pause between messages of a burst.
    occ_batch: int = 256
    pace: float = 0.002
    #: Sink actions per leader round.
    lead_batch: int = 8
    #: Data messages merged per store transaction (16, tried to shorten loop
    #: stalls, made propagation.py collapse: a commit per few messages).
    apply_batch: int = 256
    ack_batch: int = 64
    #: Data messages waiting to be merged before new ones are dropped.
    backlog_max: int = defaults.BACKLOG_MAX
    #: Reports read from the spool per drain round, and the longest pause between rounds.
    drain_limit: int = 5_000
    drain_every: float = 1.0
    restart_min: float = 0.05
    restart_max: float = 5.0
    #: Seconds between write probes while the store is down.
    probe_every: float = 5.0
    status_every: float = 1.0
    #: Seconds between rewrites of an unchanged status (readers allow 3x: ``STALE``).
    status_refresh: float = 10.0
    #: Seconds between looks at the direct connections (libp2p has no event for it).
    watch_every: float = 0.05
    connect_every: float = 1.0
    dial_min: float = 1.0
    dial_max: float = 30.0
    candidates_max: int = 1_024
    #: Seconds between looks at the key file (a rotation step: ``node.keyfile``).
    keys_every: float = 2.0
    #: Addresses a heartbeat carries.
    heartbeat_addrs: int = 8
    ban_after: int = BAN_AFTER
    signers_max: int = SIGNERS_MAX

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ValueError(f"RelayOptions.{f.name} must be positive, not {value!r}")
        if self.restart_min > self.restart_max or self.dial_min > self.dial_max:
            raise ValueError("RelayOptions: a backoff's minimum exceeds its maximum")


class Backlog(Generic[T]):
    """A FIFO of at most ``limit`` items that refuses, rather than grows, when full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: collections.deque[T] = collections.deque()
        self.dropped = 0

    def offer(self, item: T) -> bool:
        """Queue ``item``; False (and counted) when the backlog is full."""
        if len(self._items) >= self.limit:
            self.dropped += 1
            return False
        self._items.append(item)
        return True

    def take(self, n: int) -> list[T]:
        """Up to ``n`` items, oldest first."""
        return [self._items.popleft() for _ in range(min(n, len(self._items)))]

    def __len__(self) -> int:
        return len(self._items)


def acks_for(
    reports: Iterable[tuple[wire.ReportMsg, str]],
    *,
    direct: Collection[str],
    acker: str,
    batch: int,
) -> list[wire.AckMsg]:
    """The acks for reports just committed: only those that asked, from direct senders."""
    wanted = tuple(
        (m.report.origin, m.report.seq) for m, sender in reports if m.ack and sender in direct
    )
    return [
        wire.AckMsg(ids=wanted[start : start + batch], acker=acker)
        for start in range(0, len(wanted), batch)
    ]


@dataclass(frozen=True, slots=True)
class DrainPlan:
    """What a drained spool becomes on the wire."""

    #: Full reports, one per signature the store had no detail of (not acked:
    #: already committed here).
    reports: tuple[Report, ...]
    occurrences: tuple[wire.OccMsg, ...]


def _later(occ: Occurrence, previous: Occurrence | None) -> Occurrence:
    if previous is None:
        return occ
    return dataclasses.replace(
        occ,
        count=max(occ.count, previous.count),
        first_seen=min(occ.first_seen, previous.first_seen),
        last_seen=max(occ.last_seen, previous.last_seen),
    )


def plan_drain(pending: Sequence[Report], known: Collection[bytes], occ_batch: int) -> DrainPlan:
    """Coalesce spooled reports (rule 3); ``known``: signatures the store has detail of.

    Re-sending one full report per signature on every drain round was most of
    the bytes under a steady stream of failures, hence ``known``.
    """
    first: dict[bytes, Report] = {}
    latest: dict[tuple[bytes, bytes], Occurrence] = {}
    for report in pending:
        if report.signature not in known:
            first.setdefault(report.signature, report)
        key = (report.origin, report.signature)
        latest[key] = _later(report.occurrence(), latest.get(key))
    occurrences = list(latest.values())
    return DrainPlan(
        reports=tuple(first.values()),
        occurrences=tuple(
            wire.OccMsg(occurrences=tuple(occurrences[start : start + occ_batch]))
            for start in range(0, len(occurrences), occ_batch)
        ),
    )


@dataclass
class Rejections:
    """Refused messages by reason and by signer, and which signers to ban (rule 4)."""

    ban_after: int = BAN_AFTER
    signers_max: int = SIGNERS_MAX
    by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    by_signer: collections.OrderedDict[str, int] = field(default_factory=collections.OrderedDict)
    banned: set[str] = field(default_factory=set)

    def add(self, reason: str, signer: str) -> int:
        """Count one refusal; returns the signer's count (LRU-bounded)."""
        self.by_reason[reason] += 1
        count = self.by_signer.pop(signer, 0) + 1
        self.by_signer[signer] = count
        while len(self.by_signer) > self.signers_max:
            self.by_signer.popitem(last=False)
        return count

    def refuse(self, reason: str, signer: str) -> bool:
        """Count one refusal; True when the signer is to be (re)banned now."""
        if self.add(reason, signer) % self.ban_after:
            return False
        self.banned.add(signer)
        return True


class Backoff:
    """How long a failed duty waits before it restarts (rule 5)."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self._next = low

    def failed(self, ran_for: float) -> float:
        """The pause after a failure of a run that lasted ``ran_for`` seconds."""
        if ran_for > 10 * self.high:
            self._next = self.low  # it had been running fine
        delay = self._next
        self._next = min(self.high, delay * 2)
        return delay


class Dialer:
    """Which candidates to dial now, and when to retry the unreachable (rule 6)."""

    def __init__(self, options: RelayOptions) -> None:
        self.options = options
        self.addrs: collections.OrderedDict[str, tuple[str, ...]] = collections.OrderedDict()
        self._retry: dict[str, tuple[float, float]] = {}  # peer -> (not before, last delay)

    def heard(self, peer: str, addrs: tuple[str, ...]) -> None:
        """A candidate's heartbeat named where it listens."""
        self.addrs.pop(peer, None)
        self.addrs[peer] = addrs
        while len(self.addrs) > self.options.candidates_max:
            self.addrs.popitem(last=False)

    def due(
        self,
        *,
        me: str,
        leader: str | None,
        ranked: Sequence[str],
        direct: Collection[str],
        now: float,
    ) -> list[tuple[str, tuple[str, ...]]]:
        """The peers to dial now (the leader and ``ranked[0]``) with their addresses."""
        targets = {p for p in (leader, *ranked[:1]) if p is not None} - {me}
        for gone in set(self._retry) - targets:
            del self._retry[gone]  # bounded: only current targets are remembered
        out = []
        for peer in sorted(targets):
            addrs = self.addrs.get(peer, ())
            if peer in direct or not addrs or self._retry.get(peer, (0.0, 0.0))[0] > now:
                continue
            out.append((peer, addrs))
        return out

    def reached(self, peer: str) -> None:
        self._retry.pop(peer, None)

    def unreachable(self, peer: str, now: float) -> float:
        """Back off ``peer``; returns the delay before the next try."""
        last = self._retry.get(peer, (0.0, self.options.dial_min / 2))[1]
        delay = min(self.options.dial_max, 2 * last)
        self._retry[peer] = (now + delay, delay)
        return delay


class StatusThrottle:
    """Whether the status file is due (rule 7).

    The tick loop wakes at every peer's expiry, many times a second; a
    rewrite each time cost the 10 relays of scripts/bench/propagation.py
    several ms each (a JSON dump and a rename). Building the status (a store
    query, the member table, the addresses) was a quarter of an idle relay's
    CPU when it ran every second (BENCHMARKS session 9), so a relay at rest
    rewrites it only every ``refresh`` seconds: readers take a file whose
    writer's pid is alive as current for longer (``node.cli_table``).

    ``election``: the election's view, written at once when it changes.
    ``content``: a cheap summary of the rest (connections, counters),
    written at most every ``every`` seconds when it changes.
    """

    def __init__(self, every: float, refresh: float | None = None) -> None:
        self.every = every
        self.refresh = max(every, refresh if refresh is not None else every)
        self._election: object = None
        self._content: object = None
        self._at = float("-inf")

    def due(self, election: object, now: float, content: object = None) -> bool:
        since = now - self._at
        changed = content != self._content and since >= self.every
        if election == self._election and not changed and since < self.refresh:
            return False
        self._election, self._content, self._at = election, content, now
        return True
