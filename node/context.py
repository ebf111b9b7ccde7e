"""What a report records about the process besides the error.

The host facts are read without spawning processes, reading files or
importing ``platform``/``socket``/``dataclasses``: they are taken on a
failing process's way out, and on the hand-over path's import budget
(node/handover.py).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from node.scope import Scope

__all__ = ["EventContext", "host_facts", "process_context", "process_facts"]


class EventContext:
    """Everything about the process that a report records besides the error.

    A plain keyword-only record rather than a dataclass, for the hand-over's
    import budget (see the module docstring).
    """

    __slots__ = (
        "app", "app_version", "argv", "contexts", "cwd", "environment", "facts", "host",
        "in_app_exclude", "in_app_include", "log_tail", "os", "python", "release",
        "source_context", "tags",
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
        tags: tuple[tuple[str, str], ...] = (),
        contexts: tuple[tuple[str, str], ...] = (),
        environment: str = "",
        release: str = "",
        source_context: bool = True,
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
        self.tags = tags
        self.contexts = contexts
        self.environment = environment
        self.release = release
        #: Whether frames carry the lines around them (the setting, node/source.py).
        self.source_context = source_context


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
    scope: Scope | None = None,
    environment: str = "",
    release: str = "",
    source_context: bool = True,
) -> EventContext:
    """This process's context: the given settings and scope, plus argv, host and process facts.

    ``release``: the setting; empty, the scope's package release stands in.
    """
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
        tags=scope.tags if scope else (),
        contexts=scope.contexts if scope else (),
        environment=environment,
        release=release or (scope.package_release if scope else ""),
        source_context=source_context,
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
