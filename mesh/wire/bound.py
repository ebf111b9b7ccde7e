"""Cutting a report down to the wire's bounds before it is spooled and sent.

Writing is strict (:func:`~mesh.wire.encode` refuses what breaks a bound), so
the capture side calls :func:`bound_report` first: it trims a report, with
visible markers, until its encoding fits one frame uncompressed.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from typing import Any, Final, NamedTuple

from mesh.errors import LocalError
from mesh.report import Cause, Frame, Leaf, Report
from mesh.wire.limits import (
    MAC_BYTES,
    MAX_ARGV,
    MAX_ARGV_ITEM,
    MAX_CAUSE_MESSAGE,
    MAX_CAUSES,
    MAX_CONTEXT_LINES,
    MAX_CONTEXTS,
    MAX_FACT_VALUE,
    MAX_FACTS,
    MAX_FINGERPRINT,
    MAX_FRAME_LINE,
    MAX_FRAMES,
    MAX_LEAF_FRAMES,
    MAX_LEAVES,
    MAX_LOG_LINE,
    MAX_LOG_LINES,
    MAX_MESSAGE,
    MAX_NAME,
    MAX_TAG_VALUE,
    MAX_TAGS,
    MAX_TEXT,
)
from mesh.wire.packing import _pack
from mesh.wire.schema import _REPORT

#: Bytes the packed report map may take: a frame holds it uncompressed with
#: the envelope, a sender id of MAX_NAME bytes and a MAC.
_REPORT_ROOM: Final = MAX_MESSAGE - MAC_BYTES - 256
#: Frames kept at the outer end of a cut trace (the innermost fill the rest).
OUTER_FRAMES: Final = 5
#: The same for a leaf exception's frames (MAX_LEAF_FRAMES in all).
LEAF_OUTER_FRAMES: Final = 2
#: The function name of the frame that stands for frames cut from a trace.
_FRAMES_CUT: Final = re.compile(r"…\[cut (\d+) frames\]")
#: No cap shrinks below this (a cut marker needs about 20 bytes).
_FLOOR: Final = 32


class _Caps(NamedTuple):
    """String limits for one pass of :func:`bound_report`, in UTF-8 bytes."""

    frame_line: int = MAX_FRAME_LINE
    log_line: int = MAX_LOG_LINE
    argv_item: int = MAX_ARGV_ITEM
    fact_value: int = MAX_FACT_VALUE
    tag_value: int = MAX_TAG_VALUE
    text: int = MAX_TEXT
    cause: int = MAX_CAUSE_MESSAGE
    name: int = MAX_NAME


#: Shrunk first: the bulk of a big report and the least valuable bytes.
_BULKY: Final = ("frame_line", "log_line", "argv_item", "fact_value", "tag_value")


def _cap_levels() -> Iterator[_Caps]:
    """The hard limits; then bulky caps halved; then all caps halved; to _FLOOR."""
    caps = _Caps()
    while True:
        yield caps
        names = [n for n in _BULKY if getattr(caps, n) > _FLOOR] or list(_Caps._fields)
        smaller = caps._replace(**{n: max(_FLOOR, getattr(caps, n) // 2) for n in names})
        if smaller == caps:
            return
        caps = smaller


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-8 bytes: its head kept, the rest marked.

    Lone surrogates (undecodable file names) become ``?`` on the way. Short
    ASCII text (most of a report) is returned as it is, without encoding it.
    """
    if len(text) <= limit and text.isascii():
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    room = limit - len(f"…[cut {len(data)} bytes]".encode())
    head = data[: max(room, 0)].decode("utf-8", "ignore")
    return f"{head}…[cut {len(data) - len(head.encode())} bytes]"


def _cut_frame(frame: Frame, caps: _Caps) -> Frame:
    """``frame`` within ``caps``: the frame itself when nothing needed cutting."""
    texts = (frame.module, frame.function, frame.filename, frame.line, frame.context_line)
    limits = (caps.name, caps.name, caps.name, caps.frame_line, caps.frame_line)
    module, function, filename, line, context_line = map(_cut, texts, limits)
    pre = tuple(_cut(text, caps.frame_line) for text in frame.pre_context[-MAX_CONTEXT_LINES:])
    post = tuple(_cut(text, caps.frame_line) for text in frame.post_context[:MAX_CONTEXT_LINES])
    if (
        all(map(operator.is_, (module, function, filename, line, context_line), texts))
        and pre == frame.pre_context
        and post == frame.post_context
    ):
        return frame
    return Frame(
        module=module,
        function=function,
        filename=filename,
        lineno=frame.lineno,
        in_app=frame.in_app,
        line=line,
        pre_context=pre,
        context_line=context_line,
        post_context=post,
    )


def _cut_frames(
    frames: tuple[Frame, ...], limit: int = MAX_FRAMES, outer: int = OUTER_FRAMES
) -> tuple[Frame, ...]:
    """The outermost ``outer`` frames, a marker, and the innermost, ``limit`` in all.

    The same shape as the capture side's walk (``node.frames``); the marker's
    count is exact even when the frames cut already held a marker.
    """
    if len(frames) <= limit:
        return frames
    inner = limit - outer - 1
    middle = frames[outer:-inner]
    omitted = 0
    for frame in middle:
        found = _FRAMES_CUT.fullmatch(frame.function) if frame.lineno == 0 else None
        omitted += int(found.group(1)) if found else 1
    marker = Frame(
        module="", function=f"…[cut {omitted} frames]", filename="", lineno=0, in_app=False
    )
    return (*frames[:outer], marker, *frames[-inner:])


