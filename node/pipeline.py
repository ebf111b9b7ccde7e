"""The error path: from a raw report to a spooled, delivered one.

Order matters and is the same for every way in (excepthook, decorator,
``capture_exception``, ``errmesh run``):

1. scrub (secrets never reach ``before_send``, the spool or the wire);
2. ``before_send`` may edit or drop the report; its result is scrubbed again
   (a hook of two parameters also gets a hint with the original exception);
3. signature (after scrubbing, so a secret in a message cannot split groups);
4. bound to the wire limits;
5. spool: committed durably, stamped with (origin, seq, count); reports
   handed over to a local relay that never took them are spooled first;
   past ``sample_rate`` or ``max_reports_per_minute`` an occurrence is
   spooled and counted without its detail (mesh/sampling.py);
6. deliver: solo mode merges into the local aggregate and runs one leader
   round with the configured sink; the mesh (issue 3) plugs in here as
   another :class:`Delivery`.

Everything heavy (msgpack, SQLite, the sink) is imported here, and this
module is imported only once an error has happened.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mesh.report import Report
from mesh.sampling import DetailLimits
from mesh.scrub import process_scrubber
from mesh.store import Store
from mesh.wire import seal_report
from node.compose import SoloDelivery, open_store
from node.config import Config
from node.leader import RoundResult

__all__ = ["BeforeSend", "Delivery", "Hint", "Outcome", "Pipeline", "hint_of"]

#: What ``before_send`` gets besides the report, as in sentry-python:
#: ``{"exc_info": (type, exception, traceback)}`` for an exception, else ``{}``.
Hint = dict[str, object]
#: ``hook(report)`` or ``hook(report, hint)``: returns the report to keep, or None.
BeforeSend = Callable[..., "Report | None"]


def hint_of(exc: BaseException | None) -> Hint:
    """The hint of ``exc``: sentry-python's ``exc_info`` triple, the original exception."""
    return {} if exc is None else {"exc_info": (type(exc), exc, exc.__traceback__)}


def _takes_hint(hook: BeforeSend) -> bool:
    """Whether ``hook`` accepts ``(report, hint)``; a one-argument hook keeps working."""
    import inspect

    try:
        inspect.signature(hook).bind(None, None)
    except (TypeError, ValueError):  # one parameter, or no signature to read
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one captured error."""

    report: Report | None
    dropped_by_hook: bool = False
    round: RoundResult | None = None


class Delivery(Protocol):
    """Takes spooled reports onward (solo: local aggregate; mesh: gossip)."""

    def deliver(
        self, store: Store, reports: Sequence[Report], *, exiting: bool
    ) -> RoundResult | None: ...


class Pipeline:
    """Scrub, sign, bound, spool, deliver. One per configuration."""

    def __init__(
        self,
        config: Config,
        *,
        before_send: BeforeSend | None = None,
        delivery: Delivery | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.before_send = before_send
        self._hint = before_send is not None and _takes_hint(before_send)
        self.scrubber = process_scrubber(
            extra_patterns=config.scrub_patterns,
            extra_keys=config.scrub_keys,
            token=config.github_token,
            environ=dict(os.environ if environ is None else environ),
        )
        self._delivery = delivery
        self.detail = DetailLimits(
            sample_rate=config.sample_rate, per_minute=config.max_reports_per_minute
        )

    @property
    def delivery(self) -> Delivery:
        """Solo unless there is a mesh to hand reports to (peers or a local relay)."""
        if self._delivery is None:
            if self.config.peers or self.config.relay_socket.exists():
                from node.embedded import MeshDelivery  # libp2p: only for a mesh

                self._delivery = MeshDelivery(self.config)
            else:
                self._delivery = SoloDelivery(self.config)
        return self._delivery

    def prepare(self, raw: Report, hint: Hint | None = None) -> Report | None:
        """Steps 1-4: the report as it will be stored, or None if the hook dropped it.

        ``hint``: what the hook gets besides the report (:func:`hint_of`).
        """
        report = self.scrubber.report(raw)
        if self.before_send is not None:
            if self._hint:
                edited = self.before_send(report, {} if hint is None else hint)
            else:
                edited = self.before_send(report)
            if edited is None:
                return None
            report = self.scrubber.report(edited)
        return seal_report(report)

    def process(
        self,
        raw: Report,
        *,
        exiting: bool,
        skeleton: int | None = None,
        hint: Hint | None = None,
    ) -> Outcome:
        """All steps. Raises ``StoreError``/``ConfigError``; the caller reports them once.

        ``skeleton``: the row committed for this error first (node/skeleton.py);
        the spool commit replaces it. ``hint``: for ``before_send``.
        """
        report = self.prepare(raw, hint)
        if report is None:
            return Outcome(report=None, dropped_by_hook=True)
        with open_store(self.config) as store:
            stored = store.spool(report, skeleton=skeleton, detail=self.detail)
            result = self.delivery.deliver(store, [stored], exiting=exiting)
        return Outcome(report=stored, round=result)

    def deliver_spooled(self, *, exiting: bool) -> RoundResult | None:
        """Deliver what the spool holds, with no new report.

        For a hand-over whose row was committed but whose relay did not take
        the nudge: the row is spooled and delivered like this process's own
        report would have been. Raises ``StoreError``/``ConfigError``.
        """
        with open_store(self.config) as store:
            return self.delivery.deliver(store, [], exiting=exiting)
