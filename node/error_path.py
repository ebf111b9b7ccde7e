"""The error path inside the host: from a captured exception to a spooled report.

node/capture.py keeps the success path (hooks, the log ring, the host's
scope) and comes here, once per reported error, under its lock. Two ways
on: a dying process commits a skeleton first and, with a relay on this
machine, hands the report over (node/handover.py); otherwise the Report is
built (node/event.py) and the pipeline scrubs, signs, spools and delivers it.
"""

from __future__ import annotations

import os
import sys
import time

from node.errors import CapturedMessage
from node.scope import Scope
from node.trail import trail_lines

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from node.capture import _Hub
    from node.pipeline import Outcome
    from node.skeleton import Located

__all__ = ["default_app", "is_ignored", "report"]


def is_ignored(exc: BaseException, names: Sequence[str]) -> bool:
    """Whether ``exc``'s type or a base is named in ``ignore_errors`` (bare or qualified)."""
    from node.chain import qualified_name

    wanted = set(names)
    return any(cls.__name__ in wanted or qualified_name(cls) in wanted for cls in type(exc).__mro__)


def _located(hub: _Hub) -> Located | None:
    """The settings, read once for the filters, the skeleton and the hand-over."""
    from node import skeleton as first

    try:
        return first.locate(hub.flags, None)
    except Exception:  # the hand-over reads them again, and says why
        return None


def default_app() -> str:
    """The program's name when no ``app`` is set: ``argv[0]``'s base name."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


def report(
    hub: _Hub, exc: BaseException, *, exiting: bool, fingerprint: Sequence[str] | None
) -> Outcome | None:
    """Report ``exc``; None when handed over (or dropped). Raises what the caller says once."""
    fast = exiting and hub.before_send is None and hub.delivery is None
    located = _located(hub) if fast else None
    if fast:  # the pipeline (and its imports) must wait until the skeleton is committed
        ignored = tuple(located[1]["ignore_errors"]) if located is not None else ()
    else:
        ignored = hub.pipeline().config.ignore_errors
    if ignored and is_ignored(exc, ignored):
        return None
    now = time.time()
    records = list(hub.ring.records) if hub.ring is not None else []
    log_tail = trail_lines(records, list(hub.crumbs), hub.trail_capacity)
    scope = Scope.of(hub.tags, hub.contexts, hub.caller_package)
    skeleton = None
    if fast:
        skeleton, handed_over = _commit_first(
            hub,
            exc,
            fingerprint=fingerprint,
            now=now,
            log_tail=log_tail,
            scope=scope,
            located=located,
        )
        if handed_over:
            return None
    # The full path: the Report, then the pipeline (scrub, sign, spool, deliver).
    from node.event import as_message, from_exception, process_context

    pipeline = hub.pipeline()
    config = pipeline.config
    ctx = process_context(
        app=config.app or default_app(),
        app_version=config.app_version,
        log_tail=log_tail,
        in_app_include=config.in_app_include
        + ((hub.caller_package,) if hub.caller_package else ()),
        in_app_exclude=config.in_app_exclude,
        scope=scope,
        environment=config.environment,
        release=config.release,
        source_context=config.source_context,
    )
    raw = from_exception(exc, ctx, now=now)
    if isinstance(exc, CapturedMessage):
        raw = as_message(raw, exc.level, exc.logger)
    if fingerprint is not None:
        raw = raw.replace(fingerprint=tuple(fingerprint))
    from node.pipeline import hint_of

    hint = hint_of(None if isinstance(exc, CapturedMessage) else exc)
    outcome = pipeline.process(raw, exiting=exiting, skeleton=skeleton, hint=hint)
    hub.last = outcome
    if outcome.round is not None and outcome.round.errors:
        hub.warn("; ".join(outcome.round.errors))
    return outcome


def _commit_first(
    hub: _Hub,
    exc: BaseException,
    *,
    fingerprint: Sequence[str] | None,
    now: float,
    log_tail: tuple[str, ...],
    scope: Scope,
    located: Located | None,
) -> tuple[int | None, bool]:
    """The skeleton's row id, and whether the hand-over took the report.

    Commit first, enrich after (node/skeleton.py): the type and call site are
    durable before anything slow is even imported. Then, with a relay on this
    machine, the report is handed over without loading the pipeline
    (node/handover.py explains the ~50 ms budget). Only a dying process comes
    here, so a row no relay took is delivered as one that exits.
    """
    from node import skeleton as first

    skeleton = first.record(
        exc,
        flags=hub.flags,
        caller_package=hub.caller_package,
        fingerprint=fingerprint,
        now=now,
        located=located,
    )
    from node import handover

    try:
        result = handover.hand_over(
            exc,
            flags=hub.flags,
            log_tail=log_tail,
            caller_package=hub.caller_package,
            default_app=default_app,
            fingerprint=fingerprint,
            now=now,
            skeleton=skeleton,
            located=located,
            scope=scope,
        )
    except Exception:  # nothing committed: the full path reports it (or the failure)
        result = handover.NOT_APPLICABLE
    if result == handover.NOT_APPLICABLE:
        return skeleton, False
    hub.last = None
    if result == handover.WRITTEN:  # committed, but no relay took it
        round_result = hub.pipeline().deliver_spooled(exiting=True)
        if round_result is not None and round_result.errors:
            hub.warn("; ".join(round_result.errors))
    return skeleton, True
