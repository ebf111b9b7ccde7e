"""Build a :class:`~mesh.report.Report` from an exception or a failed command.

This is sentry-python's ``event_from_exception`` for errmesh: it turns live
objects (an exception and its traceback, a process's exit status) into plain
data before anything else happens. The frames come from node/frames.py, the
process's context from node/context.py, every free text is cut by
node/cut.py; scrubbing, signing and spooling come after.

Like sentry-python's, the first product is a plain **event**: a dict of
strings, numbers and tuples with the Report's field names
(:func:`exception_event`). :func:`to_report` makes it a Report. The split
exists for the local hand-over (node/handover.py): a failing process whose
relay runs on the same machine scrubs the event and writes it as it is,
without importing ``dataclasses`` or ``typing``, and the relay makes it a
Report. So this module, and what it imports at load time, import only the
standard library's cheapest parts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from mesh.severity import Severity, severity_for_types
from node.chain import causes, qualified_name
from node.context import EventContext, host_facts, process_context, process_facts
from node.cut import (
    CAUSE_CHARS,
    LOG_LINE_CHARS,
    MESSAGE_CHARS,
    STDERR_LINE_CHARS,
    TAG_VALUE_CHARS,
    cut_argv,
    cut_text,
)
from node.frames import trace, trace_frames
from node.groups import MAX_LEAVES, leaves

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypedDict

    from mesh.report import Cause, Frame, Leaf, Report
    from node.frames import FrameData
    from node.source import SourceData

    #: (type, message, relation), as in mesh.report.Cause.
    CauseData = tuple[str, str, str]
    #: (type, message, frames), as in mesh.report.Leaf.
    LeafData = tuple[str, str, tuple[FrameData, ...]]

    class Event(TypedDict):
        """A Report before scrubbing and signing, in plain values (see the module)."""

        kind: str
        exc_type: str
        message: str
        causes: tuple[CauseData, ...]
        frames: tuple[FrameData, ...]
        log_tail: tuple[str, ...]
        argv: tuple[str, ...]
        app: str
        app_version: str
        host: str
        os: str
        python: str
        timestamp: float
        severity: int
        facts: tuple[tuple[str, str], ...]
        fingerprint: tuple[str, ...] | None
        leaves: tuple[LeafData, ...]
        leaves_cut: int
        tags: tuple[tuple[str, str], ...]
        contexts: tuple[tuple[str, str], ...]
        environment: str
        release: str
        source_context: tuple[SourceData, ...]


__all__ = [
    "EventContext",
    "as_message",
    "exception_event",
    "from_command",
    "from_exception",
    "host_facts",
    "process_context",
    "process_facts",
    "qualified_name",
    "to_report",
]

_MAX_CHAIN = 8

#: The ends of each kept leaf's trace (with the marker, the wire's MAX_LEAF_FRAMES).
LEAF_OUTER_FRAMES = 2
LEAF_INNER_FRAMES = 13


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
        if isinstance(exc, KeyError) and len(exc.args) == 1:
            text = repr(exc.args[0])
    except Exception:  # a broken __str__ (or __repr__) must not break capture
        text = "<unprintable exception>"
    return text


def _causes(exc: BaseException) -> tuple[CauseData, ...]:
    return tuple(
        (qualified_name(type(nxt)), cut_text(_message(nxt), CAUSE_CHARS), relation)
        for nxt, relation in causes(exc, _MAX_CHAIN)
    )


def _leaves(exc: BaseException, ctx: EventContext) -> tuple[list[LeafData], int, list[int]]:
    """The first :data:`MAX_LEAVES` leaves of a group (node/groups.py), the rest's count.

    Also returns the kept leaves' severities: a group is as severe as its
    worst leaf. (The hub reports each leaf on its own; a group reaches this
    through ``node.event`` called directly, or from an older hand-over.)
    """
    found, more = leaves(exc, MAX_LEAVES)
    kept: list[LeafData] = []
    severities: list[int] = []
    for sub, _above in found:
        frames = trace_frames(
            sub.__traceback__, ctx, outer=LEAF_OUTER_FRAMES, inner=LEAF_INNER_FRAMES
        )
        kept.append((qualified_name(type(sub)), cut_text(_message(sub), CAUSE_CHARS), frames))
        mro = [qualified_name(c) for c in type(sub).__mro__]
        severities.append(int(severity_for_types(mro)))
    return kept, more, severities


def exception_event(
    exc: BaseException,
    ctx: EventContext,
    *,
    now: float,
    fingerprint: Sequence[str] | None = None,
) -> Event:
    """The unscrubbed event of ``exc``, in plain values (see :data:`Event`).

    Every free text is already cut to its bound (:func:`node.cut.cut_text`),
    and a trace to its ends (:func:`node.frames.trace_frames`), so what
    follows costs the same for any exception.
    """
    cls = type(exc)
    mro = [qualified_name(c) for c in cls.__mro__]
    leaves, leaves_cut, severities = _leaves(exc, ctx)
    severity = max([int(severity_for_types(mro)), *severities])
    frames, source = trace(exc.__traceback__, ctx, source=ctx.source_context)
    return {
        "kind": "exception",
        "exc_type": qualified_name(cls),
        "message": cut_text(_message(exc), MESSAGE_CHARS),
        "causes": _causes(exc),
        "frames": frames,
        "log_tail": tuple(cut_text(line, LOG_LINE_CHARS) for line in ctx.log_tail),
        "argv": cut_argv(ctx.argv),
        "app": ctx.app,
        "app_version": ctx.app_version,
        "host": ctx.host,
        "os": ctx.os,
        "python": ctx.python,
        "timestamp": now,
        "severity": severity,
        "facts": ctx.facts,
        "fingerprint": None if fingerprint is None else tuple(fingerprint),
        "leaves": tuple(leaves),
        "leaves_cut": leaves_cut,
        "tags": ctx.tags,
        "contexts": ctx.contexts,
        "environment": ctx.environment,
        "release": ctx.release,
        "source_context": source,
    }


def from_exception(exc: BaseException, ctx: EventContext, *, now: float) -> Report:
    """The unsigned, unscrubbed report of ``exc`` (origin/seq/count come at spool time)."""
    return to_report(exception_event(exc, ctx, now=now))


#: ``capture_message``'s levels (sentry-python's) and the severity of each.
_LEVELS = {
    "debug": Severity.LOW,
    "info": Severity.LOW,
    "warning": Severity.LOW,
    "error": Severity.MEDIUM,
    "fatal": Severity.CRITICAL,
}


def as_message(raw: Report, level: str, logger: str = "") -> Report:
    """The report of a ``capture_message`` call, from its ``CapturedMessage``'s.

    Typed ``Message`` (the text and the caller's frames group it) and as
    severe as its level; an unknown level counts as ``info`` and is shown
    as it was given, in the ``level`` tag. A log record's (node/log_capture.py)
    also names its ``logger`` in a tag.
    """
    shown = cut_text(level if isinstance(level, str) else repr(level), CAUSE_CHARS)
    named = (("logger", cut_text(logger, TAG_VALUE_CHARS)),) if logger else ()
    return raw.replace(
        exc_type="Message",
        causes=(),
        severity=_LEVELS.get(shown, Severity.LOW),
        tags=(("level", shown), *named, *raw.tags),
    )


def _strs(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"event field {name!r}: expected a list of strings")
    return tuple(value)


def to_report(event: Mapping[str, object]) -> Report:
    """The Report of an exception event; unsigned (origin/seq/count come at spool time).

    Validates every field, since an event may come from another process's
    hand-over row: raises ``ValueError`` naming the first bad field.
    """
    from mesh.report import Report

    if event.get("kind") != "exception":
        raise ValueError("event field 'kind': expected 'exception'")
    # source_context is absent from older hand-over rows
    frames = _frames_of(event.get("frames"), "frames", event.get("source_context", ()))
    leaves = _leaves_of(event.get("leaves", ()))  # absent from older hand-over rows
    leaves_cut = event.get("leaves_cut", 0)
    if type(leaves_cut) is not int or leaves_cut < 0:
        raise ValueError("event field 'leaves_cut': expected a count")
    causes = _causes_of(event.get("causes"))
    facts = _facts_of(event.get("facts"), "facts")
    timestamp = event.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise ValueError("event field 'timestamp': expected a number")
    severity = event.get("severity")
    if type(severity) is not int or severity not in {int(s) for s in Severity}:
        raise ValueError("event field 'severity': expected a severity level")
    fingerprint = event.get("fingerprint")
    return Report(
        kind="exception",
        exc_type=_text(event, "exc_type"),
        message=_text(event, "message"),
        causes=causes,
        frames=frames,
        log_tail=_strs(event.get("log_tail"), "log_tail"),
        argv=_strs(event.get("argv"), "argv"),
        app=_text(event, "app"),
        app_version=_text(event, "app_version"),
        host=_text(event, "host"),
        os=_text(event, "os"),
        python=_text(event, "python"),
        timestamp=float(timestamp),
        severity=Severity(severity),
        facts=facts,
        fingerprint=None if fingerprint is None else _strs(fingerprint, "fingerprint"),
        leaves=leaves,
        leaves_cut=leaves_cut,
        # absent from older hand-over rows
        tags=_facts_of(event.get("tags", ()), "tags"),
        contexts=_facts_of(event.get("contexts", ()), "contexts"),
        environment=_text(event, "environment", ""),
        release=_text(event, "release", ""),
        origin=b"",  # these four are the spool's to stamp
        seq=0,
        count=0,
        signature=b"",
    )


def _text(event: Mapping[str, object], name: str, default: str | None = None) -> str:
    value = event.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"event field {name!r}: expected a string")
    return value


def _frames_of(raw_frames: object, name: str, raw_source: object = ()) -> tuple[Frame, ...]:
    from mesh.report import Frame

    if not isinstance(raw_frames, (list, tuple)):
        raise ValueError(f"event field {name!r}: expected a list")
    source = _source_of(raw_source, len(raw_frames))
    frames: list[Frame] = []
    for index, f in enumerate(raw_frames):
        if not (
            isinstance(f, (list, tuple))
            and len(f) == 6
            and all(isinstance(f[i], str) for i in (0, 1, 2, 5))
            and type(f[3]) is int
            and isinstance(f[4], bool)
        ):
            raise ValueError(f"event field {name!r}: bad frame")
        frames.append(
            Frame(
                module=f[0],
                function=f[1],
                filename=f[2],
                lineno=f[3],
                in_app=f[4],
                line=f[5],
                **source.get(index, {}),  # type: ignore[arg-type]
            )
        )
    return tuple(frames)


def _source_of(raw: object, frames: int) -> dict[int, dict[str, object]]:
    """The event's source context (node/source.py) by frame index, as Frame fields."""
    if not isinstance(raw, (list, tuple)):
        raise ValueError("event field 'source_context': expected a list")
    out: dict[int, dict[str, object]] = {}
    for item in raw:
        if not (
            isinstance(item, (list, tuple))
            and len(item) == 4
            and type(item[0]) is int
            and 0 <= item[0] < frames
            and isinstance(item[2], str)
        ):
            raise ValueError("event field 'source_context': bad entry")
        index, pre, line, post = item
        out[index] = {
            "pre_context": _strs(pre, "source_context"),
            "context_line": line,
            "post_context": _strs(post, "source_context"),
        }
    return out


def _leaves_of(raw_leaves: object) -> tuple[Leaf, ...]:
    from mesh.report import Leaf

    if not isinstance(raw_leaves, (list, tuple)):
        raise ValueError("event field 'leaves': expected a list")
    leaves: list[Leaf] = []
    for leaf in raw_leaves:
        if not (
            isinstance(leaf, (list, tuple))
            and len(leaf) == 3
            and isinstance(leaf[0], str)
            and isinstance(leaf[1], str)
        ):
            raise ValueError("event field 'leaves': bad leaf")
        leaves.append(Leaf(type=leaf[0], message=leaf[1], frames=_frames_of(leaf[2], "leaves")))
    return tuple(leaves)


def _causes_of(raw_causes: object) -> tuple[Cause, ...]:
    from mesh.report import Cause

    if not isinstance(raw_causes, (list, tuple)):
        raise ValueError("event field 'causes': expected a list")
    out: list[Cause] = []
    for c in raw_causes:
        if not (
            isinstance(c, (list, tuple))
            and len(c) == 3
            and all(isinstance(v, str) for v in c)
            and c[2] in ("cause", "context")
        ):
            raise ValueError("event field 'causes': bad cause")
        out.append(Cause(type=c[0], message=c[1], relation=c[2]))
    return tuple(out)


def _facts_of(facts: object, name: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(facts, (list, tuple)) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, str) for v in p)
        for p in facts
    ):
        raise ValueError(f"event field {name!r}: expected a list of pairs of strings")
    return tuple((k, v) for k, v in facts)


