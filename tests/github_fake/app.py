"""``GitHubApp``: the fake GitHub REST API as one WSGI callable.

The same object runs in-process (``httpx.WSGITransport(app=app)``) and behind
a real socket (:func:`.server.serve`), so a test picks speed or realism
without changing what it asserts.

Theory of operation, per request, in this order:

1. check it against GitHub's OpenAPI description; problems are recorded in
   ``violations`` (whatever happens next, a test fails on them);
2. an outage in force: 502;
3. authentication (``Authorization: Bearer T`` or ``token T``): 401;
4. a violation: 422 ``Invalid request`` (404 for an unknown route);
5. unknown repository: 404; mutation with a read-only token: 403;
6. primary rate limit exhausted: 403 with ``x-ratelimit-remaining: 0``;
7. an injected fault (:mod:`.faults`);
8. the handler (:mod:`.routes`), then ``ETag`` / ``If-None-Match`` (304,
   which does not count against the limit), pagination ``Link`` headers;
9. the answer is checked against the documented response schema; a
   mismatch is a violation too, answered 500 so it cannot go unnoticed.

Every answer carries the ``x-ratelimit-*`` headers; every request is
recorded in ``requests`` with the clock's time, for counters and the
budget audit. State changes are serialised by one lock; ``max_concurrent``
counts requests in flight, lock or not.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from . import audit, render
from .audit import RequestRecord
from .errors import DOCS
from .faults import SECONDARY_MESSAGE, Fault, Faults
from .openapi import Operation, Spec, load_spec
from .ratelimit import RateLimits
from .routes import Request, Token, dispatch
from .state import AgentAssignment, Ids, MissingLabels, Repository

#: environ key our server sets: a threading.Event set when it shuts down.
SERVER_KEY = "github_fake.stopping"

StartResponse = Callable[..., Any]
ErrorFactory = Callable[[], BaseException]

DEFAULT_TRANSPORT_ERRORS: Mapping[str, ErrorFactory] = {
    "timeout": lambda: TimeoutError("github_fake: timeout fault (no answer)"),
    "reset": lambda: ConnectionResetError(104, "github_fake: connection reset fault"),
}

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ResetConnection(Exception):
    """Raised to our server's handler: reset the socket, send nothing."""


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None


def _error(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, "documentation_url": DOCS, **extra, "status": str(status)}


