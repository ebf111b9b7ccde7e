"""A stateful fake of GitHub's REST API, for the GitHub sink's tests and benchmark.

Quick use::

    app = GitHubApp(repos=["octo-org/octo-repo"], tokens=["test-token"])
    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://github.test")
    # ... or over a real socket, for other processes:
    with serve(app) as url: ...
    assert app.violations == []

Modules: :mod:`.openapi` (GitHub's description as referee), :mod:`.state`
and :mod:`.git` (the repository model), :mod:`.render` (JSON objects),
:mod:`.routes` (one handler per operation), :mod:`.faults`,
:mod:`.ratelimit`, :mod:`.audit`, :mod:`.app` (WSGI), :mod:`.server`,
:mod:`.fixtures` (pytest fixtures).
"""

from .app import GitHubApp, ResetConnection
from .audit import RequestRecord
from .clock import FakeClock
from .errors import ApiError
from .faults import Fault, Faults
from .openapi import Operation, Spec, check_request, check_response, load_spec, match
from .routes import Token
from .server import serve
from .state import COPILOT, AgentAssignment, Repository

__all__ = [
    "COPILOT",
    "AgentAssignment",
    "ApiError",
    "FakeClock",
    "Fault",
    "Faults",
    "GitHubApp",
    "Operation",
    "Repository",
    "RequestRecord",
    "ResetConnection",
    "Spec",
    "Token",
    "check_request",
    "check_response",
    "load_spec",
    "match",
    "serve",
]