def from_command(
    argv: Sequence[str],
    *,
    exit_code: int | None,
    signal_number: int | None,
    stderr_tail: Sequence[str],
    ctx: EventContext,
    now: float,
    stdout_tail: Sequence[str] = (),
    name: str = "",
    timed_out_after: float | None = None,
) -> Report:
    """The report of a program run by ``errmesh run`` that failed.

    The "type" names the job (``name``, else the program) and how it ended
    (``make exited 2``, ``server killed by SIGSEGV``, ``backup timed out
    after 60 s``); the message is its last error-looking stderr line, which
    is what a person would quote in an issue. A named job groups apart from
    other jobs running the same program, and a timeout by the job alone
    (whatever it printed), through the fingerprint rules.
    """
    from mesh.report import Report
    from mesh.signature import error_lines

    program = os.path.basename(argv[0]) if argv else "?"
    exc_type, severity, fingerprint = _command_identity(
        name or program, exit_code, signal_number, timed_out_after, job=bool(name)
    )
    stderr_tail = [cut_text(line, STDERR_LINE_CHARS) for line in stderr_tail]
    raw = [line for line in stderr_tail if line.strip()]
    lines = error_lines(raw, limit=1)
    message = _last_matching_raw(raw, lines[0]) if lines else ""
    return Report(
        origin=b"",
        seq=0,
        count=0,
        signature=b"",
        kind="command",
        exc_type=exc_type,
        message=message,
        log_tail=tuple(stderr_tail),
        stdout_tail=tuple(cut_text(line, LOG_LINE_CHARS) for line in stdout_tail),
        argv=cut_argv(argv),
        fingerprint=fingerprint,
        app=ctx.app or name or program,
        app_version=ctx.app_version,
        host=ctx.host,
        os=ctx.os,
        python=ctx.python,
        timestamp=now,
        severity=severity,
        exit_code=exit_code,
        signal=signal_number,
        facts=ctx.facts,
        tags=ctx.tags,
        contexts=ctx.contexts,
        environment=ctx.environment,
        release=ctx.release,
    )


def _command_identity(
    label: str,
    exit_code: int | None,
    signal_number: int | None,
    timed_out_after: float | None,
    *,
    job: bool,
) -> tuple[str, Severity, tuple[str, ...] | None]:
    """A failed command's type, severity and fingerprint (see :func:`from_command`)."""
    import signal as signal_module

    if timed_out_after is not None:  # grouped by the job alone, whatever it printed
        return (
            f"{label} timed out after {timed_out_after:g} s",
            Severity.HIGH,
            (
                "errmesh-run-timeout",
                label,
            ),
        )
    fingerprint = ("{{ default }}", f"job:{label}") if job else None
    if signal_number is None:
        return f"{label} exited {exit_code}", Severity.MEDIUM, fingerprint
    try:
        how = signal_module.Signals(signal_number).name
    except ValueError:
        how = f"signal {signal_number}"
    return f"{label} killed by {how}", Severity.HIGH, fingerprint


def _last_matching_raw(raw: Sequence[str], normalised: str) -> str:
    """The raw line behind a normalised error line (the title shows real text)."""
    from mesh.signature import normalise_message

    for line in reversed(raw):
        if normalise_message(line) == normalised:
            return line.strip()
    return raw[-1].strip() if raw else ""
