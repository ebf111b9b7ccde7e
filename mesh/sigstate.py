"""One signature's replicated state, and its join (DESIGN sections 5 and 7).

A :class:`SigState` is everything the mesh knows about one signature; every
record a peer hears (``report``, ``occ``, ``issue``, or a whole state from
anti-entropy) becomes one through the converters here, and
:func:`merge_states` folds it in. Keeping the value, its converters and its
join in one module is what lets ``mesh.aggregate.Aggregate`` and
``mesh.store.Store`` hold the same state for the same records
(``tests/test_one_aggregate.py``): neither has a merge rule of its own.

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
associativity and the totals are approximate.

States are built from :func:`empty_state` (severity ``LOW``, the bottom of
the join), so a state's severity is the max over its records. A
``SigState(signature=...)`` built by hand has the dataclass default
``MEDIUM``, which is a record claiming ``MEDIUM`` like any other.

Anti-entropy compares states by :func:`summary` and
:func:`state_fingerprint`, a hash of the state's canonical form.

Inputs are trusted to be well formed (finite times, non-negative counts,
matching signatures): the wire codec rejects anything else as a
``RemoteError``, so reaching here with bad data is the caller's bug and
raises :class:`~mesh.errors.LocalError`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from mesh.bounds import saturating_add, saturating_sum
from mesh.errors import LocalError
from mesh.report import Occurrence, Report
from mesh.severity import Severity

__all__ = [
    "Fingerprinted",
    "IssueLink",
    "Limits",
    "OriginCount",
    "SigState",
    "StateSummary",
    "empty_state",
    "eviction_key",
    "join",
    "link_order",
    "merge_states",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Memory bounds; going past one evicts and counts."""

    max_signatures: int = 10_000
    max_origins: int = 256


class StateSummary(NamedTuple):
    """One signature in an anti-entropy summary (``mesh.aggregate.Aggregate.digest``).

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
    aggregate applies (``mesh.aggregate.Aggregate``, ``mesh.store.Store``).
    """
    return merge_states(empty_state(incoming.signature) if base is None else base, incoming, limits)


def eviction_key(state: SigState) -> tuple[int, float, bytes]:
    """At the signature cap the smallest key goes first: no open issue before
    an open one, then the least recently seen, then the lowest signature."""
    return (_open(state), state.last_seen, state.signature)


def _open(state: SigState) -> int:
    """Eviction class: 0 for no open issue (evicted first), 1 for an open one."""
    link = state.link
    return 1 if link is not None and link.state == "open" else 0


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
