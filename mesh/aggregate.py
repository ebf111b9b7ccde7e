"""The replicated, mergeable per-signature state, and what the leader does next.

Everything that decides what the mesh knows about an error, and when the
leader must tell the sink, lives in this file. It is pure: no clock, no IO,
no randomness; time comes in as ``now`` (DESIGN sections 5, 7 and 8).

Theory of operation
===================

Every peer folds what it hears (``report``, ``occ`` and ``issue`` records,
and whole states from anti-entropy) into an :class:`Aggregate`, a map
signature -> :class:`SigState`. :func:`merge_states` is a join (commutative,
associative, idempotent), so peers that have heard the same records, in any
order, any number of times, hold equal states; a dropped message is repaired
by any later one, or by exchanging :meth:`Aggregate.digest` and
:meth:`Aggregate.delta_for`. A new leader therefore already holds what the
old one knew. The leader asks :meth:`Aggregate.due` what to do now and when
to ask again (:meth:`Aggregate.next_due`).

Merge rules (per signature)
---------------------------

==================  =====================================================
field               join
==================  =====================================================
``counts``          per origin a grow-only counter record:
                    ``count`` max, ``first_seen`` min, ``last_seen`` max,
                    ``host`` of the greater ``(count, host)``
``detail``          the earliest report by ``(timestamp, origin, seq)``
                    (then by ``repr``, only for two different reports with
                    the same id); ``None`` loses to any report
``severity``        max; every report and occurrence raises it
``link``            last writer wins by ``(term, synced_at, synced_total,
                    ref, state, number, url, severity)``, ``None`` loses
``evicted_origins`` max, plus the origins dropped by this merge
==================  =====================================================

Every sum saturates at ``mesh.bounds.MAX_COUNT`` (``total``,
``evicted_origins``): counts near the wire's limit from a few origins must
not make a state whose digest cannot be encoded.

Bounds: a state keeps at most ``Limits.max_origins`` origins, those with the
greatest ``(count, origin)``; the rest are dropped and counted in
``evicted_origins``. The merge laws hold exactly while states stay below the
cap; above it the join stays commutative and every eviction is counted, but
associativity and the totals are approximate. An :class:`Aggregate` keeps at
most ``Limits.max_signatures`` signatures and evicts the least recently seen
(smallest ``(last_seen, signature)``), preferring those without an open issue,
counting each in ``Aggregate.evicted_signatures``. Below the caps the
aggregate is order independent; at the caps which signature goes depends on
arrival order, and an evicted state may come back through anti-entropy.

The aggregate builds states from :func:`empty_state` (severity ``LOW``, the
bottom of the join), so a state's severity is the max over its records. A
``SigState(signature=...)`` built by hand has the dataclass default
``MEDIUM``, which is a record claiming ``MEDIUM`` like any other.

Bundling rules (:func:`plan`)
-----------------------------

======  ================================================  ===============
link    condition (``flush`` skips the time part)         action
======  ================================================  ===============
none    detail known and ``now >= first_seen + settle``   ``OpenIssue``
none    no detail (only ``occ`` records heard)            nothing, ever
open    news and ``now >= synced_at + window``            ``UpdateIssue``
closed  ``total > synced_total`` and reopen enabled       ``ReopenIssue``
======  ================================================  ===============

*news* means ``total > synced_total`` or :func:`effective_severity` above the
severity the issue shows. ``first_seen`` is the reporters' clock, the earliest
over all origins, so one origin whose clock runs behind only shortens the
wait and one that runs ahead is outvoted by any other origin; if every
reporter runs ahead of the leader, opening waits out the skew (a future
``first_seen`` counts as "just now", never as negative age) unless the leader
flushes. A regression (new occurrences on a closed issue) is acted on at
once. :func:`next_due` is the earliest ``now`` at which :func:`plan` acts
without new input; ``plan`` is monotone in ``now``, so ``plan`` returns
``None`` before it and an action from it on.

Inputs are trusted to be well formed (finite times, non-negative counts,
matching signatures): the wire codec rejects anything else as a
``RemoteError``, so reaching here with bad data is the caller's bug and
raises :class:`~mesh.errors.LocalError`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, Protocol

from mesh import defaults
from mesh.bounds import saturating_add, saturating_sum
from mesh.errors import LocalError
from mesh.report import Occurrence, Report
from mesh.severity import Severity, escalate

__all__ = [
    "DEFAULT_SETTLE",
    "DEFAULT_WINDOW",
    "Action",
    "Aggregate",
    "BundlePolicy",
    "Fingerprinted",
    "IssueLink",
    "Limits",
    "OpenIssue",
    "OriginCount",
    "ReopenIssue",
    "SigState",
    "StateSummary",
    "UpdateIssue",
    "effective_severity",
    "empty_state",
    "eviction_key",
    "join",
    "link_order",
    "merge_states",
    "next_due",
    "per_hour",
    "plan",
    "state_fingerprint",
    "state_of_link",
    "state_of_occurrence",
    "state_of_report",
    "summary",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginCount:
    """One origin's share of a signature: a grow-only counter with its window."""

    count: int
    first_seen: float
    last_seen: float
    host: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueLink:
    """Where a signature's issue lives in the sink, as last written by a leader.

    Last-writer-wins by ``(term, synced_at, synced_total, ref)``: a higher
    election term always wins, and within a term the leader's own later write.
    ``synced_total``/``synced_at`` record what the issue last showed, which is
    what bundling compares against. The remaining fields
    (``state, number, url, severity``) break the last ties so that the join
    is a total order and every peer picks the same link.
    """

    ref: str
    number: int | None
    url: str
    state: Literal["open", "closed"]
    term: int
    synced_total: int
    synced_at: float
    severity: Severity = Severity.MEDIUM


