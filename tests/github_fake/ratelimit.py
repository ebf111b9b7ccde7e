"""GitHub's primary rate limit: requests per token per window, with its headers.

Every answer carries ``x-ratelimit-limit/remaining/used/reset/resource``; a
304 answer to a conditional request and ``GET /rate_limit`` do not count.
Windows start at a token's first request and last an hour (a minute for
search), as GitHub's do. ``exhaust`` plays a token that has run dry: 403
with ``x-ratelimit-remaining: 0`` until ``x-ratelimit-reset`` passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

#: resource -> window length in seconds
WINDOWS = {"core": 3600.0, "search": 60.0}
#: GitHub's limit for requests without a token.
ANONYMOUS_LIMIT = 60


@dataclass
class Bucket:
    """One token's budget for one resource in the current window."""

    resource: str
    limit: int
    window: float
    used: int = 0
    reset: float = 0.0

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(math.ceil(self.reset)),
            "x-ratelimit-resource": self.resource,
        }

    def as_json(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "used": self.used,
            "remaining": self.remaining,
            "reset": math.ceil(self.reset),
        }


class RateLimits:
    """The buckets of every token, on an injectable clock."""

    def __init__(self, clock: Callable[[], float], *, core: int = 5000, search: int = 30) -> None:
        self._clock = clock
        self._limits = {"core": core, "search": search}
        self._buckets: dict[tuple[str | None, str], Bucket] = {}
        self._exhausted_until = 0.0

    def bucket(self, token: str | None, resource: str) -> Bucket:
        """The current bucket, rolled over if its window has passed."""
        now = self._clock()
        limit = self._limits[resource] if token is not None else ANONYMOUS_LIMIT
        found = self._buckets.get((token, resource))
        if found is None:
            found = self._buckets[(token, resource)] = Bucket(resource, limit, WINDOWS[resource])
        if now >= found.reset:
            found.used, found.reset = 0, now + found.window
        if resource == "core" and now < self._exhausted_until:
            found.used, found.reset = found.limit, self._exhausted_until
        return found

    def exhaust(self, seconds: float) -> float:
        """Run every token's core budget dry for ``seconds``; returns the reset time."""
        self._exhausted_until = self._clock() + seconds
        for (_, resource), bucket in self._buckets.items():
            if resource == "core":
                bucket.used, bucket.reset = bucket.limit, self._exhausted_until
        return self._exhausted_until
