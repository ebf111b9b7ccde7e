"""What the fake saw: one record per request, counters, and the budget audit.

The audit answers "did the client pace its writes the way GitHub asks?":
mutating requests (POST/PATCH/PUT/DELETE, including those that met a fault,
since GitHub saw them too) must be at least ``min_interval`` seconds apart
and at most ``per_minute`` / ``per_hour`` in any sliding window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True)
class RequestRecord:
    """One request as the fake received it.

    ``route`` is the method and GitHub's path template
    (``"POST /repos/{owner}/{repo}/issues"``), or the raw path when no
    operation matched; ``status`` is None when no answer was sent (a
    connection reset); ``fault`` names the injected fault, if any.
    """

    time: float
    method: str
    route: str
    path: str
    status: int | None
    fault: str | None = None

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING


def count(
    records: Iterable[RequestRecord],
    method: str | None = None,
    route: str | None = None,
    *,
    status: int | None = None,
    fault: str | None = None,
) -> int:
    """How many records match; ``route`` may be a template with or without the method."""
    return sum(1 for r in records if matches(r, method, route, status=status, fault=fault))


def matches(
    r: RequestRecord,
    method: str | None,
    route: str | None,
    *,
    status: int | None = None,
    fault: str | None = None,
) -> bool:
    if method is not None and r.method != method.upper():
        return False
    if route is not None and route not in (r.route, r.route.split(" ", 1)[1]):
        return False
    if status is not None and r.status != status:
        return False
    return fault is None or r.fault == fault


def budget_violations(
    records: Iterable[RequestRecord],
    *,
    per_minute: int = 80,
    per_hour: int = 500,
    min_interval: float = 1.0,
) -> list[tuple[RequestRecord, str]]:
    """Mutating requests that broke a limit, each with the rule it broke."""
    writes = sorted((r for r in records if r.mutating), key=lambda r: r.time)
    out: list[tuple[RequestRecord, str]] = []
    minute: deque[float] = deque()
    hour: deque[float] = deque()
    previous: float | None = None
    for r in writes:
        for window, span in ((minute, 60.0), (hour, 3600.0)):
            while window and r.time - window[0] >= span:
                window.popleft()
            window.append(r.time)
        rules = []
        if previous is not None and r.time - previous < min_interval:
            rules.append(f"{r.time - previous:.3f} s after the previous write (< {min_interval} s)")
        if len(minute) > per_minute:
            rules.append(f"write number {len(minute)} within 60 s (> {per_minute})")
        if len(hour) > per_hour:
            rules.append(f"write number {len(hour)} within an hour (> {per_hour})")
        if rules:
            out.append((r, "; ".join(rules)))
        previous = r.time
    return out