@dataclass(frozen=True, slots=True, kw_only=True)
class SigState:
    """Everything the mesh knows about one signature.

    Immutable by contract: ``counts`` is a plain ``dict`` that nobody mutates
    after construction (the aggregate copies before it changes anything).
    Equality compares every field, ``counts`` as a dict.
    """

    signature: bytes
    detail: Report | None = None
    counts: Mapping[bytes, OriginCount] = field(default_factory=dict)
    severity: Severity = Severity.MEDIUM
    link: IssueLink | None = None
    evicted_origins: int = 0

    @property
    def total(self) -> int:
        """The sum of the origins' counts, saturating at ``mesh.bounds.MAX_COUNT``:
        it travels in digests and issue links, whose ``uint`` it must fit."""
        return saturating_sum(c.count for c in self.counts.values())

    @property
    def first_seen(self) -> float:
        return min((c.first_seen for c in self.counts.values()), default=0.0)

    @property
    def last_seen(self) -> float:
        return max((c.last_seen for c in self.counts.values()), default=0.0)

    @property
    def hosts(self) -> tuple[str, ...]:
        """Distinct host names, sorted."""
        return tuple(sorted({c.host for c in self.counts.values()}))


#: The bundling defaults, the one place they are written (``node.config``
#: and the GitHub sink take them from here): seconds a new signature waits
#: for its first issue, and between two updates of one issue.
DEFAULT_SETTLE: Final = defaults.SETTLE
DEFAULT_WINDOW: Final = defaults.WINDOW


@dataclass(frozen=True, slots=True, kw_only=True)
class BundlePolicy:
    """When the leader acts (DESIGN sections 5 and 8)."""

    settle: float = DEFAULT_SETTLE
    window: float = DEFAULT_WINDOW
    reopen_on_regression: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Memory bounds; going past one evicts and counts."""

    max_signatures: int = 10_000
    max_origins: int = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenIssue:
    state: SigState


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateIssue:
    state: SigState
    link: IssueLink


@dataclass(frozen=True, slots=True, kw_only=True)
class ReopenIssue:
    state: SigState
    link: IssueLink


Action = OpenIssue | UpdateIssue | ReopenIssue


class StateSummary(NamedTuple):
    """One signature in an anti-entropy summary (:meth:`Aggregate.digest`).

    The first four fields match ``mesh.wire.DigestEntry`` (``-1`` without a
    link). ``fingerprint`` (:func:`state_fingerprint`) is what makes the
    summary exact: two peers can hold different states with equal totals and
    links (say each heard a different origin three times), which only the
    fingerprint tells apart.
    """

    signature: bytes
    total: int
    link_term: int
    link_synced_total: int
    fingerprint: bytes


class Fingerprinted(Protocol):
    """Anything that names a signature and the fingerprint of a peer's state of it."""

    @property
    def signature(self) -> bytes: ...

    @property
    def fingerprint(self) -> bytes: ...


