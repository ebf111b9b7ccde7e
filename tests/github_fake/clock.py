"""A clock tests can move by hand, for rate-limit windows and budget audits."""

from __future__ import annotations

import threading

#: 2023-11-14T22:13:20Z: any fixed instant will do; this one is round.
EPOCH = 1_700_000_000.0


class FakeClock:
    """Callable like ``time.time``; only :meth:`advance` and :meth:`set` move it.

    Pass it as ``GitHubApp(clock=...)`` (and to the client under test) so
    rate-limit resets, ``retry-after`` waits and the budget audit are exact
    and no test sleeps.
    """

    def __init__(self, start: float = EPOCH) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        """Jump to ``when`` (forward only)."""
        with self._lock:
            if when < self._now:
                raise ValueError("a clock does not go backwards")
            self._now = when
