"""What to do after one attempt: accept, retry after N seconds, or fail. Pure.

Rules (every retry decision lives here; the client only obeys):

1. 2xx and 304 are accepted.
2. A rate-limit refusal (429 always; 403 with ``retry-after``, with
   ``x-ratelimit-remaining: 0``, or whose message speaks of a rate limit or
   abuse detection) is retried after ``retry-after`` seconds if given, else
   at ``x-ratelimit-reset`` (+ ``reset_margin``) when the primary limit is
   spent, else after ``rate_limit_backoff`` seconds doubling per refusal up
   to ``rate_limit_backoff_cap`` (60, 120, 240, 480, 900, 900...). GitHub
   guarantees a refused request was not carried out, so this is safe for
   every method. Refusals do not count as failures; instead the total wait
   of one request is capped at ``max_rate_limit_wait`` and a wait that would
   pass it fails at once with :class:`RateLimited` (``retry_at`` says when).
3. 5xx answers and transport failures (timeout, connect, reset, protocol)
   are retried with exponential backoff and full jitter: a uniform draw in
   ``[0, min(backoff_cap, backoff_base * 2**failures))``, at least any
   ``retry-after`` GitHub sent; after ``max_attempts`` attempts in all they
   fail with :class:`GitHubUnavailable`. A request that is not idempotent
   (a POST: it may have created an issue or comment before the answer was
   lost) is retried only after ``connect`` failures, which never reached
   GitHub; otherwise it fails at once with ``maybe_applied=True`` so the
   caller looks before it creates again.
4. Every other status fails at once with the error that names what to fix:
   401 :class:`BadCredentials`, 403 :class:`PermissionDenied`, 404
   :class:`NotFound`, 409 :class:`Conflict`, 410 :class:`IssuesDisabled`,
   422 :class:`ValidationFailed`, anything else
   :class:`UnexpectedResponse`.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from github_sink.budget import get_header
from github_sink.errors import (
    BadCredentials,
    Conflict,
    GitHubError,
    GitHubUnavailable,
    IssuesDisabled,
    NotFound,
    PermissionDenied,
    RateLimited,
    UnexpectedResponse,
    ValidationFailed,
)

__all__ = [
    "Accept",
    "Answer",
    "Decision",
    "Fail",
    "Outcome",
    "RequestInfo",
    "Retry",
    "RetryLimits",
    "RetryState",
    "TransportFailure",
    "decide",
    "error_for_status",
    "github_message",
    "is_rate_limited",
    "retry_after_seconds",
]

#: What a person does about a missing or bad token.
TOKEN_HINT = "set ERRMESH_GITHUB_TOKEN (or GITHUB_TOKEN / GH_TOKEN, or `gh auth login`)"
TransportKind = Literal["timeout", "connect", "reset", "protocol"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryLimits:
    """How hard the client tries (seconds; see the module rules)."""

    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    rate_limit_backoff: float = 60.0
    rate_limit_backoff_cap: float = 900.0
    max_rate_limit_wait: float = 900.0
    reset_margin: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("backoff_base", "backoff_cap", "rate_limit_backoff", "max_rate_limit_wait"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestInfo:
    """The request an outcome belongs to, for decisions and error messages."""

    method: str
    route: str
    repo: str
    idempotent: bool = True


@dataclass(frozen=True, slots=True)
class Answer:
    """GitHub answered: status, headers (case-insensitive or lower-case keys), JSON body."""

    status: int
    headers: Mapping[str, str]
    body: Any = None


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """No answer: ``connect`` never reached GitHub; the others may have."""

    kind: TransportKind
    detail: str = ""


Outcome = Answer | TransportFailure


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryState:
    """What one request went through so far."""

    attempts: int = 0  # attempts made, this one included once decided
    failures: int = 0  # 5xx answers and transport failures
    refusals: int = 0  # rate-limit refusals (the client may carry a streak over)
    waited: float = 0.0  # seconds spent waiting on rate limits


@dataclass(frozen=True, slots=True)
class Accept:
    """Hand the answer to the caller."""

    state: RetryState


@dataclass(frozen=True, slots=True)
class Retry:
    """Send again after ``delay`` seconds; ``rate_limited`` pauses every request."""

    delay: float
    state: RetryState
    reason: str
    rate_limited: bool = False


@dataclass(frozen=True, slots=True)
class Fail:
    """Raise ``error``."""

    error: GitHubError


Decision = Accept | Retry | Fail


def decide(
    outcome: Outcome,
    state: RetryState,
    *,
    request: RequestInfo,
    limits: RetryLimits,
    now: float,
    rng: random.Random,
) -> Decision:
    """The decision after one attempt (see the module rules)."""
    state = replace(state, attempts=state.attempts + 1)
    if isinstance(outcome, TransportFailure):
        return _transient(outcome.kind, outcome.detail, None, {}, state, request, limits, now, rng)
    status = outcome.status
    if 200 <= status < 300 or status == 304:
        return Accept(state)
    message = github_message(outcome.body)
    if is_rate_limited(status, outcome.headers, message):
        return _refused(outcome, message, state, request, limits, now)
    if status >= 500:
        detail = f"{status} {message}".strip()
        return _transient(
            "server", detail, status, outcome.headers, state, request, limits, now, rng
        )
    return Fail(error_for_status(status, request, outcome.body))


def is_rate_limited(status: int, headers: Mapping[str, str], message: str) -> bool:
    """True when a 403/429 is a rate-limit refusal rather than a permission problem."""
    if status == 429:
        return True
    if status != 403:
        return False
    if (
        get_header(headers, "retry-after") is not None
        or get_header(headers, "x-ratelimit-remaining") == "0"
    ):
        return True
    low = message.lower()
    return "rate limit" in low or "abuse" in low


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``retry-after`` header as seconds from ``now`` (delta seconds or an HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def github_message(body: Any) -> str:
    """GitHub's ``message`` from an error body ("" when there is none)."""
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str):
            return message
    return ""