_BOTTOM_SEVERITY = min(Severity)
_HOUR = 3600.0


def empty_state(signature: bytes) -> SigState:
    """The bottom of the join for ``signature``: merging it changes nothing."""
    return SigState(signature=signature, severity=_BOTTOM_SEVERITY)


# --- records as states: the one conversion every merge path uses -------------


def _count_of(occ: Occurrence) -> OriginCount:
    return OriginCount(
        count=occ.count, first_seen=occ.first_seen, last_seen=occ.last_seen, host=occ.host
    )


def state_of_occurrence(occ: Occurrence) -> SigState:
    """The state an ``occ`` record adds: one origin's count, its severity, no detail."""
    return SigState(
        signature=occ.signature, counts={occ.origin: _count_of(occ)}, severity=occ.severity
    )


def state_of_report(report: Report) -> SigState:
    """The state a full report adds: its occurrence, and itself as the detail."""
    occ = state_of_occurrence(report.occurrence())
    return SigState(
        signature=occ.signature, detail=report, counts=occ.counts, severity=occ.severity
    )


def state_of_link(signature: bytes, link: IssueLink) -> SigState:
    """The state an ``issue`` record adds: the link only, at the bottom severity
    (a link's own ``severity`` is what the issue shows, not a new occurrence)."""
    return SigState(signature=signature, severity=_BOTTOM_SEVERITY, link=link)


def join(base: SigState | None, incoming: SigState, limits: Limits = Limits()) -> SigState:
    """``incoming`` folded into ``base`` (``None``: nothing known of it yet).

    Always a join with the bottom at least, so that an incoming state over
    the origin cap is capped like any merge. The rule every holder of an
    aggregate applies (:class:`Aggregate`, ``mesh.store.Store``).
    """
    return merge_states(empty_state(incoming.signature) if base is None else base, incoming, limits)


def eviction_key(state: SigState) -> tuple[int, float, bytes]:
    """At the signature cap the smallest key goes first: no open issue before
    an open one, then the least recently seen, then the lowest signature."""
    return (_open(state), state.last_seen, state.signature)


# --- joins of the single fields ---------------------------------------------


def _join_count(x: OriginCount, y: OriginCount) -> OriginCount:
    """Per-origin join; returns ``x`` itself when ``y`` adds nothing."""
    if x is y:
        return x
    x_wins_host = (x.count, x.host) >= (y.count, y.host)
    if x_wins_host and x.first_seen <= y.first_seen and x.last_seen >= y.last_seen:
        return x
    if not x_wins_host and y.first_seen <= x.first_seen and y.last_seen >= x.last_seen:
        return y
    return OriginCount(
        count=max(x.count, y.count),
        first_seen=min(x.first_seen, y.first_seen),
        last_seen=max(x.last_seen, y.last_seen),
        host=x.host if x_wins_host else y.host,
    )


def _detail_key(report: Report) -> tuple[float, bytes, int]:
    return (report.timestamp, report.origin, report.seq)


def _join_detail(a: Report | None, b: Report | None) -> Report | None:
    if a is None or a is b:
        return b
    if b is None:
        return a
    ka, kb = _detail_key(a), _detail_key(b)
    if ka != kb:
        return a if ka < kb else b
    if a == b:
        return a
    # Same id, different bytes: never happens with an honest store, but the
    # join must still pick the same one on every peer.
    return a if repr(a) <= repr(b) else b


def _link_key(link: IssueLink) -> tuple[int, float, int, str, str, int, int, str, int]:
    number = link.number
    return (
        link.term,
        link.synced_at,
        link.synced_total,
        link.ref,
        link.state,
        0 if number is None else 1,
        0 if number is None else number,
        link.url,
        int(link.severity),
    )


