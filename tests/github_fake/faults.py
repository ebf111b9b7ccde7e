"""Faults to inject: the ways GitHub fails a client, on demand.

Two shapes:

- queued faults hit the next ``times`` requests that match ``method`` /
  ``route`` (a path template such as ``/repos/{owner}/{repo}/issues``, with
  or without the method in front); the first matching entry in the queue is
  used;
- windows hit every matching request until a time on the app's clock: an
  outage (502 to everything), a held secondary limit, an exhausted primary
  limit (kept by :mod:`.ratelimit`).

Kinds and what a client sees (real server / in-process ``WSGITransport``):

=================  ==========================================================
``error``          the status (500, 502, 503...) with a JSON body
``timeout``        no answer for ``seconds``: the client's read timeout fires
                   (httpx ``ReadTimeout``); in-process the configured
                   exception is raised at once. With ``apply=True`` (default)
                   the request took effect first, as a slow GitHub's writes do
``reset``          the connection is reset (SO_LINGER 0) without an answer:
                   httpx ``ReadError`` / ``RemoteProtocolError``; in-process
                   the configured exception. ``apply=False`` by default
``secondary``      403 (or 429) "You have exceeded a secondary rate limit",
                   with ``retry-after`` when given; ``hold=True`` refuses every
                   matching request until ``retry-after`` has passed
``outage``         502 to everything until a time (``down_until``)
``primary``        403 "API rate limit exceeded", ``x-ratelimit-remaining: 0``
                   and ``x-ratelimit-reset`` = now + N, until then
=================  ==========================================================
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from .ratelimit import RateLimits

SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID."
)


@dataclass(frozen=True)
class Fault:
    """One injected failure; see the module docstring for the kinds."""

    kind: str
    status: int | None = None
    seconds: float = 0.0
    retry_after: int | None = None
    apply: bool = False
    hold: bool = False
    method: str | None = None
    route: str | None = None
    until: float | None = None

    def matches(self, method: str, route: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.route is None:
            return True
        template = route.split(" ", 1)[1] if " " in route else route
        return self.route in (route, template)


def _filter(method: str | None, route: str | None) -> tuple[str | None, str | None]:
    """Accept ``route="POST /repos/..."`` as a shorthand for method and route."""
    if route is not None and " " in route:
        verb, template = route.split(" ", 1)
        return (method or verb).upper(), template
    return (method.upper() if method else None), route


class Faults:
    """The queue and the windows; thread-safe, consulted once per request."""

    def __init__(self, clock: Callable[[], float], limits: RateLimits) -> None:
        self._clock = clock
        self._limits = limits
        self._lock = threading.Lock()
        self._queue: list[tuple[Fault, int]] = []
        self._windows: list[Fault] = []

    # -- queueing ------------------------------------------------------

    def add(self, fault: Fault, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` matching requests."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._queue.append((fault, times))

    def error(
        self,
        status: int = 500,
        *,
        times: int = 1,
        method: str | None = None,
        route: str | None = None,
    ) -> None:
        """Answer ``status`` (500, 502, 503...) with a JSON body."""
        method, route = _filter(method, route)
        self.add(Fault("error", status=status, method=method, route=route), times)

    def timeout(
        self,
        seconds: float = 30.0,
        *,
        apply: bool = True,
        times: int = 1,
        method: str | None = None,
        route: str | None = None,
    ) -> None:
        """Hold the answer ``seconds`` (real server) so the client's timeout fires."""
        method, route = _filter(method, route)
        self.add(Fault("timeout", seconds=seconds, apply=apply, method=method, route=route), times)

    def reset(
        self,
        *,
        apply: bool = False,
        times: int = 1,
        method: str | None = None,
        route: str | None = None,
    ) -> None:
        """Reset the connection instead of answering."""
        method, route = _filter(method, route)
        self.add(Fault("reset", apply=apply, method=method, route=route), times)

    def secondary_limit(
        self,
        retry_after: int | None = 60,
        *,
        status: int = 403,
        hold: bool = False,
        times: int = 1,
        method: str | None = None,
        route: str | None = None,
    ) -> None:
        """Refuse with GitHub's secondary-limit answer (403, or 429 with ``status=429``)."""
        method, route = _filter(method, route)
        fault = Fault(
            "secondary",
            status=status,
            retry_after=retry_after,
            hold=hold,
            method=method,
            route=route,
        )
        self.add(fault, times)

    def too_many_requests(
        self,
        retry_after: int | None = 60,
        *,
        hold: bool = False,
        times: int = 1,
        method: str | None = None,
        route: str | None = None,
    ) -> None:
        """429 with ``retry-after``: the other way GitHub says "slow down"."""
        self.secondary_limit(
            retry_after, status=429, hold=hold, times=times, method=method, route=route
        )

    # -- windows -------------------------------------------------------

    def down_until(self, until: float) -> None:
        """502 to every request until ``until`` (the app's clock): an outage."""
        with self._lock:
            self._windows.append(Fault("outage", status=502, until=until))

    def exhaust_primary(self, seconds: float = 60.0) -> float:
        """Run the primary limit dry for ``seconds``; returns ``x-ratelimit-reset``."""
        return self._limits.exhaust(seconds)

    def clear(self) -> None:
        """Drop every queued fault and window (the primary limit is left alone)."""
        with self._lock:
            self._queue.clear()
            self._windows.clear()

    @property
    def pending(self) -> list[tuple[Fault, int]]:
        """Queued faults not yet used, with how many requests each still hits."""
        with self._lock:
            return list(self._queue)

    # -- use -----------------------------------------------------------

    def current_outage(self) -> Fault | None:
        """The outage in force now, if any (checked before anything else)."""
        now = self._clock()
        with self._lock:
            self._windows = [w for w in self._windows if w.until is not None and now < w.until]
            return next((w for w in self._windows if w.kind == "outage"), None)

    def take(self, method: str, route: str) -> Fault | None:
        """The fault for this request, if any; uses up one queued hit."""
        now = self._clock()
        with self._lock:
            self._windows = [w for w in self._windows if w.until is not None and now < w.until]
            for window in self._windows:
                if window.kind != "outage" and window.matches(method, route):
                    return window
            for i, (fault, left) in enumerate(self._queue):
                if fault.matches(method, route):
                    if left == 1:
                        del self._queue[i]
                    else:
                        self._queue[i] = (fault, left - 1)
                    if fault.kind == "secondary" and fault.hold:
                        self._windows.append(replace(fault, until=now + (fault.retry_after or 60)))
                    return fault
        return None
