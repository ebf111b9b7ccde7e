"""Pytest fixtures for the fake GitHub (loaded by the repository's root conftest).

- ``github_app``: a fresh :class:`.GitHubApp` (repo ``octo-org/octo-repo``,
  token ``test-token``, real clock); at teardown the test fails if any
  request it received is one GitHub would refuse (``app.violations``).
- ``github_url``: the same app served on loopback; yields the base URL.
- ``github_client``: an ``httpx.Client`` talking to ``github_app``
  in-process, authenticated, with GitHub's usual headers.

In-process faults raise httpx's own exceptions (``HTTPX_TRANSPORT_ERRORS``):
a ``timeout`` fault is ``httpx.ReadTimeout`` and a ``reset`` is
``httpx.ReadError``, what the client gets from the real server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import httpx
import pytest

from .app import ErrorFactory, GitHubApp
from .server import serve

TOKEN = "test-token"
REPO = "octo-org/octo-repo"
HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "Authorization": f"Bearer {TOKEN}",
}

HTTPX_TRANSPORT_ERRORS: Mapping[str, ErrorFactory] = {
    "timeout": lambda: httpx.ReadTimeout("github_fake: timeout fault (no answer)"),
    "reset": lambda: httpx.ReadError("github_fake: connection reset fault"),
}


def assert_no_violations(app: GitHubApp) -> None:
    """Fail with every request GitHub would have refused, and every off-schema answer."""
    if app.violations:
        lines = "\n  ".join(app.violations)
        raise AssertionError(f"{len(app.violations)} request(s) GitHub would refuse:\n  {lines}")


@pytest.fixture
def github_app() -> Iterator[GitHubApp]:
    app = GitHubApp(repos=[REPO], tokens=[TOKEN], transport_errors=HTTPX_TRANSPORT_ERRORS)
    yield app
    assert_no_violations(app)


@pytest.fixture
def github_url(github_app: GitHubApp) -> Iterator[str]:
    with serve(github_app) as url:
        yield url


@pytest.fixture
def github_client(github_app: GitHubApp) -> Iterator[httpx.Client]:
    transport = httpx.WSGITransport(app=github_app)
    with httpx.Client(
        transport=transport, base_url="http://github.test", headers=HEADERS
    ) as client:
        yield client
