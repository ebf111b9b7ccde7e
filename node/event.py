"""Build a :class:`~mesh.report.Report` from an exception or a failed command.

This is sentry-python's ``event_from_exception`` for errmesh: it turns live
objects (an exception and its traceback, a process's exit status) into plain
data before anything else happens. It reads source lines through
``linecache`` and nothing else; scrubbing, signing and spooling come after.

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
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from mesh.report import Cause, Frame, Report
from mesh.severity import Severity, severity_for_types

__all__ = [
    "EventContext",
    "from_command",
    "from_exception",
    "host_facts",
    "process_facts",
    "qualified_name",
]

_OWN_PACKAGES = ("mesh", "node", "github_sink")
_MAX_CHAIN = 8
_MAX_WALK = 256  # frames walked per traceback; wire keeps the innermost 64


@dataclass(frozen=True, slots=True, kw_only=True)
class EventContext:
    """Everything about the process that a report records besides the error."""

    app: str = ""
    app_version: str = ""
    argv: tuple[str, ...] = ()
    log_tail: tuple[str, ...] = ()
    host: str = ""
    os: str = ""
    python: str = ""
    facts: tuple[tuple[str, str], ...] = ()
    in_app_include: tuple[str, ...] = ()
    in_app_exclude: tuple[str, ...] = ()
    cwd: str = ""


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


def qualified_name(cls: type) -> str:
    """``module.QualName``, or just ``QualName`` for builtins."""
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", None) or cls.__name__
    return name if module in ("builtins", "__builtin__", "exceptions") else f"{module}.{name}"


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


def _frames(tb: TracebackType | None, ctx: EventContext) -> tuple[Frame, ...]:
    frames: list[Frame] = []
    while tb is not None and len(frames) < _MAX_WALK:
        frame = tb.tb_frame
        code = frame.f_code
        path = code.co_filename
        module = str(frame.f_globals.get("__name__", "") or "")
        function = getattr(code, "co_qualname", code.co_name)
        lineno = tb.tb_lineno or 0
        is_library, relative = _PATHS.get(path, ctx.cwd)
        frames.append(
            Frame(
                module=module,
                function=function,
                filename=relative,
                lineno=lineno,
                in_app=_in_app(module, path, is_library, ctx),
                line=linecache.getline(path, lineno, frame.f_globals).strip(),
            )
        )
        tb = tb.tb_next
    return tuple(frames)


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break capture
        text = "<unprintable exception>"
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = repr(exc.args[0])
    return text


def _causes(exc: BaseException) -> tuple[Cause, ...]:
    out: list[Cause] = []
    seen = {id(exc)}
    current: BaseException | None = exc
    while current is not None and len(out) < _MAX_CHAIN:
        if current.__cause__ is not None:
            nxt, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            nxt, relation = current.__context__, "context"
        else:
            break
        if id(nxt) in seen:
            break
        seen.add(id(nxt))
        out.append(
            Cause(type=qualified_name(type(nxt)), message=_message(nxt), relation=relation)  # type: ignore[arg-type]
        )
        current = nxt
    return tuple(out)


def from_exception(exc: BaseException, ctx: EventContext, *, now: float) -> Report:
    """The unsigned, unscrubbed report of ``exc`` (origin/seq/count come at spool time)."""
    cls = type(exc)
    mro = [qualified_name(c) for c in cls.__mro__]
    return Report(
        origin=b"",
        seq=0,
        count=0,
        signature=b"",
        kind="exception",
        exc_type=qualified_name(cls),
        message=_message(exc),
        causes=_causes(exc),
        frames=_frames(exc.__traceback__, ctx),
        log_tail=ctx.log_tail,
        argv=ctx.argv,
        app=ctx.app,
        app_version=ctx.app_version,
        host=ctx.host,
        os=ctx.os,
        python=ctx.python,
        timestamp=now,
        severity=severity_for_types(mro),
        facts=ctx.facts,
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
        argv=tuple(argv),
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
