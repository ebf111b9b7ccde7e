"""Build a :class:`~mesh.report.Report` from an exception or a failed command.

This is sentry-python's ``event_from_exception`` for errmesh: it turns live
objects (an exception and its traceback, a process's exit status) into plain
data before anything else happens. It reads source lines through
``linecache`` and nothing else; scrubbing, signing and spooling come after.

Like sentry-python's, the first product is a plain **event**: a dict of
strings, numbers and tuples with the Report's field names
(:func:`exception_event`). :func:`to_report` makes it a Report. The split
exists for the local hand-over (node/handover.py): a failing process whose
relay runs on the same machine scrubs the event and writes it as it is,
without importing ``dataclasses`` or ``typing``, and the relay makes it a
Report. So this module imports only the standard library's cheapest parts
at load time.

Frames are marked in-app unless they live in the standard library,
site-packages, frozen modules or errmesh itself, so that the signature hashes
the host program's own call path; ``in_app_include``/``in_app_exclude``
(module prefixes) override the guess. File names are made relative (to the
current directory, or to the ``sys.path`` entry that holds them) so that the
same bug renders the same on machines with different install paths.
"""

from __future__ import annotations

import linecache
import os
import sys
from collections.abc import Mapping, Sequence

from mesh.severity import Severity, severity_for_types
from node.chain import causes, qualified_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import TypedDict

    from mesh.report import Report

    #: (module, function, filename, lineno, in_app, line), as in mesh.report.Frame.
    FrameData = tuple[str, str, str, int, bool, str]
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


__all__ = [
    "EventContext",
    "exception_event",
    "from_command",
    "from_exception",
    "host_facts",
    "process_context",
    "process_facts",
    "qualified_name",
    "to_report",
]

_OWN_PACKAGES = ("mesh", "node", "github_sink")
_MAX_CHAIN = 8
#: Free text is cut to these many characters *before* anything reads it
#: (normalising, scrubbing, signing): the wire's byte bounds (mesh.wire.limits),
#: so that what is cut here the wire would have cut anyway.
MESSAGE_CHARS = 8192
CAUSE_CHARS = 1024
FRAME_LINE_CHARS = 300
LOG_LINE_CHARS = 500
ARGV_ITEM_CHARS = 500
MAX_ARGV = 64
#: A log record, before it is split into lines (each then cut to LOG_LINE_CHARS).
LOG_RECORD_CHARS = 64 * 1024
#: A command's stderr lines are its signature: cut more generously.
STDERR_LINE_CHARS = 2000
#: How far back from a cut :func:`cut_text` looks for the start of the word it split.
CUT_EDGE = 256

#: Leaves of an exception group kept (the wire's MAX_LEAVES), and the ends of
#: each leaf's trace (with the marker, the wire's MAX_LEAF_FRAMES).
MAX_LEAVES = 10
LEAF_OUTER_FRAMES = 2
LEAF_INNER_FRAMES = 13

#: A trace keeps its outermost OUTER_FRAMES and innermost INNER_FRAMES frames;
#: with the cut marker between them that is the wire's 64 (mesh.wire.MAX_FRAMES).
OUTER_FRAMES = 5
INNER_FRAMES = 58


class EventContext:
    """Everything about the process that a report records besides the error.

    A plain keyword-only record rather than a dataclass, for the hand-over's
    import budget (see the module docstring).
    """

    __slots__ = (
        "app", "app_version", "argv", "cwd", "facts", "host", "in_app_exclude",
        "in_app_include", "log_tail", "os", "python",
    )  # fmt: skip

    def __init__(
        self,
        *,
        app: str = "",
        app_version: str = "",
        argv: tuple[str, ...] = (),
        log_tail: tuple[str, ...] = (),
        host: str = "",
        os: str = "",
        python: str = "",
        facts: tuple[tuple[str, str], ...] = (),
        in_app_include: tuple[str, ...] = (),
        in_app_exclude: tuple[str, ...] = (),
        cwd: str = "",
    ) -> None:
        self.app = app
        self.app_version = app_version
        self.argv = argv
        self.log_tail = log_tail
        self.host = host
        self.os = os
        self.python = python
        self.facts = facts
        self.in_app_include = in_app_include
        self.in_app_exclude = in_app_exclude
        self.cwd = cwd


