"""Every exception the ``github_sink`` package raises.

::

    SinkError                     an action could not be carried out
    ├── SinkUnavailable           transient: retry later (outage, lock, full disk)
    │   ├── RateLimited           GitHub (or our own budget) says wait; see .retry_at
    │   └── GitHubUnavailable     5xx, timeouts, connection errors after the retries
    ├── SinkRejected              permanent: fix the setting named in the message
    │   ├── BadCredentials        401, or no token at all
    │   ├── PermissionDenied      403 that is not a rate limit
    │   ├── NotFound              404 (repository, issue, ref, file...)
    │   ├── Conflict              409 (a file's sha moved, an empty repository)
    │   ├── IssuesDisabled        410
    │   ├── ValidationFailed      422; .errors, .already_exists
    │   ├── UnexpectedResponse    any other status, or an answer that is not JSON
    │   ├── FixerError            the configured fixer command failed
    │   └── PatchError            the fixer's diff does not apply
    └── GitHubError               mixed into every class above that names GitHub:
                                  .status, .method, .route, .github_message

The leader keeps an action whose sink raised ``SinkUnavailable`` for the next
round; ``SinkRejected`` is reported once and not retried. Catch
``GitHubError`` to read what GitHub answered.

No message ever holds the token: messages are built from the method, the
route (the path under the API base), the repository name and GitHub's own
``message``, and the client redacts the token again before raising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BadCredentials",
    "Conflict",
    "FixerError",
    "GitHubError",
    "GitHubUnavailable",
    "IssuesDisabled",
    "NotFound",
    "PatchError",
    "PermissionDenied",
    "RateLimited",
    "SinkError",
    "SinkRejected",
    "SinkUnavailable",
    "UnexpectedResponse",
    "ValidationFailed",
]


class SinkError(Exception):
    """Base of every sink exception."""


class SinkUnavailable(SinkError):
    """The sink failed for now; the same action may succeed later."""


class SinkRejected(SinkError):
    """The sink refused the action for good (bad token, missing repository...)."""


class GitHubError(SinkError):
    """What GitHub answered to one request (or that it could not be asked).

    ``status`` is None when no answer came (transport failure, missing token);
    ``route`` is the path under the API base, e.g. ``/repos/o/r/issues``.
    """

    def __init__(
        self,
        text: str,
        *,
        status: int | None = None,
        method: str = "",
        route: str = "",
        github_message: str = "",
    ) -> None:
        super().__init__(text)
        self.status = status
        self.method = method
        self.route = route
        self.github_message = github_message

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def _redact(self, secret: str) -> None:
        """Replace ``secret`` everywhere in this error (the client's last guard)."""
        if not secret:
            return
        self.args = tuple(
            a.replace(secret, "[redacted]") if isinstance(a, str) else a for a in self.args
        )
        self.github_message = self.github_message.replace(secret, "[redacted]")


class RateLimited(GitHubError, SinkUnavailable):
    """A rate limit holds this request back until ``retry_at`` (clock seconds)."""

    def __init__(self, text: str, *, retry_at: float, **kwargs: Any) -> None:
        super().__init__(text, **kwargs)
        self.retry_at = retry_at


class GitHubUnavailable(GitHubError, SinkUnavailable):
    """GitHub could not be reached or failed (5xx) ``attempts`` times.

    ``maybe_applied`` is True when a non-idempotent request (a POST) may have
    reached GitHub before it failed: look before creating again.
    """

    def __init__(
        self, text: str, *, attempts: int = 1, maybe_applied: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(text, **kwargs)
        self.attempts = attempts
        self.maybe_applied = maybe_applied


class Superseded(SinkUnavailable):
    """This process stopped leading before a write: the new leader will do it."""


class BadCredentials(GitHubError, SinkRejected):
    """The token is missing, wrong or expired (401)."""


class PermissionDenied(GitHubError, SinkRejected):
    """The token may not do this (403 that is not a rate limit)."""


class NotFound(GitHubError, SinkRejected):
    """404: the thing does not exist, or the token may not see it."""


class Conflict(GitHubError, SinkRejected):
    """409: the state moved under us (a file's sha, an empty repository)."""


class IssuesDisabled(GitHubError, SinkRejected):
    """410: the repository has issues turned off."""


class ValidationFailed(GitHubError, SinkRejected):
    """422: GitHub refused the request's content; ``errors`` says why."""

    def __init__(
        self, text: str, *, errors: Sequence[Mapping[str, Any]] = (), **kwargs: Any
    ) -> None:
        super().__init__(text, **kwargs)
        self.errors: tuple[Mapping[str, Any], ...] = tuple(errors)

    @property
    def already_exists(self) -> bool:
        """True when the thing being created exists (a label, a ref, a pull request).

        GitHub says so with ``code: already_exists`` in ``errors`` (labels) or
        only in ``message`` ("Reference already exists", "A pull request
        already exists for ...").
        """
        if any(e.get("code") == "already_exists" for e in self.errors):
            return True
        texts = [self.github_message, *(str(e.get("message", "")) for e in self.errors)]
        return any("already exists" in t.lower() for t in texts)


class UnexpectedResponse(GitHubError, SinkRejected):
    """A status the client has no rule for, or an answer that is not JSON."""


class FixerError(SinkRejected):
    """The fixer command (``ERRMESH_FIXER``) failed, timed out or printed no diff."""


class PatchError(SinkRejected):
    """The fixer's output is not a unified diff that applies to the branch."""
