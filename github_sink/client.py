"""The one place in errmesh that talks to GitHub.

Layered like httpx's own client, each layer a function of the one below::

    endpoints (rest.RepoEndpoints: create_issue, list_issues...)
      -> request: dry run | ETag cache | token check       (this module)
        -> attempts: budget wait, send, observe, decide     (this module)
          -> budget.Budget (when)   retry.decide (what next)  [pure]
            -> httpx.Client (the only IO)

The leader calls it from a worker thread; a lock keeps at most one request
in flight per client, which GitHub's best practices ask for and the budget
relies on. Time and randomness are injected (``clock``, ``sleep``, ``rng``)
so tests run GitHub's worst days in virtual time.

Conditional requests: a GET's ``ETag`` is kept per (path, query) in a small
LRU; the next GET of the same page sends ``If-None-Match`` and a 304 (which
costs no rate limit) is answered from the cache, marked ``from_cache``.

Dry run (``settings.dry_run``): reads are sent (they need a token), writes
are printed and answered by :func:`github_sink.dryrun.synthetic_answer`.

The token is only ever put in the ``Authorization`` header of a request: it
is not in any repr, log line, dry-run print or exception (each exception is
redacted once more before it leaves).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TextIO

import httpx

from github_sink.budget import Budget, is_mutating
from github_sink.dryrun import format_write, synthetic_answer, synthetic_read
from github_sink.errors import (
    BadCredentials,
    GitHubError,
    NotFound,
    RateLimited,
    Superseded,
    UnexpectedResponse,
)
from github_sink.response import GitHubResponse, Params
from github_sink.rest import RepoEndpoints
from github_sink.retry import (
    TOKEN_HINT,
    Accept,
    Answer,
    Fail,
    Outcome,
    RequestInfo,
    RetryState,
    TransportFailure,
    TransportKind,
    decide,
)
from github_sink.settings import GitHubSettings

__all__ = ["GitHubClient", "next_link"]

log = logging.getLogger("errmesh.github")

_CacheKey = tuple[str, tuple[tuple[str, str], ...]]
_LINK = re.compile(r"<([^>]*)>\s*((?:;[^,<]*)*)")
_REL = re.compile(r"""rel\s*=\s*"?([^";]*)"?""")
API_VERSION = "2022-11-28"