def host_facts() -> dict[str, str]:
    """Host name, OS, Python and cwd, without spawning processes or reading files."""
    uname = os.uname() if hasattr(os, "uname") else None
    system = f"{uname.sysname} {uname.release} {uname.machine}" if uname else sys.platform
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    return {
        "host": uname.nodename if uname else _hostname(),
        "os": system,
        "python": _python_version(),
        "cwd": cwd,
    }


def process_facts() -> tuple[tuple[str, str], ...]:
    """Facts about this process worth a line in the issue (scrubbed later)."""
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    return (("pid", str(os.getpid())), ("cwd", cwd), ("executable", sys.executable))


def process_context(
    *,
    app: str,
    app_version: str,
    log_tail: tuple[str, ...],
    in_app_include: tuple[str, ...],
    in_app_exclude: tuple[str, ...],
) -> EventContext:
    """This process's context: the given settings plus argv, host and process facts."""
    facts = host_facts()
    return EventContext(
        app=app,
        app_version=app_version,
        argv=tuple(sys.argv),
        log_tail=log_tail,
        host=facts["host"],
        os=facts["os"],
        python=facts["python"],
        facts=process_facts(),
        in_app_include=in_app_include,
        in_app_exclude=in_app_exclude,
        cwd=facts["cwd"],
    )


def _hostname() -> str:
    import socket  # only where os.uname() is missing (Windows)

    return socket.gethostname()


def _python_version() -> str:
    """``CPython 3.11.7`` without importing ``platform`` (~6 ms on the error path)."""
    names = {"cpython": "CPython", "pypy": "PyPy"}
    impl = sys.implementation.name
    version = ".".join(str(part) for part in sys.version_info[:3])
    return f"{names.get(impl, impl)} {version}"


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


