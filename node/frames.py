"""The frames of a traceback as plain values: in-app or not, relative names.

Frames are marked in-app unless they live in the standard library,
site-packages, frozen modules or errmesh itself, so that the signature hashes
the host program's own call path; ``in_app_include``/``in_app_exclude``
(module prefixes) override the guess. File names are made relative (to the
current directory, or to the ``sys.path`` entry that holds them) so that the
same bug renders the same on machines with different install paths. Source
lines are read through ``linecache`` and nothing else; the lines around the
innermost in-app frames (source context) are node/source.py's.
"""

from __future__ import annotations

import linecache
import os
import sys

from node.cut import FRAME_LINE_CHARS, cut_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from node.context import EventContext
    from node.source import SourceData

    #: (module, function, filename, lineno, in_app, line), as in mesh.report.Frame.
    FrameData = tuple[str, str, str, int, bool, str]

__all__ = ["INNER_FRAMES", "OUTER_FRAMES", "cut_marker", "trace", "trace_frames"]

_OWN_PACKAGES = ("mesh", "node", "github_sink")

#: A trace keeps its outermost OUTER_FRAMES and innermost INNER_FRAMES frames;
#: with the cut marker between them that is the wire's 64 (mesh.wire.MAX_FRAMES).
OUTER_FRAMES = 5
INNER_FRAMES = 58


def _library_roots() -> tuple[str, ...]:
    """The standard library and every site-packages on ``sys.path``.

    Derived from ``os.__file__`` and ``sys.path`` rather than ``sysconfig``,
    whose first ``get_paths()`` costs ~7 ms on a failing process's way out.
    """
    roots = {os.path.realpath(os.path.dirname(os.__file__))}
    for entry in sys.path:
        if "site-packages" in entry or "dist-packages" in entry:
            roots.add(os.path.realpath(entry))
    return tuple(sorted(roots, key=len, reverse=True))


_LIB_ROOTS: tuple[str, ...] | None = None


def _lib_roots() -> tuple[str, ...]:
    global _LIB_ROOTS
    if _LIB_ROOTS is None:
        _LIB_ROOTS = _library_roots()
    return _LIB_ROOTS


def _is_library_file(path: str) -> bool:
    if not path or path.startswith("<"):
        return True
    if "site-packages" in path or "dist-packages" in path:
        return True
    real = os.path.realpath(path)
    return any(real.startswith(root + os.sep) for root in _lib_roots())


_OWN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _in_app(module: str, path: str, is_library: bool, ctx: EventContext) -> bool:
    def matches(prefixes: Sequence[str]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    if matches(ctx.in_app_exclude):
        return False
    if matches(ctx.in_app_include):
        return True
    if (
        matches(_OWN_PACKAGES)
        and not path.endswith("__main__.py")
        and os.path.abspath(path).startswith(_OWN_ROOT)
    ):
        return False  # errmesh's own frames (the decorator, the hook) are never the bug
    return not is_library


def _relative(path: str, cwd: str) -> str:
    if not path or path.startswith("<"):
        return path
    absolute = os.path.abspath(path)
    if cwd and absolute.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, cwd)
    best = ""
    for entry in sys.path:
        root = os.path.abspath(entry or ".")
        if absolute.startswith(root.rstrip(os.sep) + os.sep) and len(root) > len(best):
            best = root
    if best:
        return os.path.relpath(absolute, best)
    return os.path.basename(absolute)


class _PathFacts:
    """Per-file answers (library or not, relative name), cached per process.

    Resolving a path costs a ``realpath`` and a walk over ``sys.path``; a deep
    trace repeats the same few files. The cache is dropped whenever
    ``sys.path`` or the working directory changed, since both decide the
    answers.
    """

    def __init__(self) -> None:
        self._key: tuple[tuple[str, ...], str] = ((), "")
        self._facts: dict[str, tuple[bool, str]] = {}

    def get(self, path: str, cwd: str) -> tuple[bool, str]:
        key = (tuple(sys.path), cwd)
        if key != self._key:
            self._key = key
            self._facts = {}
        facts = self._facts.get(path)
        if facts is None:
            facts = (_is_library_file(path), _relative(path, cwd))
            self._facts[path] = facts
        return facts


_PATHS = _PathFacts()


def _frame(tb: TracebackType, ctx: EventContext) -> FrameData:
    frame = tb.tb_frame
    code = frame.f_code
    path = code.co_filename
    module = str(frame.f_globals.get("__name__", "") or "")
    lineno = tb.tb_lineno or 0
    is_library, relative = _PATHS.get(path, ctx.cwd)
    line = linecache.getline(path, lineno, frame.f_globals).strip()
    return (
        module,
        getattr(code, "co_qualname", code.co_name),
        relative,
        lineno,
        _in_app(module, path, is_library, ctx),
        cut_text(line, FRAME_LINE_CHARS),
    )


def cut_marker(omitted: int) -> FrameData:
    """The frame that stands for ``omitted`` frames left out of the middle of a trace."""
    return ("", f"…[cut {omitted} frames]", "", 0, False, "")


def _walk(tb: TracebackType | None, outer: int, inner: int) -> list[TracebackType | int]:
    """The kept entries of ``tb``, outermost first; an int counts frames left out there."""
    head: list[TracebackType] = []
    ring: list[TracebackType] = []
    total = 0
    while tb is not None:
        if total < outer:
            head.append(tb)
        elif len(ring) < inner:
            ring.append(tb)
        else:
            ring[(total - outer) % inner] = tb
        total += 1
        tb = tb.tb_next
    start = (total - outer) % inner if total - outer > inner else 0
    tail = ring[start:] + ring[:start]
    kept: list[TracebackType | int] = list(head)
    if total > len(head) + len(tail):
        kept.append(total - len(head) - len(tail))
    kept.extend(tail)
    return kept


def trace_frames(
    tb: TracebackType | None,
    ctx: EventContext,
    *,
    outer: int = OUTER_FRAMES,
    inner: int = INNER_FRAMES,
) -> tuple[FrameData, ...]:
    """The outermost ``outer`` and innermost ``inner`` frames of ``tb``, and a marker.

    The bug is where it raised, so the innermost frames are the ones kept (the
    signature hashes them); the outermost few say how the program got there.
    One pass over the traceback's linked list counts it and keeps references
    in a ring of ``inner`` slots, so a trace 100,000 frames deep costs a
    pointer walk and ``outer + inner`` frames' worth of work and memory; the
    marker says exactly how many frames were left out.
    """
    return trace(tb, ctx, outer=outer, inner=inner, source=False)[0]


def trace(
    tb: TracebackType | None,
    ctx: EventContext,
    *,
    outer: int = OUTER_FRAMES,
    inner: int = INNER_FRAMES,
    source: bool = True,
) -> tuple[tuple[FrameData, ...], tuple[SourceData, ...]]:
    """:func:`trace_frames`, and with ``source`` the source context of its
    innermost in-app frames (node/source.py), read while the frames are live."""
    kept = _walk(tb, outer, inner)
    frames = tuple(
        cut_marker(entry) if isinstance(entry, int) else _frame(entry, ctx) for entry in kept
    )
    if not source:
        return frames, ()
    from node.source import source_context

    return frames, source_context(kept, frames)
