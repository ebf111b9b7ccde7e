"""Where the leader's decisions land: a folder of Markdown files, or GitHub.

Every sink implements :class:`Sink` (open, update, reopen, observe) and
renders issues with :mod:`github_sink.render`, so the file sink and the
GitHub sink show the same issue. Re-exports are lazy (PEP 562).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from github_sink.budget import Budget, BudgetLimits
    from github_sink.client import GitHubClient
    from github_sink.errors import (
        BadCredentials,
        Conflict,
        FixerError,
        GitHubError,
        GitHubUnavailable,
        IssuesDisabled,
        NotFound,
        PatchError,
        PermissionDenied,
        RateLimited,
        SinkError,
        SinkRejected,
        SinkUnavailable,
        UnexpectedResponse,
        ValidationFailed,
    )
    from github_sink.file_sink import FileSink
    from github_sink.github import GitHubSink, GitHubSinkOptions
    from github_sink.outbox import Outbox
    from github_sink.render import (
        marker,
        render_body,
        render_brief,
        render_comment,
        render_title,
    )
    from github_sink.response import GitHubResponse
    from github_sink.retry import RetryLimits
    from github_sink.settings import GitHubSettings, find_token
    from github_sink.sink import FollowUps, IssueState, Numbering, Paced, Replica, Sink, execute

_EXPORTS: dict[str, str] = {
    "BadCredentials": "errors",
    "Budget": "budget",
    "BudgetLimits": "budget",
    "Conflict": "errors",
    "FileSink": "file_sink",
    "FixerError": "errors",
    "FollowUps": "sink",
    "GitHubClient": "client",
    "GitHubError": "errors",
    "GitHubResponse": "response",
    "GitHubSettings": "settings",
    "GitHubSink": "github",
    "GitHubSinkOptions": "github",
    "GitHubUnavailable": "errors",
    "IssueState": "sink",
    "IssuesDisabled": "errors",
    "NotFound": "errors",
    "Numbering": "sink",
    "Outbox": "outbox",
    "Paced": "sink",
    "PatchError": "errors",
    "PermissionDenied": "errors",
    "RateLimited": "errors",
    "Replica": "sink",
    "RetryLimits": "retry",
    "Sink": "sink",
    "SinkError": "errors",
    "SinkRejected": "errors",
    "SinkUnavailable": "errors",
    "UnexpectedResponse": "errors",
    "ValidationFailed": "errors",
    "execute": "sink",
    "find_token": "settings",
    "marker": "render",
    "render_body": "render",
    "render_brief": "render",
    "render_comment": "render",
    "render_title": "render",
}

__all__ = [
    "BadCredentials",
    "Budget",
    "BudgetLimits",
    "Conflict",
    "FileSink",
    "FixerError",
    "FollowUps",
    "GitHubClient",
    "GitHubError",
    "GitHubResponse",
    "GitHubSettings",
    "GitHubSink",
    "GitHubSinkOptions",
    "GitHubUnavailable",
    "IssueState",
    "IssuesDisabled",
    "NotFound",
    "Numbering",
    "Outbox",
    "Paced",
    "PatchError",
    "PermissionDenied",
    "RateLimited",
    "Replica",
    "RetryLimits",
    "Sink",
    "SinkError",
    "SinkRejected",
    "SinkUnavailable",
    "UnexpectedResponse",
    "ValidationFailed",
    "execute",
    "find_token",
    "marker",
    "render_body",
    "render_brief",
    "render_comment",
    "render_title",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'github_sink' has no attribute {name!r}")
    return getattr(importlib.import_module(f"github_sink.{module}"), name)