def link_order(link: IssueLink) -> tuple[int, float, int, str, str, int, int, str, int]:
    """The last-writer-wins order of links, for copies kept outside the aggregate.

    A relay's copy of the file sink's issues applies a link only when it is
    later in this order than the one it shows, so a late or replayed link
    never undoes a newer one (the same rule as :func:`merge_states`).
    """
    return _link_key(link)


def _join_link(a: IssueLink | None, b: IssueLink | None) -> IssueLink | None:
    if a is None or a is b:
        return b
    if b is None:
        return a
    return a if _link_key(a) >= _link_key(b) else b


def _cap_origins(
    counts: dict[bytes, OriginCount], cap: int
) -> tuple[dict[bytes, OriginCount], int]:
    """Keep the ``cap`` origins with the greatest ``(count, origin)``."""
    if len(counts) <= cap:
        return counts, 0
    kept = heapq.nlargest(cap, counts.items(), key=lambda item: (item[1].count, item[0]))
    return dict(kept), len(counts) - cap


def _check_limits(limits: Limits) -> None:
    if limits.max_origins < 1 or limits.max_signatures < 1:
        raise LocalError(f"limits must be at least 1, got {limits!r}")


def merge_states(a: SigState, b: SigState, limits: Limits = Limits()) -> SigState:
    """The CRDT join of two states of the same signature (see the module table).

    Commutative always; associative and idempotent while both states hold at
    most ``limits.max_origins`` origins. The inputs are not modified.

    Raises :class:`~mesh.errors.LocalError` if the signatures differ or the
    limits are below 1.
    """
    if a.signature != b.signature:
        raise LocalError(
            f"cannot merge states of different signatures {a.signature.hex()} "
            f"and {b.signature.hex()}"
        )
    _check_limits(limits)
    small, big = (a.counts, b.counts) if len(a.counts) <= len(b.counts) else (b.counts, a.counts)
    counts = dict(big)
    if small is not big:
        for origin, rec in small.items():
            mine = counts.get(origin)
            counts[origin] = rec if mine is None else _join_count(mine, rec)
    counts, dropped = _cap_origins(counts, limits.max_origins)
    return SigState(
        signature=a.signature,
        detail=_join_detail(a.detail, b.detail),
        counts=counts,
        severity=max(a.severity, b.severity),
        link=_join_link(a.link, b.link),
        evicted_origins=saturating_add(max(a.evicted_origins, b.evicted_origins), dropped),
    )


# --- bundling ----------------------------------------------------------------


def per_hour(state: SigState) -> float:
    """Occurrences per hour: ``total * 3600 / max(3600, last_seen - first_seen)``.

    The span is at least an hour so that a short burst is not extrapolated
    (60 occurrences within a minute count as 60 per hour, not 3600).
    """
    total = state.total
    if total == 0:
        return 0.0
    return total * _HOUR / max(_HOUR, state.last_seen - state.first_seen)


def effective_severity(state: SigState) -> Severity:
    """The state's severity raised by spread (:func:`mesh.severity.escalate`).

    ``hosts`` is the number of distinct hosts among the kept origins and the
    rate is :func:`per_hour`.
    """
    return escalate(state.severity, hosts=len(state.hosts), per_hour=per_hour(state))


def _settle_from(state: SigState) -> float:
    """When the settle delay starts: the earliest sighting on any reporter."""
    if state.counts:
        return state.first_seen
    assert state.detail is not None
    return state.detail.timestamp


def _check_policy(policy: BundlePolicy) -> None:
    if math.isnan(policy.settle) or math.isnan(policy.window):
        raise LocalError(f"bundle policy times must be numbers, got {policy!r}")


def _has_news(state: SigState, link: IssueLink) -> bool:
    return state.total > link.synced_total or effective_severity(state) > link.severity


