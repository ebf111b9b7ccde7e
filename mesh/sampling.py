"""Which occurrences keep their detail: ``sample_rate`` and ``max_reports_per_minute``.

Counting stays exact: every occurrence is spooled and counted (the store's
``own_counts``, merged as the per-origin max), so a sampled-out occurrence
is spooled *without its detail* (:func:`without_detail`: the frames, logs,
arguments and scope left out, a few hundred bytes) rather than dropped. An
origin's first occurrence of a signature always keeps its detail: the
aggregate's detail is the earliest report (mesh/sigstate.py), and it must
be a full one. Pure: the store reads the counts and the draw, in its
spool transaction, so processes sharing a store share the per-minute budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.report import Report

__all__ = ["DetailLimits", "without_detail"]

#: The fact a detail-less report carries, so a reader knows why it is bare.
SAMPLED_FACT = ("detail", "not kept (sample_rate or max_reports_per_minute)")


@dataclass(frozen=True, slots=True, kw_only=True)
class DetailLimits:
    """How many occurrences of one signature keep their detail on this host.

    ``sample_rate``: the share kept (1.0: all); ``per_minute``: at most so
    many kept per signature and clock minute (0: no limit).
    """

    sample_rate: float = 1.0
    per_minute: int = 0

    @property
    def unlimited(self) -> bool:
        return self.sample_rate >= 1.0 and self.per_minute <= 0

    def keep(self, *, first: bool, kept_this_minute: int, draw: float) -> bool:
        """Whether this occurrence keeps its detail; ``draw`` is uniform in [0, 1)."""
        if first:
            return True
        if self.per_minute > 0 and kept_this_minute >= self.per_minute:
            return False
        return draw < self.sample_rate


def without_detail(report: Report) -> Report:
    """``report`` as a counted occurrence: its identity, type, message and host only."""
    return report.replace(
        causes=(),
        frames=(),
        log_tail=(),
        argv=(),
        facts=(SAMPLED_FACT,),
        leaves=(),
        tags=(),
        contexts=(),
    )