def _newest_lines(lines: tuple[str, ...]) -> tuple[str, ...]:
    """The newest :data:`MAX_LOG_LINES` lines, the first a marker counting the rest."""
    if len(lines) <= MAX_LOG_LINES:
        return lines
    kept = lines[len(lines) - MAX_LOG_LINES + 1 :]
    return (f"…[cut {len(lines) - len(kept)} older lines]", *kept)


def _bounded(report: Report, caps: _Caps) -> Report:
    frames = _cut_frames(report.frames)
    log_tail = _newest_lines(report.log_tail)
    stdout_tail = _newest_lines(report.stdout_tail)
    argv = report.argv
    if len(argv) > MAX_ARGV:
        argv = (*argv[: MAX_ARGV - 1], f"…[cut {len(argv) - MAX_ARGV + 1} arguments]")

    def name(text: str) -> str:
        return _cut(text, caps.name)

    return report.replace(
        exc_type=name(report.exc_type),
        message=_cut(report.message, caps.text),
        causes=tuple(
            Cause(type=name(c.type), message=_cut(c.message, caps.cause), relation=c.relation)
            for c in report.causes[:MAX_CAUSES]
        ),
        frames=tuple(_cut_frame(f, caps) for f in frames),
        log_tail=tuple(_cut(line, caps.log_line) for line in log_tail),
        argv=tuple(_cut(arg, caps.argv_item) for arg in argv),
        app=name(report.app),
        app_version=name(report.app_version),
        host=name(report.host),
        os=name(report.os),
        python=name(report.python),
        facts=tuple((name(k), _cut(v, caps.fact_value)) for k, v in report.facts[:MAX_FACTS]),
        fingerprint=None
        if report.fingerprint is None
        else tuple(name(part) for part in report.fingerprint[:MAX_FINGERPRINT]),
        leaves=tuple(
            Leaf(
                type=name(leaf.type),
                message=_cut(leaf.message, caps.cause),
                frames=tuple(
                    _cut_frame(f, caps)
                    for f in _cut_frames(leaf.frames, MAX_LEAF_FRAMES, LEAF_OUTER_FRAMES)
                ),
            )
            for leaf in report.leaves[:MAX_LEAVES]
        ),
        leaves_cut=report.leaves_cut + max(0, len(report.leaves) - MAX_LEAVES),
        tags=tuple((name(k), _cut(v, caps.tag_value)) for k, v in report.tags[:MAX_TAGS]),
        contexts=tuple(
            (name(k), _cut(v, caps.fact_value)) for k, v in report.contexts[:MAX_CONTEXTS]
        ),
        environment=name(report.environment),
        release=name(report.release),
        stdout_tail=tuple(_cut(line, caps.log_line) for line in stdout_tail),
    )


#: The last report :func:`bound_report` returned and its map as written to
#: measure it, which :func:`~mesh.wire.encode_stamped` reuses for that very
#: object (a frozen value: the same object, the same map). One entry, replaced
#: in one assignment: another thread's report only misses it.
_last_bound: tuple[Report, dict[str, Any]] | None = None


def bound_report(report: Report) -> Report:
    """A copy of ``report`` cut to the wire's bounds; call it before spooling.

    Keeps the outermost :data:`OUTER_FRAMES` and the innermost frames of a
    trace longer than :data:`MAX_FRAMES` (a marker frame, ``…[cut N frames]``,
    between them; a leaf exception's frames likewise, to
    :data:`MAX_LEAF_FRAMES`; the first :data:`MAX_LEAVES` leaves, the rest
    counted in ``leaves_cut``), the newest
    :data:`MAX_LOG_LINES` log lines and the first arguments (each with a
    marker saying how many were cut), cuts every string to its limit with a
    ``…[cut N bytes]`` marker and replaces lone surrogates with ``?``. If the
    encoding is still too big, it halves the limits of frame source lines, log
    lines, arguments and fact values, then of every string, until the packed
    report fits a frame uncompressed (with a sender id and a MAC), so
    ``encode(ReportMsg(report=bound_report(r), sender=peer), key)`` cannot fail
    on size. A report already within bounds comes back equal.

    Raises :class:`~mesh.errors.LocalError` for what cannot be cut: a value
    of the wrong type or an integer msgpack cannot carry.
    """
    global _last_bound
    try:
        for caps in _cap_levels():
            bounded = _bounded(report, caps)
            fields = _REPORT.write(bounded)
            if len(_pack(fields)) <= _REPORT_ROOM:
                break
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        raise LocalError(f"report cannot be bounded: {exc}") from exc
    _last_bound = (bounded, fields)
    return bounded


def seal_report(report: Report) -> Report:
    """The one step between a scrubbed report and the spool: sign, then bound.

    Both error paths (``node.pipeline.Pipeline.prepare`` and the relay's
    ``node.handover.take``) call it, so a report handed over and the same
    report spooled directly carry the same signature and the same cuts. The
    signature is taken before the cuts, from the whole trace.
    """
    from mesh.signature import report_signature

    return bound_report(report.replace(signature=report_signature(report)))