def _refused(
    answer: Answer,
    message: str,
    state: RetryState,
    request: RequestInfo,
    limits: RetryLimits,
    now: float,
) -> Decision:
    headers = answer.headers
    wait = retry_after_seconds(get_header(headers, "retry-after"), now)
    if wait is None and get_header(headers, "x-ratelimit-remaining") == "0":
        reset = _float(get_header(headers, "x-ratelimit-reset"))
        if reset is not None and reset + limits.reset_margin > now:
            wait = reset + limits.reset_margin - now
    if wait is None:
        backoff = limits.rate_limit_backoff * 2.0 ** min(state.refusals, 32)
        wait = min(limits.rate_limit_backoff_cap, backoff)
    state = replace(state, refusals=state.refusals + 1)
    what = f"{request.method} {request.route} was refused by a GitHub rate limit ({answer.status}"
    what += f": {message})" if message else ")"
    if state.waited + wait > limits.max_rate_limit_wait:
        return Fail(
            RateLimited(
                f"{what}; retry after {wait:.0f} s (errmesh waits at most "
                f"{limits.max_rate_limit_wait:.0f} s per request)",
                retry_at=now + wait,
                status=answer.status,
                method=request.method,
                route=request.route,
                github_message=message,
            )
        )
    state = replace(state, waited=state.waited + wait)
    return Retry(wait, state, what, rate_limited=True)