def plan(
    state: SigState, now: float, policy: BundlePolicy, *, flush: bool = False
) -> Action | None:
    """What the leader must do for this signature now, if anything.

    ``flush`` skips the settle delay of a new signature: a process about to
    exit opens its issue now rather than leaving it to a later process. It
    does not skip the bundle window (updates stay at most one per window
    whoever acts), never opens an issue without a detail report and never
    reopens when reopening is disabled.

    Raises :class:`~mesh.errors.LocalError` if the policy holds NaN.
    """
    _check_policy(policy)
    link = state.link
    if link is None:
        if state.detail is None:
            return None
        if flush or now >= _settle_from(state) + policy.settle:
            return OpenIssue(state=state)
        return None
    if link.state == "closed":
        if policy.reopen_on_regression and state.total > link.synced_total:
            return ReopenIssue(state=state, link=link)
        return None
    if now >= link.synced_at + policy.window and _has_news(state, link):
        return UpdateIssue(state=state, link=link)
    return None


def next_due(state: SigState, policy: BundlePolicy) -> float | None:
    """The earliest ``now`` at which :func:`plan` (without flush) acts.

    ``None`` if it never will without new input; ``-inf`` if it acts at any
    time (a regression). Callers schedule ``max(now, next_due)``.

    Raises :class:`~mesh.errors.LocalError` if the policy holds NaN.
    """
    _check_policy(policy)
    link = state.link
    if link is None:
        if state.detail is None:
            return None
        return _settle_from(state) + policy.settle
    if link.state == "closed":
        if policy.reopen_on_regression and state.total > link.synced_total:
            return -math.inf
        return None
    if _has_news(state, link):
        return link.synced_at + policy.window
    return None


# --- fingerprints for anti-entropy ---------------------------------------------


def state_fingerprint(state: SigState) -> bytes:
    """8 bytes of blake2b over the state's canonical form; equal states, equal bytes.

    The detail enters by its key ``(timestamp, origin, seq)`` only, so two
    different reports under one id (a broken store) hash alike.
    """
    # ``+ 0.0`` folds -0.0 into 0.0: equal states must hash equal.
    counts = sorted(
        (origin, c.count, c.first_seen + 0.0, c.last_seen + 0.0, c.host)
        for origin, c in state.counts.items()
    )
    detail = None if state.detail is None else _detail_key(state.detail)
    link = None if state.link is None else _link_key(state.link)
    canon = (state.signature, counts, int(state.severity), state.evicted_origins, detail, link)
    return hashlib.blake2b(repr(canon).encode(), digest_size=8).digest()


def summary(state: SigState) -> StateSummary:
    """What an anti-entropy digest says of ``state`` (every number bounded)."""
    link = state.link
    return StateSummary(
        signature=state.signature,
        total=state.total,
        link_term=-1 if link is None else link.term,
        link_synced_total=-1 if link is None else link.synced_total,
        fingerprint=state_fingerprint(state),
    )


# --- input checks ----------------------------------------------------------------


def _check_times(count: int, first_seen: float, last_seen: float, what: str) -> None:
    if count < 0 or not (math.isfinite(first_seen) and math.isfinite(last_seen)):
        raise LocalError(f"{what}: counts must be >= 0 and times finite")


def _check_state(state: SigState) -> None:
    for rec in state.counts.values():
        _check_times(rec.count, rec.first_seen, rec.last_seen, "state")
    if state.detail is not None:
        if state.detail.signature != state.signature:
            raise LocalError("state: detail report has another signature")
        _check_times(state.detail.count, state.detail.timestamp, state.detail.timestamp, "detail")
    if state.link is not None:
        _check_link(state.link)


def _check_link(link: IssueLink) -> None:
    if not math.isfinite(link.synced_at):
        raise LocalError("link: synced_at must be finite")


# --- the aggregate ---------------------------------------------------------------


def _open(state: SigState) -> int:
    """Eviction class: 0 for no open issue (evicted first), 1 for an open one."""
    link = state.link
    return 1 if link is not None and link.state == "open" else 0


