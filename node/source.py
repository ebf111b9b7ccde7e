"""Source context: the lines around the innermost in-app frames (issue 14).

Sentry shows five lines before and after each frame's line, and so does
errmesh, for the innermost :data:`CONTEXT_FRAMES` in-app frames only: the bug
is in the host's code near where it raised, a library's source is the
library's, and a report is bounded (one gossip frame, an issue body). Each
line is cut to :data:`~node.cut.SOURCE_LINE_CHARS` and the whole context of
one report to :data:`CONTEXT_CHARS`, innermost frame first: a frame whose
window does not fit gets none, nor does any frame outside it.

The lines are read through ``linecache`` while the frames are live (a
module's loader answers for source that is not a plain file, as in
``traceback``), trailing whitespace stripped and indentation kept, and are
scrubbed later with the rest of the report (``mesh.scrub.Scrubber.source``).
Standard library only: the hand-over path imports this (node/handover.py).
"""

from __future__ import annotations

import linecache

from node.cut import SOURCE_LINE_CHARS, cut_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from node.frames import FrameData

    #: (frame index, pre_context, context_line, post_context), as in mesh.report.Frame.
    SourceData = tuple[int, tuple[str, ...], str, tuple[str, ...]]

__all__ = ["CONTEXT_CHARS", "CONTEXT_FRAMES", "CONTEXT_LINES", "source_context"]

#: Lines kept before and after a frame's line (Sentry's default).
CONTEXT_LINES = 5
#: The innermost in-app frames that get context.
CONTEXT_FRAMES = 10
#: All the context lines of one report, in characters.
CONTEXT_CHARS = 8 * 1024


def _window(tb: TracebackType) -> tuple[tuple[str, ...], str, tuple[str, ...]] | None:
    """The lines before, at and after ``tb``'s line; None when its source is unknown."""
    frame = tb.tb_frame
    lineno = tb.tb_lineno or 0
    lines = linecache.getlines(frame.f_code.co_filename, frame.f_globals)
    if not 0 < lineno <= len(lines):
        return None

    def cut(index: int) -> str:
        return cut_text(lines[index].rstrip(), SOURCE_LINE_CHARS)

    pre = tuple(cut(i) for i in range(max(0, lineno - 1 - CONTEXT_LINES), lineno - 1))
    post = tuple(cut(i) for i in range(lineno, min(len(lines), lineno + CONTEXT_LINES)))
    return pre, cut(lineno - 1), post


def source_context(
    kept: Sequence[TracebackType | int], frames: Sequence[FrameData]
) -> tuple[SourceData, ...]:
    """The context of ``frames`` (``kept``'s entries made frames), outermost first.

    ``kept`` holds the live tracebacks behind ``frames`` (an int where a cut
    marker stands). Only in-app frames get context, the innermost first,
    until :data:`CONTEXT_FRAMES` have it or :data:`CONTEXT_CHARS` is spent.
    """
    out: list[SourceData] = []
    used = 0
    for index in range(len(frames) - 1, -1, -1):
        entry = kept[index]
        if len(out) == CONTEXT_FRAMES:
            break
        if isinstance(entry, int) or not frames[index][4]:
            continue
        window = _window(entry)
        if window is None:
            continue
        pre, line, post = window
        size = sum(map(len, pre)) + len(line) + sum(map(len, post))
        if used + size > CONTEXT_CHARS:
            break
        used += size
        out.append((index, pre, line, post))
    out.reverse()
    return tuple(out)
