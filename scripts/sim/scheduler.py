"""The simulated clock: one heap of timed callbacks, run in (time, insertion) order.

Nothing in a run reads a real clock; time is whatever the next event says.
Ties run in the order they were scheduled, which is itself a function of the
seed, so a run is reproducible to the byte. Every random stream of a run
comes from :func:`stream`: ``random.Random`` seeded by the run's seed and a
name, so drawing more from one stream (a bigger workload) never shifts
another (the network's).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

__all__ = ["Scheduler", "stream"]


def stream(seed: int, *names: object) -> random.Random:
    """The run's random stream called ``names`` (a string seed: stable across processes)."""
    return random.Random("/".join(str(part) for part in (seed, *names)))


class Scheduler:
    """Callbacks at simulated times; ``now`` never goes back."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events = 0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at ``when`` (at once if that is past)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, fn, args))

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def run_until(self, end: float) -> None:
        """Run every event due up to ``end``, then set the clock to ``end``."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end:
            when, _, fn, args = pop(heap)
            self.now = when
            self.events += 1
            fn(*args)
        self.now = max(self.now, end)

    def __len__(self) -> int:
        return len(self._heap)
