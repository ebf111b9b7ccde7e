"""The mesh's record of GitHub writes, so every leader keeps one hourly pace. Pure.

GitHub's secondary limits (80 content-creating requests a minute, 500 an
hour) count per token, and every leader of a mesh writes with the same
token. A leader's own client paces what *it* sent
(``github_sink.budget``, persisted per relay in its outbox), but leaders
change: a mesh whose leadership moved 82 times in an hour over five hosts
sent 501 writes in that hour, each leader inside its own budget. So every
relay also keeps what the others wrote, and the leader's budget counts it.

Rules:

1. A writer (a relay's peer id) counts its writes in minute buckets of its
   own wall clock: ``(writer, minute, count)``, ``minute = floor(t / 60)``.
   Only the writer ever counts its own buckets, so two ledgers join by
   taking the larger count of each bucket (a grow-only map of maxima: the
   join is commutative, associative and idempotent, and a bucket heard
   while still filling is raised when heard again).
2. A bucket older than the hour window (its end more than ``WINDOW`` s
   before ``now``) is forgotten; nothing older can delay a write.
3. Others' writes reach the budget as times: each of a bucket's writes at
   the bucket's *end*, the latest it can have been sent, so it stays in
   the minute and hour windows at least as long as the real write does (a
   minute's rounding is the price: never more writes in a window than the
   limit, sometimes a little less).
4. The writer's own buckets are not turned into times here: its budget
   holds its exact send times (those of the writes before a restart too,
   from the outbox), and would count them twice.
5. Bounded: at most ``MAX_BUCKETS`` buckets are kept and sent, the newest
   first; past the bound the oldest go (they are the first to leave the
   window anyway).

Clocks: buckets are wall-clock minutes of the writer, read against the
reader's wall clock; a writer whose clock runs behind makes its writes
leave the window early by its skew. Relays are expected to run NTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BUCKET", "MAX_BUCKETS", "WINDOW", "WriteBucket", "WriteLedger"]

#: Seconds per bucket.
BUCKET = 60.0
#: The longest window a limit counts (GitHub's hour).
WINDOW = 3600.0
#: Buckets kept and sent (the wire's bound): 4 writers' full hour.
MAX_BUCKETS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteBucket:
    """``count`` writes ``writer`` sent in minute ``minute`` (epoch seconds // 60)."""

    writer: str
    minute: int
    count: int


class WriteLedger:
    """What every writer of the mesh sent in the last hour; ``me`` is this relay."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._counts: dict[tuple[str, int], int] = {}

    def record_own(self, times: Iterable[float], now: float) -> bool:
        """Set this relay's buckets from its exact send times; True if one rose."""
        counts: dict[int, int] = {}
        for t in times:
            minute = int(t // BUCKET)
            counts[minute] = counts.get(minute, 0) + 1
        return self._join(
            (WriteBucket(writer=self.me, minute=m, count=c) for m, c in counts.items()), now
        )

    def merge(self, buckets: Iterable[WriteBucket], now: float) -> bool:
        """Join what a peer sent; True if anything was new to us."""
        return self._join(buckets, now)

    def _join(self, buckets: Iterable[WriteBucket], now: float) -> bool:
        oldest = self._oldest_minute(now)
        changed = False
        for bucket in buckets:
            if bucket.minute < oldest or bucket.count <= 0:
                continue
            key = (bucket.writer, bucket.minute)
            if bucket.count > self._counts.get(key, 0):
                self._counts[key] = bucket.count
                changed = True
        self._forget(now)
        return changed

    def buckets(self, now: float) -> tuple[WriteBucket, ...]:
        """Every bucket still in the window, the newest first (at most ``MAX_BUCKETS``)."""
        self._forget(now)
        ordered = sorted(self._counts.items(), key=lambda item: (-item[0][1], item[0][0]))
        return tuple(
            WriteBucket(writer=w, minute=m, count=c) for (w, m), c in ordered[:MAX_BUCKETS]
        )

    def others(self, now: float) -> tuple[float, ...]:
        """The other writers' writes as send times (rule 3), oldest first."""
        self._forget(now)
        times: list[float] = []
        for (writer, minute), count in sorted(self._counts.items(), key=lambda i: i[0][1]):
            if writer != self.me:
                times.extend([(minute + 1) * BUCKET] * count)
        return tuple(sorted(times))

    def total(self, now: float, window: float = WINDOW) -> int:
        """Writes of the whole mesh whose bucket overlaps the last ``window`` s."""
        first = int((now - window) // BUCKET)
        return sum(c for (_, m), c in self._counts.items() if m >= first)

    def _oldest_minute(self, now: float) -> int:
        """The first minute whose end is still inside the window (rule 2)."""
        return int((now - WINDOW) // BUCKET)

    def _forget(self, now: float) -> None:
        oldest = self._oldest_minute(now)
        stale = [key for key in self._counts if key[1] < oldest]
        for key in stale:
            del self._counts[key]
        if len(self._counts) > MAX_BUCKETS:
            newest = sorted(self._counts, key=lambda k: (-k[1], k[0]))[:MAX_BUCKETS]
            self._counts = {k: self._counts[k] for k in newest}
