"""How long received messages waited in a relay's receive channel, by kind.

The receive loop measures every message's wait (``Received.at`` to the
moment it is read); the longest per kind is in ``/status`` and the
distribution is the ``errmesh_gossip_lag_seconds`` histogram
(``node.metrics``). Plain counters here, read at scrape time: the relay
itself never imports prometheus-client.
"""

from __future__ import annotations

import bisect
from typing import Final

__all__ = ["LAG_BUCKETS", "Lags"]

#: Upper bounds of the histogram's buckets, seconds: a healthy relay reads a
#: message within milliseconds; a second or more means its loop is starved.
LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Lags:
    """Per message kind: the longest wait, bucket counts and the sum."""

    def __init__(self) -> None:
        self.max: dict[str, float] = {}
        #: kind -> observations per bucket (not cumulative); the last one is +Inf.
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, kind: str, seconds: float) -> None:
        self.max[kind] = max(self.max.get(kind, 0.0), seconds)
        counts = self.buckets.get(kind)
        if counts is None:
            counts = self.buckets[kind] = [0] * (len(LAG_BUCKETS) + 1)
        counts[bisect.bisect_left(LAG_BUCKETS, seconds)] += 1
        self.sums[kind] = self.sums.get(kind, 0.0) + seconds

    def cumulative(self, kind: str) -> list[int]:
        """Bucket counts as Prometheus wants them: each includes those below it."""
        total, out = 0, []
        for count in self.buckets.get(kind, [0] * (len(LAG_BUCKETS) + 1)):
            total += count
            out.append(total)
        return out
