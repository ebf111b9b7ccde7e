"""Where the leader's decisions land: the file sink now, GitHub's REST API next.

Every sink implements :class:`Sink` (open, update, reopen, observe) and
renders issues with :mod:`github_sink.render`, so the file sink and the
GitHub sink show the same issue. Re-exports are lazy (PEP 562).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from github_sink.errors import SinkError, SinkRejected, SinkUnavailable
    from github_sink.file_sink import FileSink
    from github_sink.render import marker, render_body, render_comment, render_title
    from github_sink.sink import IssueState, Sink, execute

_EXPORTS: dict[str, str] = {
    "FileSink": "file_sink",
    "IssueState": "sink",
    "Sink": "sink",
    "SinkError": "errors",
    "SinkRejected": "errors",
    "SinkUnavailable": "errors",
    "execute": "sink",
    "marker": "render",
    "render_body": "render",
    "render_comment": "render",
    "render_title": "render",
}

__all__ = [
    "FileSink",
    "IssueState",
    "Sink",
    "SinkError",
    "SinkRejected",
    "SinkUnavailable",
    "execute",
    "marker",
    "render_body",
    "render_comment",
    "render_title",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'github_sink' has no attribute {name!r}")
    return getattr(importlib.import_module(f"github_sink.{module}"), name)