class GitHubClient(RepoEndpoints):
    """A rate-limited, retrying, conditional GitHub REST client for one repository.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests);
    ``clock`` must return epoch seconds (GitHub's reset header is epoch
    seconds); ``sleep`` waits; ``rng`` draws the backoff jitter;
    ``dry_run_stream`` receives dry-run prints (default: ``sys.stderr``).
    ``on_write`` hears the send time of every mutating request, so the pace
    can outlive this client (the sink keeps it in its outbox).
    Close it (or use it as a context manager) to release the connections.
    """

    def __init__(
        self,
        settings: GitHubSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        dry_run_stream: TextIO | None = None,
        on_write: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.budget = Budget(settings.budget)
        self._on_write = on_write
        #: Asked right before every write; False stops it (``Superseded``). The
        #: mesh sets it to "this peer still leads", so a leader that lost its
        #: election mid-round sends nothing more, not even after a budget wait.
        self.gate: Callable[[], bool] | None = None
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._stream = dry_run_stream
        self._lock = threading.Lock()
        self._cache: OrderedDict[_CacheKey, GitHubResponse] = OrderedDict()
        self._refusal_streak = 0
        #: (kind, status class) -> requests sent (``github_sink.sink.SinkUsage``);
        #: written under the request lock, copied by readers in other threads.
        self.requests: dict[tuple[str, str], int] = {}
        self._base = httpx.URL(settings.api_url + "/")
        self._http = httpx.Client(
            base_url=self._base,
            transport=transport,
            timeout=settings.timeout,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": settings.user_agent,
            },
        )

    def __repr__(self) -> str:
        s = self.settings
        return f"<GitHubClient {s.repo} at {s.api_url}{' (dry run)' if s.dry_run else ''}>"

    def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def url(self, path: str, params: Params | None = None) -> str:
        """The full URL of ``path`` under the API base (for messages and dry runs)."""
        return str(self._http.build_request("GET", _relative(path), params=params).url)

    # -- request ----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        etag: str | None = None,
        idempotent: bool | None = None,
    ) -> GitHubResponse:
        """Send one REST request, within the budget, retried as ``retry`` decides.

        ``path`` is under the API base (``/repos/o/r/issues``). GETs are
        conditional on the cached ETag (or ``etag``). ``idempotent`` (default:
        every method but POST) says whether a request that may have reached
        GitHub can be sent again. Raises the errors of :mod:`github_sink.errors`:
        ``SinkUnavailable`` kinds when later may work, ``SinkRejected`` kinds
        when a setting must change.
        """
        method = method.upper()
        route = path if path.startswith("/") else f"/{path}"
        info = RequestInfo(
            method=method,
            route=route,
            repo=self.settings.repo,
            idempotent=method != "POST" if idempotent is None else idempotent,
        )
        with self._lock:
            try:
                if self.settings.dry_run and is_mutating(method):
                    return self._pretend(info, params, json)
                if self.settings.dry_run and not self.settings.token:
                    return self._pretend_read(info)
                if not self.settings.token:
                    raise BadCredentials(
                        f"no GitHub token for {method} {route}: {TOKEN_HINT}",
                        method=method,
                        route=route,
                    )
                return self._send(info, params, json, etag)
            except GitHubError as exc:
                exc._redact(self.settings.token or "")
                raise

    def wait_for_write(self) -> None:
        """Sleep until the budget would let a write go now (nothing is recorded).

        A caller that reads before it writes (is this comment already there?)
        waits first, so that its read is fresh when the write follows at once.
        """
        if self.settings.dry_run:
            return
        info = RequestInfo(method="POST", route="(next write)", repo=self.settings.repo)
        with self._lock:
            self._wait_for_budget(info, RetryState(refusals=self._refusal_streak))

    def paginate(self, path: str, params: Params | None = None) -> Iterator[Any]:
        """Every item of a list endpoint, following ``Link: rel="next"`` page by page.

        Each page is a conditional GET of its own. A next link outside the
        API base is not followed (the token goes nowhere else); a link back
        to a page already read raises ``UnexpectedResponse``.
        """
        route: str = path
        query: Params | None = params
        seen = {_cache_key(route, query)}
        while True:
            page = self.request("GET", route, params=query)
            if not isinstance(page.json, list):
                raise UnexpectedResponse(
                    f"GET {route} answered {page.status} without a JSON list",
                    status=page.status,
                    method="GET",
                    route=route,
                )
            yield from page.json
            link = next_link(page.headers.get("link"))
            if link is None:
                return
            route, query = self._under_base(link, route)
            key = _cache_key(route, query)
            if key in seen:
                raise UnexpectedResponse(
                    f"GET {route}: pagination links back to a page already read",
                    method="GET",
                    route=route,
                )
            seen.add(key)

    # -- the layers under request -------------------------------------------------

    def _send(
        self, info: RequestInfo, params: Params | None, body: Any, etag: str | None
    ) -> GitHubResponse:
        key = _cache_key(info.route, params) if info.method == "GET" else None
        cached = self._cache.get(key) if key is not None else None
        headers = {"Authorization": f"Bearer {self.settings.token}"}
        if etag is None and cached is not None:
            etag = cached.etag
        if etag is not None and info.method == "GET":
            headers["If-None-Match"] = etag
        if cached is not None and cached.etag != etag:
            cached = None
        state = RetryState(refusals=self._refusal_streak)
        while True:
            state = self._wait_for_budget(info, state)
            if self.gate is not None and is_mutating(info.method) and not self.gate():
                raise Superseded(f"{info.method} {info.route} not sent: no longer the leader")
            sent_at = self._clock()
            self.budget.record(info.method, sent_at)
            if self._on_write is not None and is_mutating(info.method):
                self._on_write(sent_at)  # persisted, so the next leader process keeps the pace
            outcome, response, cause = self._attempt(info, params, body, headers)
            now = self._clock()
            self.budget.finished(info.method, now)
            decision = decide(
                outcome, state, request=info, limits=self.settings.retry, now=now, rng=self._rng
            )
            if isinstance(decision, Accept):
                self._refusal_streak = 0
                assert isinstance(outcome, Answer) and response is not None
                return self._accept(info, key, cached, response, outcome.body)
            if isinstance(decision, Fail):
                if isinstance(decision.error, RateLimited):
                    self._refusal_streak += 1
                    self.budget.pause_until(decision.error.retry_at)
                raise decision.error from cause
            state = decision.state
            if decision.rate_limited:
                self._refusal_streak = state.refusals
                self.budget.pause_until(now + decision.delay)
            reason = _scrub(decision.reason, self.settings.token)
            log.info("%s; retrying in %.1f s", reason, decision.delay)
            self._sleep(decision.delay)

    def _wait_for_budget(self, info: RequestInfo, state: RetryState) -> RetryState:
        """Sleep until the budget lets ``info`` go; fail fast past the wait cap."""
        limit = self.settings.retry.max_rate_limit_wait
        while True:
            now = self._clock()
            wait = self.budget.delay(info.method, now)
            if wait <= 0:
                return state
            if state.waited + wait > limit:
                raise RateLimited(
                    f"{info.method} {info.route} is held back {wait:.0f} s by GitHub's rate "
                    f"limits (errmesh waits at most {limit:.0f} s per request); try again later",
                    retry_at=now + wait,
                    method=info.method,
                    route=info.route,
                )
            self._sleep(wait)
            state = dataclasses.replace(state, waited=state.waited + wait)

    def _attempt(
        self, info: RequestInfo, params: Params | None, body: Any, headers: dict[str, str]
    ) -> tuple[Outcome, httpx.Response | None, BaseException | None]:
        """One HTTP exchange; the only call into httpx that sends."""
        try:
            response = self._http.request(
                info.method,
                _relative(info.route),
                params=params,
                json=body,
                headers=headers,
                # A renamed repository answers reads with 301; httpx would turn
                # a redirected POST into a GET, so writes are never redirected.
                follow_redirects=info.method == "GET",
            )
        except httpx.TooManyRedirects as exc:
            raise UnexpectedResponse(
                f"{info.method} {info.route}: too many redirects (check ERRMESH_GITHUB_API_URL)",
                method=info.method,
                route=info.route,
            ) from exc
        except httpx.RequestError as exc:
            self._count(info.method, "transport")
            detail = _scrub(f"{type(exc).__name__}: {exc}", self.settings.token)
            return TransportFailure(_kind(exc), detail), None, exc
        self._count(info.method, f"{response.status_code // 100}xx")
        self.budget.observe(response.headers, self._clock())
        return Answer(response.status_code, response.headers, _decode(response)), response, None

    def _accept(
        self,
        info: RequestInfo,
        key: _CacheKey | None,
        cached: GitHubResponse | None,
        response: httpx.Response,
        data: Any,
    ) -> GitHubResponse:
        etag = response.headers.get("etag")
        if response.status_code == 304:
            if cached is not None:
                return dataclasses.replace(cached, from_cache=True)
            return GitHubResponse(304, None, response.headers, etag)
        if data is None and response.content:
            kind = response.headers.get("content-type", "no content type")
            raise UnexpectedResponse(
                f"{info.method} {info.route} answered {response.status_code} with {kind}, "
                "not JSON: check ERRMESH_GITHUB_API_URL (GitHub Enterprise Server: "
                "https://HOST/api/v3)",
                status=response.status_code,
                method=info.method,
                route=info.route,
            )
        result = GitHubResponse(response.status_code, data, response.headers, etag)
        if key is not None and response.status_code == 200 and etag:
            self._cache[key] = result
            self._cache.move_to_end(key)
            while len(self._cache) > self.settings.etag_cache_size:
                self._cache.popitem(last=False)
        return result

    def _pretend(self, info: RequestInfo, params: Params | None, body: Any) -> GitHubResponse:
        """A dry-run write: print it, send nothing, answer plausibly."""
        stream = self._stream or sys.stderr
        stream.write(format_write(info.method, self.url(info.route, params), body))
        stream.flush()
        self._count(info.method, "dry_run")
        status, data = synthetic_answer(info.method, info.route, body)
        return GitHubResponse(status, data, {}, None, dry_run=True)

    def _pretend_read(self, info: RequestInfo) -> GitHubResponse:
        """A dry run without a token reads nothing: the repository looks empty."""
        self._count(info.method, "dry_run")
        status, data = synthetic_read(info.route, self.settings.repo)
        if status == 404:
            raise NotFound(
                f"{info.method} {info.route}: nothing there in a dry run without a token",
                status=404,
                method=info.method,
                route=info.route,
            )
        return GitHubResponse(status, data, {}, None, dry_run=True)

    def _count(self, method: str, status: str) -> None:
        key = ("write" if is_mutating(method) else "read", status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def _under_base(self, link: str, route: str) -> tuple[str, dict[str, str | int]]:
        """A next-page link as (path under the API base, query); refuses other hosts."""
        url = httpx.URL(link)
        base = self._base
        base_path = base.raw_path.decode("ascii")
        path = url.raw_path.decode("ascii").partition("?")[0]
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port) or not (
            path.startswith(base_path)
        ):
            raise UnexpectedResponse(
                f"GET {route}: the next page is outside ERRMESH_GITHUB_API_URL "
                f"({url.scheme}://{url.host}{path}); not following it",
                method="GET",
                route=route,
            )
        return "/" + path[len(base_path) :], dict(url.params.items())


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header, if any."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        for rel in _REL.finditer(match.group(2)):
            if "next" in rel.group(1).split():
                return match.group(1)
    return None


def _relative(route: str) -> str:
    # httpx joins a relative path onto base_url's path (".../api/v3/").
    return route.lstrip("/")


def _cache_key(route: str, params: Params | None) -> _CacheKey:
    items = tuple(sorted((str(k), str(v)) for k, v in (params or {}).items()))
    return route, items


def _decode(response: httpx.Response) -> Any:
    """The JSON body; None when it is empty or not JSON (a proxy's HTML page)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _kind(exc: httpx.RequestError) -> TransportKind:
    """Which transport failure: ``connect`` means the request never left."""
    if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ConnectError)):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ProtocolError):
        return "protocol"
    if isinstance(exc, httpx.NetworkError):
        return "reset"
    return "protocol"


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "[redacted]") if token else text