def _frames(
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
    frames = [_frame(t, ctx) for t in head]
    if total > len(head) + len(tail):
        frames.append(cut_marker(total - len(head) - len(tail)))
    frames.extend(_frame(t, ctx) for t in tail)
    return tuple(frames)


def cut_text(text: str, limit: int) -> str:
    """``text`` cut to fewer than ``limit`` characters, marked, if it is longer.

    Why here: normalising and scrubbing are linear but not cheap (a 10 MB
    message cost ~5 s), and nothing past the bound is ever kept. So the text
    is cut first and only its head is scrubbed; the part left out is never
    emitted. The head ends before the word the cut fell in (looking back at
    most :data:`CUT_EDGE` characters), so the head of a secret that
    straddles the cut (a token, ``password=...``) goes with it, where the
    scrubber could no longer recognise it. An eighth of ``limit`` is left
    free, in UTF-8 bytes, for the marker ``…[cut N of M chars]`` and for
    what scrubbing adds, so the wire's byte bound does not cut the marker off.
    """
    if len(text) <= limit:
        return text
    room = limit - limit // 8 - 40
    head = text[:room]
    data = head.encode("utf-8", "surrogatepass")
    if len(data) > room:
        head = data[:room].decode("utf-8", "ignore")
    if head and not head[-1].isspace() and not text[len(head)].isspace():
        stop = max(0, len(head) - CUT_EDGE)
        end = len(head)
        while end > stop and not head[end - 1].isspace():
            end -= 1
        head = head[:end]
    return f"{head}…[cut {len(text) - len(head)} of {len(text)} chars]"


def cut_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """The first :data:`MAX_ARGV` arguments (a marker last), each cut like text."""
    kept = [
        cut_text(arg, ARGV_ITEM_CHARS)
        for arg in argv[: MAX_ARGV if len(argv) <= MAX_ARGV else MAX_ARGV - 1]
    ]
    if len(argv) > MAX_ARGV:
        kept.append(f"…[cut {len(argv) - len(kept)} arguments]")
    return tuple(kept)


def last_lines(text: str, count: int, limit: int) -> list[str]:
    """The last ``count`` lines of ``text``, each cut by :func:`cut_text`.

    For a huge log record: it looks only at the end of ``text`` (lines end
    at ``\n``), so a 10 MB record costs what its last lines cost, and each
    line's marker counts its own full length.
    """
    out: list[str] = []
    end = len(text) - 1 if text.endswith("\n") else len(text)
    while len(out) < count and end >= 0:
        start = text.rfind("\n", 0, end) + 1
        out.append(cut_text(text[start:end].rstrip("\r"), limit))
        end = start - 1
    out.reverse()
    return out


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


def _group_types() -> tuple[type[BaseException], ...]:
    """``BaseExceptionGroup``: builtin on 3.11+, else the backport if it is loaded."""
    import builtins

    builtin = getattr(builtins, "BaseExceptionGroup", None)
    if builtin is not None:
        return (builtin,)
    backport = sys.modules.get("exceptiongroup")
    group = getattr(backport, "BaseExceptionGroup", None)
    return (group,) if isinstance(group, type) else ()


def _leaves(exc: BaseException, ctx: EventContext) -> tuple[list[LeafData], int, list[int]]:
    """The first :data:`MAX_LEAVES` leaves of a group (depth-first), the rest's count.

    Nested groups are flattened (an explicit stack: no recursion limit, each
    group walked once). Also returns the kept leaves' severities: a group
    is as severe as its worst leaf.
    """
    groups = _group_types()
    if not groups or not isinstance(exc, groups):
        return [], 0, []
    kept: list[LeafData] = []
    severities: list[int] = []
    more = 0
    seen = {id(exc)}
    stack: list[BaseException] = list(reversed(getattr(exc, "exceptions", ())))
    while stack:
        sub = stack.pop()
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        if isinstance(sub, groups):
            stack.extend(reversed(getattr(sub, "exceptions", ())))
        elif len(kept) < MAX_LEAVES:
            frames = _frames(
                sub.__traceback__, ctx, outer=LEAF_OUTER_FRAMES, inner=LEAF_INNER_FRAMES
            )
            kept.append((qualified_name(type(sub)), cut_text(_message(sub), CAUSE_CHARS), frames))
            mro = [qualified_name(c) for c in type(sub).__mro__]
            severities.append(int(severity_for_types(mro)))
        else:
            more += 1
    return kept, more, severities


def exception_event(
    exc: BaseException,
    ctx: EventContext,
    *,
    now: float,
    fingerprint: Sequence[str] | None = None,
) -> Event:
    """The unscrubbed event of ``exc``, in plain values (see :data:`Event`).

    Every free text is already cut to its bound (:func:`cut_text`), and a
    trace to its ends (:func:`_frames`), so what follows costs the same for
    any exception.
    """
    cls = type(exc)
    mro = [qualified_name(c) for c in cls.__mro__]
    leaves, leaves_cut, severities = _leaves(exc, ctx)
    severity = max([int(severity_for_types(mro)), *severities])
    return {
        "kind": "exception",
        "exc_type": qualified_name(cls),
        "message": cut_text(_message(exc), MESSAGE_CHARS),
        "causes": _causes(exc),
        "frames": _frames(exc.__traceback__, ctx),
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
    }


def from_exception(exc: BaseException, ctx: EventContext, *, now: float) -> Report:
    """The unsigned, unscrubbed report of ``exc`` (origin/seq/count come at spool time)."""
    return to_report(exception_event(exc, ctx, now=now))


def _strs(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"event field {name!r}: expected a list of strings")
    return tuple(value)


def to_report(event: Mapping[str, object]) -> Report:
    """The Report of an exception event; unsigned (origin/seq/count come at spool time).

    Validates every field, since an event may come from another process's
    hand-over row: raises ``ValueError`` naming the first bad field.
    """
    from mesh.report import Cause, Frame, Leaf, Report

    def text(name: str) -> str:
        value = event.get(name)
        if not isinstance(value, str):
            raise ValueError(f"event field {name!r}: expected a string")
        return value

    def frames_of(raw_frames: object, name: str) -> tuple[Frame, ...]:
        if not isinstance(raw_frames, (list, tuple)):
            raise ValueError(f"event field {name!r}: expected a list")
        frames: list[Frame] = []
        for f in raw_frames:
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
                    module=f[0], function=f[1], filename=f[2], lineno=f[3], in_app=f[4], line=f[5]
                )
            )
        return tuple(frames)

    if event.get("kind") != "exception":
        raise ValueError("event field 'kind': expected 'exception'")
    frames = frames_of(event.get("frames"), "frames")
    leaves: list[Leaf] = []
    raw_leaves = event.get("leaves", ())  # absent from older hand-over rows
    if not isinstance(raw_leaves, (list, tuple)):
        raise ValueError("event field 'leaves': expected a list")
    for leaf in raw_leaves:
        if not (
            isinstance(leaf, (list, tuple))
            and len(leaf) == 3
            and isinstance(leaf[0], str)
            and isinstance(leaf[1], str)
        ):
            raise ValueError("event field 'leaves': bad leaf")
        leaves.append(Leaf(type=leaf[0], message=leaf[1], frames=frames_of(leaf[2], "leaves")))
    leaves_cut = event.get("leaves_cut", 0)
    if type(leaves_cut) is not int or leaves_cut < 0:
        raise ValueError("event field 'leaves_cut': expected a count")
    causes: list[Cause] = []
    raw_causes = event.get("causes")
    if not isinstance(raw_causes, (list, tuple)):
        raise ValueError("event field 'causes': expected a list")
    for c in raw_causes:
        if not (
            isinstance(c, (list, tuple))
            and len(c) == 3
            and all(isinstance(v, str) for v in c)
            and c[2] in ("cause", "context")
        ):
            raise ValueError("event field 'causes': bad cause")
        causes.append(Cause(type=c[0], message=c[1], relation=c[2]))
    facts = event.get("facts")
    if not isinstance(facts, (list, tuple)) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, str) for v in p)
        for p in facts
    ):
        raise ValueError("event field 'facts': expected a list of pairs of strings")
    timestamp = event.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise ValueError("event field 'timestamp': expected a number")
    severity = event.get("severity")
    if type(severity) is not int or severity not in {int(s) for s in Severity}:
        raise ValueError("event field 'severity': expected a severity level")
    fingerprint = event.get("fingerprint")
    return Report(
        origin=b"",
        seq=0,
        count=0,
        signature=b"",
        kind="exception",
        exc_type=text("exc_type"),
        message=text("message"),
        causes=tuple(causes),
        frames=frames,
        log_tail=_strs(event.get("log_tail"), "log_tail"),
        argv=_strs(event.get("argv"), "argv"),
        app=text("app"),
        app_version=text("app_version"),
        host=text("host"),
        os=text("os"),
        python=text("python"),
        timestamp=float(timestamp),
        severity=Severity(severity),
        facts=tuple((k, v) for k, v in facts),
        fingerprint=None if fingerprint is None else _strs(fingerprint, "fingerprint"),
        leaves=tuple(leaves),
        leaves_cut=leaves_cut,
    )