def _transient(
    kind: str,
    detail: str,
    status: int | None,
    headers: Mapping[str, str],
    state: RetryState,
    request: RequestInfo,
    limits: RetryLimits,
    now: float,
    rng: random.Random,
) -> Decision:
    state = replace(state, failures=state.failures + 1)
    what = _describe_transient(kind, detail)
    reached = kind != "connect"
    maybe_applied = reached and not request.idempotent

    def give_up(reason: str) -> Fail:
        return Fail(
            GitHubUnavailable(
                f"{request.method} {request.route} failed: {what}; {reason}",
                attempts=state.attempts,
                maybe_applied=maybe_applied,
                status=status,
                method=request.method,
                route=request.route,
                github_message=detail if status is not None else "",
            )
        )

    if maybe_applied:
        return give_up("not retried because it may have been carried out (look before retrying)")
    if state.failures >= limits.max_attempts:
        return give_up(f"gave up after {state.attempts} attempts (try again later)")
    ceiling = min(limits.backoff_cap, limits.backoff_base * 2.0 ** min(state.failures - 1, 62))
    delay = rng.uniform(0.0, ceiling)
    hinted = retry_after_seconds(get_header(headers, "retry-after"), now) if status else None
    if hinted is not None:
        if hinted > limits.max_rate_limit_wait:
            return give_up(f"GitHub asks to retry after {hinted:.0f} s")
        delay = max(delay, hinted)
    return Retry(delay, state, f"{request.method} {request.route}: {what}")


def _describe_transient(kind: str, detail: str) -> str:
    names = {
        "server": "GitHub answered",
        "timeout": "timed out",
        "connect": "could not connect",
        "reset": "the connection broke",
        "protocol": "HTTP protocol error",
    }
    text = names.get(kind, kind)
    return f"{text} ({detail})" if detail else text


def error_for_status(status: int, request: RequestInfo, body: Any) -> GitHubError:
    """The error for a status that is never retried, naming what to fix."""
    message = github_message(body)
    where = f"{request.method} {request.route}"
    said = f"{status} {message}".strip()
    common: dict[str, Any] = {
        "status": status,
        "method": request.method,
        "route": request.route,
        "github_message": message,
    }
    if status == 401:
        return BadCredentials(f"bad GitHub token ({where} answered {said}): {TOKEN_HINT}", **common)
    if status == 403:
        return PermissionDenied(
            f"the token lacks permission for {where} (answered {said}): it needs issues: "
            "write on the repository (and contents: write, pull-requests: write for "
            "ERRMESH_AUTO_PR)",
            **common,
        )
    if status == 404:
        repo_route = f"/repos/{request.repo}"
        if request.route.rstrip("/").lower() == repo_route.lower():
            text = (
                f"repository {request.repo} not found or not visible to this token: check "
                "ERRMESH_REPO (and ERRMESH_GITHUB_API_URL for GitHub Enterprise)"
            )
        else:
            text = (
                f"{where} answered {said}: it does not exist, or repository {request.repo} "
                "is not visible to this token (check ERRMESH_REPO)"
            )
        return NotFound(text, **common)
    if status == 409:
        return Conflict(f"{where} answered {said}: the repository changed meanwhile", **common)
    if status == 410:
        return IssuesDisabled(
            f"issues are disabled on repository {request.repo} ({where} answered {said}): "
            "enable Issues in its settings, or set ERRMESH_SINK=file",
            **common,
        )
    if status == 422:
        errors = _errors(body)
        listed = "; ".join(_describe_error(e) for e in errors)
        text = f"GitHub refused {where} as invalid ({said})"
        return ValidationFailed(f"{text}: {listed}" if listed else text, errors=errors, **common)
    if status in (301, 302, 307, 308):
        return UnexpectedResponse(
            f"{where} was redirected ({status}): repository {request.repo} was probably renamed "
            "or transferred; update ERRMESH_REPO",
            **common,
        )
    return UnexpectedResponse(f"{where} answered {said}, which errmesh does not expect", **common)


def _errors(body: Any) -> list[Mapping[str, Any]]:
    if not isinstance(body, Mapping):
        return []
    errors = body.get("errors")
    if not isinstance(errors, list):
        return []
    return [e if isinstance(e, Mapping) else {"message": str(e)} for e in errors]


def _describe_error(error: Mapping[str, Any]) -> str:
    if isinstance(error.get("message"), str) and error["message"]:
        return str(error["message"])
    parts = [str(error.get(k)) for k in ("resource", "field", "code") if error.get(k)]
    return " ".join(parts) or "invalid"


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