class GitHubApp:
    """A stateful GitHub for tests: WSGI app, repository model, referee and recorder.

    ``repos`` are ``owner/name`` strings (each gets a ``main`` branch with a
    README); ``tokens`` are token strings or :class:`Token` values (read-only
    or not user-to-server). ``clock`` drives rate-limit windows, timestamps,
    search lag and the audit. ``prefix`` serves the API under a path, as
    GitHub Enterprise Server does (``/api/v3``). ``transport_errors`` maps
    ``"timeout"`` and ``"reset"`` to the exception raised in-process for
    those faults (see :mod:`.fixtures` for httpx's own).
    """

    def __init__(
        self,
        *,
        repos: Iterable[str] = ("octo-org/octo-repo",),
        tokens: Iterable[str | Token] = ("test-token",),
        clock: Callable[[], float] = time.time,
        rate_limit: int = 5000,
        search_rate_limit: int = 30,
        prefix: str = "",
        strict_fields: bool = True,
        missing_labels: MissingLabels = "drop",
        search_lag: float = 60.0,
        collaborators: Iterable[str] = (),
        validate_responses: bool = True,
        transport_errors: Mapping[str, ErrorFactory] = DEFAULT_TRANSPORT_ERRORS,
        spec: Spec | None = None,
    ) -> None:
        self.clock = clock
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.spec = spec or load_spec()
        self.strict_fields = strict_fields
        self.validate_responses = validate_responses
        self.transport_errors = dict(transport_errors)
        self.tokens: dict[str, Token] = {}
        for token in tokens:
            self.add_token(token)
        self._ids = Ids()
        self._repo_options: dict[str, Any] = {
            "missing_labels": missing_labels,
            "search_lag": search_lag,
            "assignable": {*collaborators, *(t.login for t in self.tokens.values())},
        }
        self.repos: dict[str, Repository] = {}
        for full_name in repos:
            self.add_repo(full_name)
        self.rate_limits = RateLimits(clock, core=rate_limit, search=search_rate_limit)
        self.faults = Faults(clock, self.rate_limits)
        self.violations: list[str] = []
        self.requests: list[RequestRecord] = []
        self.max_concurrent = 0
        self._in_flight = 0
        self._lock = threading.RLock()
        self._count_lock = threading.Lock()

    # -- configuration -------------------------------------------------

    def add_token(self, token: str | Token) -> Token:
        """Accept one more token; its login becomes assignable in every repository."""
        value = token if isinstance(token, Token) else Token(token)
        self.tokens[value.value] = value
        for repo in getattr(self, "repos", {}).values():
            repo.assignable.add(value.login)
        return value

    def add_repo(self, full_name: str, *, default_branch: str = "main") -> Repository:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"a repository is owner/name, not {full_name!r}")
        repo = Repository(
            owner,
            name,
            ids=self._ids,
            now=self.clock(),
            default_branch=default_branch,
            **self._repo_options,
        )
        self.repos[full_name.lower()] = repo
        return repo

    def repo(self, full_name: str | None = None) -> Repository:
        """A repository by ``owner/name`` (the only one when omitted)."""
        if full_name is None:
            if len(self.repos) != 1:
                raise ValueError("several repositories: name one")
            return next(iter(self.repos.values()))
        return self.repos[full_name.lower()]

    def down_until(self, until: float) -> None:
        """An outage: 502 to every request until ``until`` on the app's clock."""
        self.faults.down_until(until)

    # -- what happened -------------------------------------------------

    @property
    def agent_assignments(self) -> list[AgentAssignment]:
        """Every Copilot assignment that took effect, with the object sent."""
        return [a for repo in self.repos.values() for a in repo.agent_assignments]

    def count(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        status: int | None = None,
        fault: str | None = None,
    ) -> int:
        """How many requests matched (``route``: template, with or without the method)."""
        with self._lock:
            return audit.count(self.requests, method, route, status=status, fault=fault)

    def budget_violations(
        self, per_minute: int = 80, per_hour: int = 500, min_interval: float = 1.0
    ) -> list[RequestRecord]:
        """Mutating requests that broke the pacing GitHub asks of a bot."""
        with self._lock:
            found = audit.budget_violations(
                self.requests, per_minute=per_minute, per_hour=per_hour, min_interval=min_interval
            )
        return [record for record, _ in found]

    def budget_report(
        self, per_minute: int = 80, per_hour: int = 500, min_interval: float = 1.0
    ) -> list[str]:
        """:meth:`budget_violations`, as readable lines for an assertion message."""
        with self._lock:
            found = audit.budget_violations(
                self.requests, per_minute=per_minute, per_hour=per_hour, min_interval=min_interval
            )
        return [f"{r.route} at {r.time:.3f}: {why}" for r, why in found]

    def report(self) -> dict[str, Any]:
        """A JSON summary for processes that only see the fake over HTTP."""
        with self._lock:
            routes: dict[str, int] = {}
            for r in self.requests:
                routes[r.route] = routes.get(r.route, 0) + 1
            return {
                "violations": list(self.violations),
                "requests": len(self.requests),
                "routes": routes,
                "max_concurrent": self.max_concurrent,
                "budget_violations": self.budget_report(),
            }

    # -- WSGI ----------------------------------------------------------

    @contextmanager
    def _flight(self) -> Iterator[None]:
        with self._count_lock:
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
        try:
            yield
        finally:
            with self._count_lock:
                self._in_flight -= 1

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        stopping: threading.Event | None = environ.get(SERVER_KEY)
        with self._flight():
            with self._lock:
                answer = self._respond(environ)
            fault = answer.fault
            if fault is not None and fault.kind in ("timeout", "reset"):
                if stopping is None:
                    raise self.transport_errors[fault.kind]()
                if fault.kind == "reset":
                    raise ResetConnection()
                stopping.wait(fault.seconds)
            status = f"{answer.status} {REASONS.get(answer.status, 'Status')}"
            payload = b"" if answer.body is None else json.dumps(answer.body).encode()
            headers = dict(answer.headers)
            if answer.body is not None:
                headers["Content-Type"] = "application/json; charset=utf-8"
            start_response(status, list(headers.items()))
            return [payload]

    def _respond(self, environ: dict[str, Any]) -> _Answer:
        method = environ["REQUEST_METHOD"].upper()
        raw_path = environ.get("PATH_INFO") or "/"
        if SERVER_KEY in environ:  # wsgiref decodes the path as latin-1 (PEP 3333)
            raw_path = raw_path.encode("latin-1").decode("utf-8", "replace")
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw_body = environ["wsgi.input"].read(length) if length else b""
        if raw_path.startswith(f"{self.prefix}/_fake/"):
            return self._admin(method, raw_path[len(self.prefix) :], raw_body)

        now = self.clock()
        scheme = environ.get("wsgi.url_scheme", "http")
        host = (
            environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
        )
        urls = render.Urls(api=f"{scheme}://{host}{self.prefix}", web=f"{scheme}://{host}")
        path = raw_path[len(self.prefix) :] if raw_path.startswith(self.prefix + "/") else raw_path
        if self.prefix and not raw_path.startswith(self.prefix + "/"):
            problems = [f"{method} {raw_path}: unknown path (the API is under {self.prefix})"]
            found = None
        else:
            query_lists: dict[str, list[str]] = {}
            for k, v in query:
                query_lists.setdefault(k, []).append(v)
            problems = self.spec.check_request(
                method, path, query_lists, headers, raw_body, strict_fields=self.strict_fields
            )
            found = self.spec.match(method, path)
        op = found[0] if found else None
        route = op.route if op else f"{method} {raw_path}"
        self.violations.extend(problems)

        answer = self._decide(
            method, path, query, headers, raw_body, op, found, problems, now, urls
        )
        if op is not None and self.validate_responses and answer.body is not None:
            wrong = self.spec.check_response(op, answer.status, answer.body)
            if wrong:
                self.violations.extend(f"answer: {w}" for w in wrong)
                body = _error(500, "github_fake answered off-schema", errors=wrong)
                answer = _Answer(500, body, answer.headers, fault=answer.fault)
        fault = answer.fault
        status = None if fault is not None and fault.kind == "reset" else answer.status
        self.requests.append(
            RequestRecord(now, method, route, raw_path, status, fault.kind if fault else None)
        )
        answer.headers.setdefault("x-github-request-id", f"FAKE:{len(self.requests):08X}")
        answer.headers.setdefault("x-github-api-version-selected", "2022-11-28")
        return answer

    def _decide(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        raw_body: bytes,
        op: Operation | None,
        found: tuple[Operation, dict[str, str]] | None,
        problems: list[str],
        now: float,
        urls: render.Urls,
    ) -> _Answer:
        token = self._authenticate(headers.get("authorization"))
        resource = "search" if path.startswith("/search/") else "core"
        bucket = self.rate_limits.bucket(token.value if token else None, resource)
        outage = self.faults.current_outage()
        if outage is not None:
            return _Answer(502, _error(502, "Server Error"), bucket.headers(), fault=outage)
        if token is None:
            bucket.used += 1
            message = (
                "Bad credentials" if headers.get("authorization") else "Requires authentication"
            )
            return _Answer(401, _error(401, message), bucket.headers())

        counted = op is None or op.operation_id != "rate-limit/get"
        if counted and bucket.remaining == 0:
            message = f"API rate limit exceeded for user ID {render.user_id(token.login)}."
            return _Answer(403, _error(403, message), bucket.headers())
        if counted:
            bucket.used += 1
        rate_headers = bucket.headers()

        if problems or found is None or op is None:
            status = 404 if op is None else 422
            errors = [{"code": "invalid", "message": p} for p in problems]
            message = "Not Found" if op is None else "Invalid request"
            return _Answer(status, _error(status, message, errors=errors), rate_headers)

        params = found[1]
        repo = None
        if "owner" in params:
            repo = self.repos.get(f"{params['owner']}/{params['repo']}".lower())
            if repo is None:
                return _Answer(404, _error(404, "Not Found"), rate_headers)
        if token.read_only and method != "GET":
            message = "Resource not accessible by personal access token"
            return _Answer(403, _error(403, message), rate_headers)

        fault = self.faults.take(method, op.route)
        if fault is not None and not fault.apply:
            refusal = self._refusal(fault, rate_headers)
            if refusal is not None:
                return refusal

        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None  # a body sent to an operation that takes none
        request = Request(
            operation_id=op.operation_id,
            path=path,
            params=params,
            query=query,
            body=body,
            repo=repo,
            repos=list(self.repos.values()),
            token=token,
            now=now,
            urls=urls,
            limits=self.rate_limits,
        )
        reply = dispatch(request)
        answer = _Answer(reply.status, reply.body, {**rate_headers, **reply.headers}, fault=fault)
        if method == "GET" and reply.status == 200:
            answer = self._conditional(answer, headers.get("if-none-match"), bucket, counted)
        return answer

    def _refusal(self, fault: Fault, rate_headers: dict[str, str]) -> _Answer | None:
        """The answer a refusing fault gives; None for timeout/reset (decided in __call__)."""
        if fault.kind == "error":
            status = fault.status or 500
            message = "Server Error" if status >= 500 else "Injected error"
            return _Answer(status, _error(status, message), rate_headers, fault=fault)
        if fault.kind == "secondary":
            status = fault.status or 403
            headers = dict(rate_headers)
            if fault.retry_after is not None:
                headers["retry-after"] = str(fault.retry_after)
            body = _error(status, SECONDARY_MESSAGE)
            body["documentation_url"] = (
                "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
                "#about-secondary-rate-limits"
            )
            return _Answer(status, body, headers, fault=fault)
        if fault.kind == "timeout":
            return _Answer(
                504,
                _error(504, "We couldn't respond to your request in time."),
                rate_headers,
                fault=fault,
            )
        return _Answer(502, _error(502, "Server Error"), rate_headers, fault=fault)

    def _conditional(
        self, answer: _Answer, if_none_match: str | None, bucket: Any, counted: bool
    ) -> _Answer:
        etag = (
            'W/"' + hashlib.sha1(json.dumps(answer.body, sort_keys=True).encode()).hexdigest() + '"'
        )
        answer.headers["ETag"] = etag
        if if_none_match is None:
            return answer
        offered = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        if etag.removeprefix("W/") in offered or "*" in offered:
            if counted:
                bucket.used -= 1  # a 304 does not count against the limit
            headers = {k: v for k, v in answer.headers.items() if k != "Link"}
            headers.update(bucket.headers())
            return _Answer(304, None, headers, fault=answer.fault)
        return answer

    def _authenticate(self, header: str | None) -> Token | None:
        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        return self.tokens.get(value.strip())

    def _admin(self, method: str, path: str, raw_body: bytes) -> _Answer:
        """``GET /_fake/report``: what the fake saw, for clients in other processes."""
        if method == "GET" and path == "/_fake/report":
            return _Answer(200, self.report())
        return _Answer(404, _error(404, "Not Found"))