class Aggregate:
    """An in-memory map signature -> :class:`SigState` with bounded size.

    Every ``add_*``/``merge_state``/``set_link`` returns the signature's state
    after the change (it may already have been evicted if it is the stalest
    one at the signature cap; :meth:`get` tells). Unchanged input returns the
    very same state object. States are immutable, so a snapshot is a shallow
    copy.

    Eviction bookkeeping: one lazy min-heap of ``(last_seen, signature)`` per
    eviction class. ``last_seen`` only grows except when origins are evicted,
    so an entry's key is a lower bound of the state's key; stale entries are
    fixed up when they reach the top. That keeps eviction O(log n) and adds
    nothing to the common path (a repeat of a known signature).
    """

    def __init__(self, limits: Limits = Limits()) -> None:
        """Raises :class:`~mesh.errors.LocalError` if a limit is below 1."""
        _check_limits(limits)
        self.limits = limits
        self._states: dict[bytes, SigState] = {}
        self.evicted_signatures = 0
        self._lru: tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]] = ([], [])

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[SigState]:
        return iter(self._states.values())

    def get(self, signature: bytes) -> SigState | None:
        return self._states.get(signature)

    def states(self) -> Iterable[SigState]:
        return self._states.values()

    def snapshot(self) -> dict[bytes, SigState]:
        """A copy of the map; later changes to the aggregate do not show in it."""
        return dict(self._states)

    # -- inputs --

    def add_occurrence(self, occ: Occurrence) -> SigState:
        """Merge one origin's cumulative count (an ``occ`` record).

        Raises :class:`~mesh.errors.LocalError` on a negative count or a
        non-finite time.
        """
        old = self._states.get(occ.signature)
        new = self._fold_occurrence(old, occ)
        self._store(old, new)
        return new

    def add_report(self, report: Report) -> SigState:
        """Merge a full report: its occurrence, its severity, and it as detail.

        Raises :class:`~mesh.errors.LocalError` on a negative count or a
        non-finite timestamp.
        """
        old = self._states.get(report.signature)
        new = self._fold_occurrence(old, report.occurrence())
        detail = _join_detail(new.detail, report)
        if detail is not new.detail:
            new = SigState(
                signature=new.signature,
                detail=detail,
                counts=new.counts,
                severity=new.severity,
                link=new.link,
                evicted_origins=new.evicted_origins,
            )
        self._store(old, new)
        return new

    def _fold_occurrence(self, old: SigState | None, occ: Occurrence) -> SigState:
        """``old`` joined with one occurrence; ``old`` itself if nothing changes.

        The hot path: one small dict copy and one new state at most.
        """
        _check_times(occ.count, occ.first_seen, occ.last_seen, "occurrence")
        if old is None:
            return state_of_occurrence(occ)
        rec = _count_of(occ)
        mine = old.counts.get(occ.origin)
        if mine is not None:
            rec = _join_count(mine, rec)
        severity = old.severity if old.severity >= occ.severity else occ.severity
        if rec is mine and severity is old.severity:
            return old
        counts = dict(old.counts)
        counts[occ.origin] = rec
        dropped = 0
        if mine is None:
            counts, dropped = _cap_origins(counts, self.limits.max_origins)
        return SigState(
            signature=old.signature,
            detail=old.detail,
            counts=counts,
            severity=severity,
            link=old.link,
            evicted_origins=saturating_add(old.evicted_origins, dropped),
        )

    def merge_state(self, state: SigState) -> SigState:
        """Join a whole state (anti-entropy, or a state built elsewhere).

        Raises :class:`~mesh.errors.LocalError` if the state is malformed
        (non-finite times, negative counts, a detail of another signature).
        """
        _check_state(state)
        old = self._states.get(state.signature)
        if old is None:
            new = merge_states(empty_state(state.signature), state, self.limits)
            self._insert(new)
            return new
        if old is state:
            return old
        new = merge_states(old, state, self.limits)
        if new == old:
            return old
        self._replace(old, new)
        return new

    def merge(self, other: Aggregate) -> None:
        """Join every state of ``other`` into this aggregate (``other`` is unchanged).

        Raises :class:`~mesh.errors.LocalError` as :meth:`merge_state`.
        """
        if other is self:
            return
        for state in list(other._states.values()):
            self.merge_state(state)

    def set_link(self, signature: bytes, link: IssueLink) -> SigState:
        """Record where the signature's issue lives (an ``issue`` record).

        A link merge, not an overwrite: a link that loses the last-writer-wins
        order (e.g. from a lower term) changes nothing.

        Raises :class:`~mesh.errors.LocalError` if ``synced_at`` is not finite.
        """
        _check_link(link)
        old = self._states.get(signature)
        if old is None:
            new = state_of_link(signature, link)
            self._insert(new)
            return new
        winner = _join_link(old.link, link)
        if winner is old.link:
            return old
        new = SigState(
            signature=signature,
            detail=old.detail,
            counts=old.counts,
            severity=old.severity,
            link=winner,
            evicted_origins=old.evicted_origins,
        )
        self._replace(old, new)
        return new

    # -- outputs --

    def due(self, now: float, policy: BundlePolicy, *, flush: bool = False) -> list[Action]:
        """Every action :func:`plan` asks for now, sorted by signature.

        Raises :class:`~mesh.errors.LocalError` if the policy holds NaN.
        """
        actions = [
            action
            for state in self._states.values()
            if (action := plan(state, now, policy, flush=flush)) is not None
        ]
        actions.sort(key=lambda action: action.state.signature)
        return actions

    def next_due(self, policy: BundlePolicy) -> float | None:
        """The earliest :func:`next_due` over all signatures, ``None`` if none.

        Raises :class:`~mesh.errors.LocalError` if the policy holds NaN.
        """
        dues = [d for s in self._states.values() if (d := next_due(s, policy)) is not None]
        return min(dues, default=None)

    def digest(self) -> list[StateSummary]:
        """An anti-entropy summary of every signature, sorted by signature."""
        return [summary(self._states[sig]) for sig in sorted(self._states)]

    def delta_for(self, digest: Iterable[Fingerprinted]) -> list[SigState]:
        """The states a peer that sent ``digest`` lacks or holds differently.

        Sending these to the peer (which merges them) and doing the same the
        other way round makes both aggregates equal. Sorted by signature.
        """
        theirs = {entry.signature: entry.fingerprint for entry in digest}
        return [
            state
            for sig in sorted(self._states)
            if theirs.get(sig) != state_fingerprint(state := self._states[sig])
        ]

    # -- bookkeeping --

    def _store(self, old: SigState | None, new: SigState) -> None:
        if old is None:
            self._insert(new)
        elif new is not old:
            self._replace(old, new)

    def _insert(self, new: SigState) -> None:
        self._states[new.signature] = new
        self._push(new)
        while len(self._states) > self.limits.max_signatures:
            victim = self._pop_stalest(0)
            if victim is None:
                victim = self._pop_stalest(1)
            assert victim is not None, "every kept signature has a heap entry"
            del self._states[victim]
            self.evicted_signatures += 1

    def _replace(self, old: SigState, new: SigState) -> None:
        self._states[new.signature] = new
        # last_seen only shrinks when origins are evicted; the class changes
        # with the link. Otherwise the existing heap entry stays a lower bound.
        if new.evicted_origins != old.evicted_origins or _open(new) != _open(old):
            self._push(new)

    def _push(self, state: SigState) -> None:
        heapq.heappush(self._lru[_open(state)], (state.last_seen, state.signature))
        if len(self._lru[0]) + len(self._lru[1]) > 2 * len(self._states) + 1024:
            self._rebuild_lru()

    def _rebuild_lru(self) -> None:
        heaps: tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]] = ([], [])
        for state in self._states.values():
            heaps[_open(state)].append((state.last_seen, state.signature))
        for heap in heaps:
            heapq.heapify(heap)
        self._lru = heaps

    def _pop_stalest(self, klass: int) -> bytes | None:
        """Remove and return the signature with the smallest key in ``klass``."""
        heap = self._lru[klass]
        while heap:
            key, sig = heap[0]
            state = self._states.get(sig)
            if state is None or _open(state) != klass:
                heapq.heappop(heap)  # evicted, or filed under the other class
                continue
            actual = state.last_seen
            if key == actual:
                heapq.heappop(heap)
                return sig
            heapq.heapreplace(heap, (actual, sig))  # stale key: file it anew
        return None
