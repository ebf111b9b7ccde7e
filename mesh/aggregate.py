"""The replicated, mergeable map of signature states, bounded in size.

Every peer folds what it hears (``report``, ``occ`` and ``issue`` records,
and whole states from anti-entropy) into an :class:`Aggregate`, a map
signature -> :class:`~mesh.sigstate.SigState`. It is pure: no clock, no IO,
no randomness; time comes in as ``now`` (DESIGN sections 5, 7 and 8).

Theory of operation
===================

:func:`~mesh.sigstate.merge_states` is a join (commutative, associative,
idempotent; its rules are in ``mesh/sigstate.py``), so peers that have heard
the same records, in any order, any number of times, hold equal states; a
dropped message is repaired by any later one, or by exchanging
:meth:`Aggregate.digest` and :meth:`Aggregate.delta_for`. A new leader
therefore already holds what the old one knew. The leader asks
:meth:`Aggregate.due` what to do now and when to ask again
(:meth:`Aggregate.next_due`); the rules are ``mesh.bundling.plan``'s.

Bounds: an :class:`Aggregate` keeps at most ``Limits.max_signatures``
signatures and evicts the least recently seen (smallest ``(last_seen,
signature)``), preferring those without an open issue, counting each in
``Aggregate.evicted_signatures``. Below the caps the aggregate is order
independent; at the caps which signature goes depends on arrival order, and
an evicted state may come back through anti-entropy.

Inputs are trusted to be well formed: bad data raises
:class:`~mesh.errors.LocalError` (see ``mesh/sigstate.py``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from mesh.bounds import saturating_add
from mesh.bundling import Action, BundlePolicy, next_due, plan
from mesh.report import Occurrence, Report
from mesh.sigstate import (
    Fingerprinted,
    IssueLink,
    Limits,
    SigState,
    StateSummary,
    _cap_origins,
    _check_limits,
    _check_link,
    _check_state,
    _check_times,
    _count_of,
    _join_count,
    _join_detail,
    _join_link,
    _open,
    empty_state,
    merge_states,
    state_fingerprint,
    state_of_link,
    state_of_occurrence,
    summary,
)

__all__ = ["Aggregate"]


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
