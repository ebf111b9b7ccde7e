"""Each signature's occurrences per minute over the last hour, for the dashboard.

The store keeps a signature's total, not its history; the dashboard's
sparkline needs the history. The relay's merge path already funnels every
changed state through one place (``MeshPeer._note``), so this ring is fed
there: the growth of a signature's total since it was last noted lands in
the minute of its ``last_seen``. Memory is bounded twice: at most
``max_signatures`` signatures (the least recently changed are forgotten
first), and at most one counter per minute of the window for each. A
restarted relay starts with an empty ring: a state it first notes counts in
full only when it was first seen within the window (all its occurrences
are then recent), otherwise it only sets the baseline.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from mesh.sigstate import SigState

__all__ = ["Activity"]

_MINUTE = 60.0


class Activity:
    """Bounded per-minute occurrence counts; no clock of its own (``now`` is passed)."""

    def __init__(self, *, minutes: int = 60, max_signatures: int = 1000) -> None:
        self.minutes = minutes
        self.max_signatures = max_signatures
        #: signature -> (total when last noted, {minute number: occurrences}).
        self._seen: OrderedDict[bytes, tuple[int, dict[int, int]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def noted(self, states: Iterable[SigState], now: float) -> None:
        """Take in states that changed; a state whose total did not grow adds nothing."""
        window_start = now - self.minutes * _MINUTE
        for state in states:
            known = self._seen.get(state.signature)
            if known is None:
                before = 0 if state.first_seen >= window_start else state.total
                per_minute: dict[int, int] = {}
            else:
                before, per_minute = known
            grown = state.total - before
            if grown > 0:
                minute = int(min(state.last_seen, now) // _MINUTE)
                if minute * _MINUTE + _MINUTE > window_start:
                    per_minute[minute] = per_minute.get(minute, 0) + grown
            self._seen[state.signature] = (max(before, state.total), per_minute)
            self._seen.move_to_end(state.signature)
            self._prune(per_minute, now)
        while len(self._seen) > self.max_signatures:
            self._seen.popitem(last=False)

    def series(self, signature: bytes, now: float) -> list[int]:
        """Occurrences in each of the window's minutes, oldest first (``minutes`` values)."""
        known = self._seen.get(signature)
        last = int(now // _MINUTE)
        if known is None:
            return [0] * self.minutes
        per_minute = known[1]
        return [per_minute.get(m, 0) for m in range(last - self.minutes + 1, last + 1)]

    def _prune(self, per_minute: dict[int, int], now: float) -> None:
        oldest = int(now // _MINUTE) - self.minutes + 1
        for minute in [m for m in per_minute if m < oldest]:
            del per_minute[minute]
