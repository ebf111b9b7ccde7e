"""What the leader does next for a signature, and when (DESIGN sections 5 and 8).

Pure: a :class:`~mesh.sigstate.SigState` and ``now`` in, an :data:`Action`
or a time out. The leader asks ``mesh.aggregate.Aggregate.due`` (which asks
:func:`plan` for every signature) what to do now and when to ask again
(:func:`next_due`); ``mesh.store.Store`` persists :func:`next_due` so a
dying process finds what is due without decoding every state.

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
wait and one that runs ahead is outvoted by any other origin. If every
reporter ran ahead of the leader, opening would wait out the skew (a future
``first_seen`` counts as "just now", never as negative age); so a store
passes ``heard``, when it first held the signature on its own clock, and the
wait starts at the earlier of the two: a leader whose clock runs behind opens
on time too (a flush skips the wait). The update window is measured from the
link's ``synced_at``, the writing leader's clock: a leader behind it by D
updates up to D late (never early, never twice per window). A regression
(new occurrences on a closed issue) is acted on at once. :func:`next_due` is
the earliest ``now`` at which :func:`plan` acts without new input; ``plan``
is monotone in ``now``, so ``plan`` returns ``None`` before it and an action
from it on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from mesh import defaults
from mesh.errors import LocalError
from mesh.severity import Severity, escalate
from mesh.sigstate import IssueLink, SigState

__all__ = [
    "DEFAULT_SETTLE",
    "DEFAULT_WINDOW",
    "Action",
    "BundlePolicy",
    "OpenIssue",
    "ReopenIssue",
    "UpdateIssue",
    "effective_severity",
    "next_due",
    "per_hour",
    "plan",
]


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


_HOUR = 3600.0


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


def _settle_from(state: SigState, heard: float | None) -> float:
    """When the settle delay starts: the earliest sighting on any reporter,
    or when this store first held the signature (``heard``, on the leader's
    own clock) if that is earlier: a leader whose clock runs behind every
    reporter's would otherwise wait out the skew."""
    if state.counts:
        first = state.first_seen
    else:
        assert state.detail is not None
        first = state.detail.timestamp
    return first if heard is None else min(first, heard)


def _check_policy(policy: BundlePolicy) -> None:
    if math.isnan(policy.settle) or math.isnan(policy.window):
        raise LocalError(f"bundle policy times must be numbers, got {policy!r}")


def _has_news(state: SigState, link: IssueLink) -> bool:
    return state.total > link.synced_total or effective_severity(state) > link.severity


def plan(
    state: SigState,
    now: float,
    policy: BundlePolicy,
    *,
    flush: bool = False,
    heard: float | None = None,
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
        if flush or now >= _settle_from(state, heard) + policy.settle:
            return OpenIssue(state=state)
        return None
    if link.state == "closed":
        if policy.reopen_on_regression and state.total > link.synced_total:
            return ReopenIssue(state=state, link=link)
        return None
    if now >= link.synced_at + policy.window and _has_news(state, link):
        return UpdateIssue(state=state, link=link)
    return None


def next_due(state: SigState, policy: BundlePolicy, heard: float | None = None) -> float | None:
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
        return _settle_from(state, heard) + policy.settle
    if link.state == "closed":
        if policy.reopen_on_regression and state.total > link.synced_total:
            return -math.inf
        return None
    if _has_news(state, link):
        return link.synced_at + policy.window
    return None
