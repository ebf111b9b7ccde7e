"""What the GitHub client needs to know, and where the token comes from.

:class:`GitHubSettings` is built once (by the node, from its ``Config``) and
normalised on construction: the API URL loses its trailing slash, the
repository must be ``OWNER/NAME``. The token is kept out of ``repr``.

:func:`find_token` is the one place that looks for a token outside errmesh's
own settings: the variables people already have (``GITHUB_TOKEN`` in
Actions, ``GH_TOKEN`` for the ``gh`` tool) and finally ``gh auth token``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from github_sink.budget import BudgetLimits
from github_sink.retry import RetryLimits

__all__ = ["DEFAULT_API_URL", "TOKEN_VARIABLES", "GitHubSettings", "find_token", "gh_hostname"]

DEFAULT_API_URL = "https://api.github.com"
#: The environment variables :func:`find_token` reads, first found wins.
TOKEN_VARIABLES = ("ERRMESH_GITHUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN")


def default_user_agent() -> str:
    """``errmesh/<installed version>`` (GitHub asks every client for one)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"errmesh/{version('errmesh')}"
    except PackageNotFoundError:
        return "errmesh"


@dataclass(frozen=True, slots=True, kw_only=True)
class GitHubSettings:
    """Everything a :class:`~github_sink.client.GitHubClient` is built from.

    ``api_url`` is ``https://api.github.com``, ``https://HOST/api/v3`` for
    GitHub Enterprise Server or ``https://api.SUBDOMAIN.ghe.com``; request
    paths are joined onto it, path prefix included. ``dry_run`` sends reads
    but only prints writes. Raises ``ValueError`` for a malformed ``repo`` or
    ``api_url`` (``node.config`` validates both before this point).
    """

    repo: str
    token: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    user_agent: str = field(default_factory=default_user_agent)
    timeout: float = 10.0
    budget: BudgetLimits = field(default_factory=BudgetLimits)
    retry: RetryLimits = field(default_factory=RetryLimits)
    dry_run: bool = False
    etag_cache_size: int = 512

    def __post_init__(self) -> None:
        owner, sep, name = self.repo.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"repo {self.repo!r} is not OWNER/NAME (ERRMESH_REPO)")
        url = self.api_url.strip().rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"api_url {url!r} is not an http(s) URL (ERRMESH_GITHUB_API_URL)")
        object.__setattr__(self, "api_url", url)
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    @property
    def owner(self) -> str:
        return self.repo.partition("/")[0]

    @property
    def name(self) -> str:
        return self.repo.partition("/")[2]


def gh_hostname(api_url: str) -> str | None:
    """The host ``gh`` knows an API URL by; None for github.com.

    ``https://HOST/api/v3`` (Enterprise Server) is ``HOST``;
    ``https://api.SUB.ghe.com`` (data residency) is ``SUB.ghe.com``.
    """
    host = (urlsplit(api_url).hostname or "").lower()
    if host in ("", "api.github.com", "github.com"):
        return None
    if host.startswith("api.") and host.endswith(".ghe.com"):
        return host[len("api.") :]
    return host


def find_token(
    env: Mapping[str, str],
    *,
    run_gh: bool = True,
    api_url: str = DEFAULT_API_URL,
    gh_timeout: float = 5.0,
) -> str | None:
    """The GitHub token to use, or None when there is none.

    ``ERRMESH_GITHUB_TOKEN``, then ``GITHUB_TOKEN``, then ``GH_TOKEN`` from
    ``env`` (blank values do not count); then, if ``run_gh``, the output of
    ``gh auth token`` (with ``--hostname`` for an Enterprise ``api_url``),
    run with ``env`` as its environment. A missing ``gh``, a failure, a
    timeout or empty output all give None; nothing is raised.
    """
    for name in TOKEN_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value
    if not run_gh:
        return None
    gh = shutil.which("gh", path=env.get("PATH", os.defpath))
    if gh is None:
        return None
    command = [gh, "auth", "token"]
    host = gh_hostname(api_url)
    if host is not None:
        command += ["--hostname", host]
    try:
        done = subprocess.run(
            command,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=gh_timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    token = done.stdout.strip()
    if done.returncode != 0 or not token or any(c.isspace() for c in token):
        return None
    return token