def from_command(
    argv: Sequence[str],
    *,
    exit_code: int | None,
    signal_number: int | None,
    stderr_tail: Sequence[str],
    ctx: EventContext,
    now: float,
) -> Report:
    """The report of a program run by ``errmesh run`` that failed.

    The "type" names the program and how it ended (``make exited 2``,
    ``server killed by SIGSEGV``); the message is its last error-looking
    stderr line, which is what a person would quote in an issue.
    """
    import signal as signal_module

    from mesh.report import Report
    from mesh.signature import error_lines

    program = os.path.basename(argv[0]) if argv else "?"
    if signal_number is not None:
        try:
            name = signal_module.Signals(signal_number).name
        except ValueError:
            name = f"signal {signal_number}"
        exc_type = f"{program} killed by {name}"
        severity = Severity.HIGH
    else:
        exc_type = f"{program} exited {exit_code}"
        severity = Severity.MEDIUM
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
        argv=cut_argv(argv),
        app=ctx.app or program,
        app_version=ctx.app_version,
        host=ctx.host,
        os=ctx.os,
        python=ctx.python,
        timestamp=now,
        severity=severity,
        exit_code=exit_code,
        signal=signal_number,
        facts=ctx.facts,
    )


def _last_matching_raw(raw: Sequence[str], normalised: str) -> str:
    """The raw line behind a normalised error line (the title shows real text)."""
    from mesh.signature import normalise_message

    for line in reversed(raw):
        if normalise_message(line) == normalised:
            return line.strip()
    return raw[-1].strip() if raw else ""
