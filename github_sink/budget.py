"""How many requests GitHub will take, and when the next one may go. Pure.

Rules (everything that decides *when* a request may be sent lives here):

1. Mutating requests (POST, PATCH, PUT, DELETE) go at least
   ``min_interval`` seconds apart, at most ``per_minute`` in any 60 s and at
   most ``per_hour`` in any 3,600 s. GitHub's secondary limits are 80
   content-creating requests a minute and 500 an hour, and its best
   practices ask for writes one at a time, a second apart.
2. The primary limit is learnt from the ``x-ratelimit-remaining`` and
   ``x-ratelimit-reset`` headers of every answer (:meth:`Budget.observe`),
   and counted down locally between answers (:meth:`Budget.record`). While
   the window has not reset, a read waits when ``read_reserve`` or fewer
   requests remain (the rest is kept for the writes that carry the actual
   reports) and a write waits when none remain; both wait until the reset
   plus ``reset_margin`` (clocks differ by a little).
3. A refusal (403/429 rate limit) blocks every request until the time the
   retry policy chose (:meth:`Budget.pause_until`).
4. The minute and hour windows also count the writes other leaders of the
   mesh sent with the same token (:meth:`Budget.set_others`, from
   ``mesh.write_ledger``): GitHub counts per token, not per process. They
   count only in the windows; the spacing of rule 1 is between our own.

Theory of operation: the client asks :meth:`Budget.delay` before each
attempt, sleeps that long and asks again until it gets 0, then sends and
calls :meth:`Budget.record` with the same ``now``. A request at time ``t``
counts in a window of length ``w`` for every ``now`` with ``t + w > now``;
the delay returned is exactly the time until the oldest relevant request
leaves the window, so a caller that obeys the delays never exceeds a limit
(property-tested in ``tests/test_github_budget.py``).

Time is whatever the caller's clock says, in seconds; it must be epoch
seconds (``time.time``) because GitHub's reset header is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Budget", "BudgetLimits", "BudgetStatistics", "get_header", "is_mutating"]

MUTATING_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_MINUTE = 60.0
_HOUR = 3600.0


def is_mutating(method: str) -> bool:
    """True for the methods GitHub's secondary limits count as writes."""
    return method.upper() in MUTATING_METHODS


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetLimits:
    """The pace errmesh keeps towards GitHub (defaults: GitHub's documented limits)."""

    per_minute: int = 80
    per_hour: int = 500
    min_interval: float = 1.0
    read_reserve: int = 10
    reset_margin: float = 1.0

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.per_hour < 1:
            raise ValueError("per_minute and per_hour must be at least 1")
        if self.min_interval < 0 or self.reset_margin < 0 or self.read_reserve < 0:
            raise ValueError("min_interval, reset_margin and read_reserve must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStatistics:
    """A snapshot of a :class:`Budget` (for status pages and tests)."""

    writes_last_minute: int
    writes_last_hour: int
    remaining: int | None
    reset: float | None
    paused_until: float
    #: Writes other leaders of the mesh sent within the hour (rule 4).
    others_last_hour: int = 0


class Budget:
    """The request pacing state of one GitHub client. No IO, no clock."""

    def __init__(self, limits: BudgetLimits | None = None) -> None:
        self.limits = limits or BudgetLimits()
        # Send times of the mutating requests still inside the hour window.
        self._writes: deque[float] = deque()
        self._remaining: int | None = None
        self._reset: float | None = None
        self._paused_until = float("-inf")
        self._last_write_done = float("-inf")
        # Other writers' send times, oldest first (rule 4); replaced whole, so
        # a reader on another thread sees the old tuple or the new one.
        self._others: tuple[float, ...] = ()

    def delay(self, method: str, now: float) -> float:
        """Seconds to wait before a ``method`` request may be sent at ``now`` (0: go)."""
        ready = self._paused_until
        lim = self.limits
        if is_mutating(method):
            writes = self._writes
            if writes:
                ready = max(ready, writes[-1] + lim.min_interval)
            ready = max(ready, self._last_write_done + lim.min_interval)
            ready = max(ready, self._window_ready(now, _MINUTE, lim.per_minute))
            ready = max(ready, self._window_ready(now, _HOUR, lim.per_hour))
            floor = 0
        else:
            floor = lim.read_reserve
        remaining, reset = self._remaining, self._reset
        if remaining is not None and reset is not None and now < reset and remaining <= floor:
            ready = max(ready, reset + lim.reset_margin)
        return max(0.0, ready - now)

    def _window_ready(self, now: float, window: float, limit: int) -> float:
        """When the ``limit``-th most recent write leaves a window of ``window`` s."""
        inside = [t for t in self._writes if t + window > now]
        if self._others:
            inside = sorted(inside + [t for t in self._others if t + window > now])
        if len(inside) < limit:
            return float("-inf")
        # In send order, the one that must leave is the limit-th from the end.
        return inside[-limit] + window

    def record(self, method: str, now: float) -> None:
        """A ``method`` request was sent at ``now``."""
        if is_mutating(method):
            self._writes.append(now)
            while self._writes and self._writes[0] + _HOUR <= now:
                self._writes.popleft()
        if self._remaining is not None:
            self._remaining = max(0, self._remaining - 1)

    def finished(self, method: str, now: float) -> None:
        """A ``method`` request got its answer (or failed) at ``now``.

        The spacing between writes counts from the previous write's answer as
        well as from its sending: GitHub sees a request when it arrives, and
        a gap measured only between sends can shrink on the way.
        """
        if is_mutating(method):
            self._last_write_done = max(self._last_write_done, now)

    def observe(self, headers: Mapping[str, str], now: float) -> None:
        """Learn the primary limit from an answer's headers (case-insensitive keys).

        Answers about another resource (``x-ratelimit-resource`` other than
        ``core``, e.g. search) and headers that do not parse are ignored.
        """
        resource = get_header(headers, "x-ratelimit-resource")
        if resource is not None and resource != "core":
            return
        remaining = _int(get_header(headers, "x-ratelimit-remaining"))
        reset = _int(get_header(headers, "x-ratelimit-reset"))
        if remaining is None or reset is None:
            return
        self._remaining = max(0, remaining)
        self._reset = float(reset)

    def set_others(self, times: tuple[float, ...]) -> None:
        """The other writers' send times (rule 4), oldest first; replaces the last ones."""
        self._others = times

    def own_writes(self) -> tuple[float, ...]:
        """Our send times still inside the hour, oldest first (for the mesh's ledger)."""
        return tuple(self._writes)

    def pause_until(self, t: float) -> None:
        """Hold every request back until ``t`` (a rate-limit refusal)."""
        self._paused_until = max(self._paused_until, t)

    def statistics(self, now: float) -> BudgetStatistics:
        """The current counts, as a frozen value."""
        writes = tuple(self._writes)  # one C-level copy: metrics read it from another thread
        return BudgetStatistics(
            writes_last_minute=sum(1 for t in writes if t + _MINUTE > now),
            writes_last_hour=sum(1 for t in writes if t + _HOUR > now),
            remaining=self._remaining,
            reset=self._reset,
            paused_until=self._paused_until,
            others_last_hour=sum(1 for t in self._others if t + _HOUR > now),
        )


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` for a lower-case ``name``, whatever the keys' case."""
    value = headers.get(name)
    if value is None:
        for key, val in headers.items():
            if key.lower() == name:
                return val
    return value


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None
