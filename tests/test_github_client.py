"""The GitHub client against a scripted GitHub, in virtual time.

``Scripted`` plays GitHub through ``httpx.MockTransport``: it answers from a
script (responses, or exceptions to raise) and records every request. The
clock only moves when the client sleeps, and ``sleeps`` records each wait, so
"waits exactly 37 s" is an equality and no test really waits.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from conftest import ROOT
from github_sink.budget import BudgetLimits
from github_sink.client import GitHubClient, next_link
from github_sink.errors import (
    BadCredentials,
    GitHubError,
    GitHubUnavailable,
    NotFound,
    PermissionDenied,
    RateLimited,
    SinkRejected,
    UnexpectedResponse,
    ValidationFailed,
)
from github_sink.retry import RetryLimits
from github_sink.settings import GitHubSettings, find_token, gh_hostname

T0 = 1_700_000_000.0
TOKEN = "ghp_TOPsecret0123456789abcdefTOPsecret"
API = "https://api.github.com"
REPO_URL = f"{API}/repos/octo/app"

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Ceiling(random.Random):
    """Full jitter drawing the top of its range: backoff waits read as 1, 2, 4..."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclass
class Scripted:
    """A GitHub that answers from ``script`` in order, then 200 ``{}``; records requests."""

    clock: Clock
    script: list[Reply] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.sent_at.append(self.clock())
        reply = self.script.pop(0) if self.script else httpx.Response(200, json={})
        if isinstance(reply, Exception):
            raise reply
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(request)
        return reply

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


@dataclass
class World:
    clock: Clock
    github: Scripted
    sleeps: list[float]
    stream: io.StringIO
    make: Callable[..., GitHubClient]


@pytest.fixture
def world() -> Iterator[World]:
    clock = Clock()
    github = Scripted(clock)
    sleeps: list[float] = []
    stream = io.StringIO()
    clients: list[GitHubClient] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    def make(**overrides: Any) -> GitHubClient:
        settings = {"repo": "octo/app", "token": TOKEN, **overrides}
        client = GitHubClient(
            GitHubSettings(**settings),
            transport=httpx.MockTransport(github),
            clock=clock,
            sleep=sleep,
            rng=Ceiling(),
            dry_run_stream=stream,
        )
        clients.append(client)
        return client

    yield World(clock, github, sleeps, stream, make)
    for client in clients:
        client.close()


def ok(body: Any = None, status: int = 200, **headers: str) -> httpx.Response:
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.Response(status, json={} if body is None else body, headers=hdrs)


def refused(status: int, message: str = "", **headers: str) -> httpx.Response:
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.Response(status, json={"message": message}, headers=hdrs)


def assert_no_token(error: BaseException) -> None:
    texts = [str(error), repr(error), *map(str, error.args)]
    if isinstance(error, GitHubError):
        texts.append(error.github_message)
    if error.__cause__ is not None:
        texts += [str(error.__cause__), repr(error.__cause__)]
    assert not any(TOKEN in t for t in texts)


# -- what every request carries ---------------------------------------------------------


def test_requests_carry_githubs_headers_and_the_token_only_in_authorization(world: World) -> None:
    world.make().get_repo()
    (request,) = world.github.requests
    assert request.url == REPO_URL
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"].startswith("errmesh/")


def test_enterprise_server_paths_join_onto_the_api_prefix(world: World) -> None:
    client = world.make(api_url="https://ghe.example.com/api/v3/")
    client.get_repo()
    client.get_contents("src/a b.py", ref="errmesh/fix-1")
    assert [str(r.url) for r in world.github.requests] == [
        "https://ghe.example.com/api/v3/repos/octo/app",
        "https://ghe.example.com/api/v3/repos/octo/app/contents/src/a%20b.py?ref=errmesh%2Ffix-1",
    ]


def test_the_token_is_in_no_repr(world: World) -> None:
    client = world.make()
    for text in (repr(client), str(client), repr(client.settings), str(client.settings)):
        assert TOKEN not in text
    assert "octo/app" in repr(client)


def test_without_a_token_nothing_is_sent_and_the_error_says_where_to_set_one(
    world: World,
) -> None:
    with pytest.raises(BadCredentials, match="ERRMESH_GITHUB_TOKEN") as caught:
        world.make(token=None).get_repo()
    assert world.github.requests == []
    assert "gh auth login" in str(caught.value)


# -- the budget --------------------------------------------------------------------------


def test_writes_go_one_second_apart_and_reads_do_not_wait(world: World) -> None:
    client = world.make()
    client.create_comment(1, "a")
    client.get_issue(1)
    client.create_comment(1, "b")
    client.create_comment(1, "c")
    assert world.sleeps == [1.0, 1.0]
    assert world.github.sent_at == [T0, T0, T0 + 1, T0 + 2]


def test_writes_wait_for_the_minute_window(world: World) -> None:
    client = world.make(budget=BudgetLimits(per_minute=2, min_interval=0))
    for n in range(3):
        client.create_comment(1, str(n))
    assert world.sleeps == [60.0]
    assert world.github.sent_at == [T0, T0, T0 + 60]


def test_a_spent_primary_limit_waits_until_the_reset(world: World) -> None:
    reset = str(int(T0 + 120))
    world.github.script = [ok(x_ratelimit_remaining="0", x_ratelimit_reset=reset)]
    client = world.make()
    client.get_repo()
    client.get_repo()
    assert world.sleeps == [121.0]  # the reset, plus a second for clock differences


def test_a_wait_beyond_the_cap_fails_at_once_with_when_to_retry(world: World) -> None:
    reset = str(int(T0 + 3000))
    world.github.script = [ok(x_ratelimit_remaining="0", x_ratelimit_reset=reset)]
    client = world.make()
    client.get_repo()
    with pytest.raises(RateLimited) as caught:
        client.create_issue("t", "b")
    assert caught.value.retry_at == T0 + 3001
    assert world.sleeps == [] and len(world.github.requests) == 1


# -- rate-limit refusals -------------------------------------------------------------------


def test_a_secondary_limit_with_retry_after_waits_exactly_that(world: World) -> None:
    world.github.script = [
        refused(403, "You have exceeded a secondary rate limit", retry_after="37"),
        ok({"number": 7}, 201),
    ]
    issue = world.make().create_issue("title", "body")
    assert issue["number"] == 7
    assert world.sleeps == [37.0]
    assert len(world.github.requests) == 2


def test_a_refusal_holds_back_the_next_requests_too(world: World) -> None:
    world.github.script = [refused(429, retry_after="10")]
    client = world.make()
    client.get_repo()
    assert world.sleeps == [10.0]
    assert world.github.sent_at == [T0, T0 + 10]


def test_403_with_a_spent_primary_limit_waits_for_the_reset(world: World) -> None:
    reset = str(int(T0 + 300))
    world.github.script = [
        refused(403, "API rate limit exceeded", x_ratelimit_remaining="0", x_ratelimit_reset=reset)
    ]
    world.make().get_repo()
    # The budget learnt the reset from the refusal's headers and waits for it.
    assert sum(world.sleeps) == pytest.approx(301)
    assert world.github.sent_at[-1] == pytest.approx(T0 + 301)


def test_429_without_hints_backs_off_from_a_minute(world: World) -> None:
    world.github.script = [refused(429), refused(429)]
    world.make().get_repo()
    assert world.sleeps == [60.0, 120.0]


# -- transient failures ----------------------------------------------------------------------


def test_server_errors_are_retried_with_backoff_then_succeed(world: World) -> None:
    world.github.script = [refused(500), refused(502), ok({"default_branch": "main"})]
    assert world.make().get_repo()["default_branch"] == "main"
    assert world.sleeps == [1.0, 2.0]


def test_the_client_gives_up_after_max_attempts(world: World) -> None:
    world.github.script = [refused(503)] * 10
    with pytest.raises(GitHubUnavailable) as caught:
        world.make(retry=RetryLimits(max_attempts=4)).get_repo()
    assert len(world.github.requests) == 4
    assert world.sleeps == [1.0, 2.0, 4.0]
    assert caught.value.attempts == 4
    assert_no_token(caught.value)


def test_timeouts_and_connection_errors_are_retried(world: World) -> None:
    world.github.script = [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected"),
        ok({"number": 3}),
    ]
    assert world.make().get_issue(3)["number"] == 3
    assert world.sleeps == [1.0, 2.0, 4.0]


def test_a_post_that_may_have_reached_github_is_not_sent_twice(world: World) -> None:
    world.github.script = [httpx.ReadTimeout("read timed out")]
    with pytest.raises(GitHubUnavailable) as caught:
        world.make().create_issue("t", "b")
    assert caught.value.maybe_applied
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(world.github.requests) == 1


def test_a_post_that_never_connected_is_sent_again(world: World) -> None:
    world.github.script = [httpx.ConnectError("refused"), ok({"number": 1}, 201)]
    assert world.make().create_issue("t", "b")["number"] == 1
    assert len(world.github.requests) == 2


def test_creating_a_label_is_retried_a_duplicate_is_refused_anyway(world: World) -> None:
    world.github.script = [refused(502), ok({"name": "errmesh"}, 201)]
    world.make().create_label("errmesh", "#5319e7", "Reported by errmesh")
    assert world.github.bodies()[-1] == {
        "name": "errmesh",
        "color": "5319e7",
        "description": "Reported by errmesh",
    }


def test_retries_are_logged_without_the_token(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.github.script = [httpx.ConnectError(f"refused Bearer {TOKEN}"), ok()]
    with caplog.at_level(logging.INFO, logger="errmesh.github"):
        world.make().get_repo()
    assert "retrying in 1.0 s" in caplog.text
    assert TOKEN not in caplog.text


# -- permanent refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error", "names"),
    [
        (refused(401, "Bad credentials"), BadCredentials, "ERRMESH_GITHUB_TOKEN"),
        (refused(404, "Not Found"), NotFound, "ERRMESH_REPO"),
        (
            refused(403, "Resource not accessible by integration", x_ratelimit_remaining="4000"),
            PermissionDenied,
            "issues: write",
        ),
        (
            httpx.Response(
                422,
                json={
                    "message": "Validation Failed",
                    "errors": [{"resource": "Repository", "code": "custom", "message": "nope"}],
                },
            ),
            ValidationFailed,
            "nope",
        ),
    ],
)
def test_client_errors_are_not_retried_and_name_the_setting(
    world: World, reply: httpx.Response, error: type[SinkRejected], names: str
) -> None:
    world.github.script = [reply]
    with pytest.raises(error) as caught:
        world.make().get_repo()
    assert names in str(caught.value)
    assert len(world.github.requests) == 1 and world.sleeps == []
    assert_no_token(caught.value)


def test_a_renamed_repository_is_followed_for_reads_but_not_for_writes(world: World) -> None:
    moved = f"{API}/repositories/42"
    world.github.script = [
        httpx.Response(301, headers={"location": moved}),
        ok({"full_name": "octo/renamed"}),
        httpx.Response(307, headers={"location": f"{moved}/issues"}),
    ]
    client = world.make()
    assert client.get_repo()["full_name"] == "octo/renamed"
    with pytest.raises(UnexpectedResponse, match="renamed or transferred; update ERRMESH_REPO"):
        client.create_issue("t", "b")
    assert [(r.method, str(r.url)) for r in world.github.requests] == [
        ("GET", REPO_URL),
        ("GET", moved),
        ("POST", f"{REPO_URL}/issues"),
    ]


def test_an_answer_that_is_not_json_points_at_the_api_url(world: World) -> None:
    world.github.script = [httpx.Response(200, text="<html>sign in</html>")]
    with pytest.raises(UnexpectedResponse, match="ERRMESH_GITHUB_API_URL"):
        world.make().get_repo()


def test_a_token_echoed_by_a_server_is_redacted(world: World) -> None:
    world.github.script = [refused(401, f"token {TOKEN} is revoked")]
    with pytest.raises(BadCredentials) as caught:
        world.make().get_repo()
    assert_no_token(caught.value)
    assert "[redacted]" in str(caught.value)


# -- conditional requests and pagination ------------------------------------------------------


def test_an_unchanged_page_is_answered_from_the_etag_cache(world: World) -> None:
    world.github.script = [
        ok({"number": 5, "title": "boom"}, etag='W/"v1"'),
        httpx.Response(304, headers={"etag": 'W/"v1"'}),
    ]
    client = world.make()
    first = client.request("GET", "/repos/octo/app/issues/5")
    second = client.request("GET", "/repos/octo/app/issues/5")
    assert second.json == first.json == {"number": 5, "title": "boom"}
    assert second.from_cache and not first.from_cache
    assert "if-none-match" not in world.github.requests[0].headers
    assert world.github.requests[1].headers["if-none-match"] == 'W/"v1"'


def test_the_etag_cache_is_per_query(world: World) -> None:
    world.github.script = [ok([], etag='"open"'), ok([], etag='"closed"')]
    client = world.make()
    client.request("GET", "/repos/octo/app/issues", params={"state": "open"})
    client.request("GET", "/repos/octo/app/issues", params={"state": "closed"})
    assert all("if-none-match" not in r.headers for r in world.github.requests)


def link(url: str) -> str:
    return f'<{url}>; rel="next", <{API}/repositories/1/issues?page=9>; rel="last"'


def test_listing_follows_next_links_and_each_page_is_conditional(world: World) -> None:
    page2 = f"{API}/repositories/1/issues?labels=errmesh&state=all&per_page=100&page=2"
    world.github.script = [
        ok([{"number": 1}, {"number": 2}], etag='"p1"', link=link(page2)),
        ok([{"number": 3}], etag='"p2"'),
        httpx.Response(304),
        httpx.Response(304),
    ]
    client = world.make()
    first = client.list_issues(labels="errmesh")
    again = client.list_issues(labels=["errmesh"])
    assert [i["number"] for i in first] == [1, 2, 3] == [i["number"] for i in again]
    urls = [str(r.url) for r in world.github.requests]
    assert urls[0] == f"{REPO_URL}/issues?state=all&per_page=100&labels=errmesh"
    assert urls[1] == page2
    assert [r.headers.get("if-none-match") for r in world.github.requests] == [
        None,
        None,
        '"p1"',
        '"p2"',
    ]


def test_a_next_link_to_another_host_is_not_followed(world: World) -> None:
    world.github.script = [ok([{"number": 1}], link=link("https://evil.example/steal?page=2"))]
    with pytest.raises(UnexpectedResponse, match="outside ERRMESH_GITHUB_API_URL"):
        world.make().list_labels()
    assert len(world.github.requests) == 1


def test_enterprise_pagination_keeps_the_prefix(world: World) -> None:
    base = "https://ghe.example.com/api/v3"
    world.github.script = [
        ok([{"name": "a"}], link=link(f"{base}/repositories/1/labels?page=2")),
        ok([{"name": "b"}]),
    ]
    labels = world.make(api_url=base).list_labels()
    assert len(labels) == 2
    assert str(world.github.requests[1].url) == f"{base}/repositories/1/labels?page=2"


def test_next_link_parsing() -> None:
    assert next_link(None) is None
    assert next_link('<https://x/a?page=3>; rel="prev"') is None
    assert next_link('<https://x/a?page=1>; rel="prev", <https://x/a?page=3>; rel="next"') == (
        "https://x/a?page=3"
    )


# -- dry run ---------------------------------------------------------------------------------


def test_dry_run_prints_writes_sends_reads_and_answers_plausibly(world: World) -> None:
    client = world.make(dry_run=True)
    client.get_repo()
    issue = client.create_issue("[errmesh] boom", "body", labels=["errmesh", "bug"])
    client.update_issue(issue["number"], state="closed", state_reason="completed")
    assert [r.method for r in world.github.requests] == ["GET"]
    assert issue["number"] == 0 and issue["html_url"] == "dry-run" and issue["dry_run"]
    assert issue["labels"] == [{"name": "errmesh"}, {"name": "bug"}]
    printed = world.stream.getvalue()
    assert f"[errmesh dry-run] POST {REPO_URL}/issues\n" in printed
    assert '"title": "[errmesh] boom"' in printed
    assert f"[errmesh dry-run] PATCH {REPO_URL}/issues/0\n" in printed
    assert TOKEN not in printed and "Bearer" not in printed


def test_dry_run_answers_the_draft_pr_flow(world: World) -> None:
    client = world.make(dry_run=True)
    ref = client.create_ref("errmesh/fix-abc", "a" * 40)
    put = client.put_contents(".errmesh/abc.md", "brief", b"# brief\n", branch="errmesh/fix-abc")
    pull = client.create_pull("fix", "errmesh/fix-abc", "main", "Fixes #0")
    assert ref["ref"] == "refs/heads/errmesh/fix-abc" and ref["object"]["sha"] == "a" * 40
    assert put["content"]["path"] == ".errmesh/abc.md" and len(put["commit"]["sha"]) == 40
    assert (
        pull["number"] == 0 and pull["draft"] is True and pull["head"]["ref"] == "errmesh/fix-abc"
    )
    assert world.github.requests == []


def test_a_dry_run_without_a_token_sees_an_empty_repository_and_sends_nothing(
    world: World,
) -> None:
    client = world.make(dry_run=True, token=None)
    assert client.create_comment(3, "hello")["body"] == "hello"
    assert client.list_issues(labels="errmesh") == []
    assert client.get_repo()["default_branch"] == "main"
    with pytest.raises(NotFound):
        client.get_contents(".errmesh/x.md", ref="main")
    assert world.github.requests == []


# -- serialisation ------------------------------------------------------------------------------


def test_the_transport_is_only_called_under_the_clients_lock(world: World) -> None:
    client: GitHubClient

    def check(request: httpx.Request) -> httpx.Response:
        assert client._lock.locked()
        return ok()

    world.github.script = [check]
    client = world.make()
    client.get_repo()


def test_threads_share_one_client_one_request_at_a_time(world: World) -> None:
    in_flight = []
    peak = []
    guard = threading.Lock()

    def count(request: httpx.Request) -> httpx.Response:
        with guard:
            in_flight.append(1)
            peak.append(len(in_flight))
        with guard:
            in_flight.pop()
        return ok()

    world.github.script = [count] * 40
    client = world.make()
    threads = [
        threading.Thread(target=lambda: [client.get_issue(n) for n in range(10)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(world.github.requests) == 40 and max(peak) == 1


# -- request bodies match GitHub's description ----------------------------------------------------

OPENAPI = ROOT / "tests" / "github_fake" / "spec" / "rest-api-subset.json"  # vendored
#: Fields sent on purpose although the description does not define them yet.
UNDOCUMENTED = {
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/assignees"): {"agent_assignment"}
}


def operations() -> list[tuple[str, str, re.Pattern[str], dict[str, Any]]]:
    spec = json.loads(OPENAPI.read_text())
    out = []
    for template, ops in spec["paths"].items():
        pattern = re.escape(template)
        for param in re.findall(r"\{(\w+)\}", template):
            multi = param in ("path", "ref")
            pattern = pattern.replace(re.escape(f"{{{param}}}"), ".+" if multi else "[^/]+")
        for method, op in ops.items():
            if isinstance(op, dict) and "operationId" in op:
                out.append((method, template, re.compile(f"^{pattern}$"), op))
    return out


def test_every_helper_sends_a_request_githubs_description_defines(world: World) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith(
            ("/issues", "/labels", "/pulls", "/comments")
        ):
            return ok([])
        return ok({"number": 1, "object": {"sha": "a" * 40}}, 201)

    world.github.script = [answer] * 50
    client = world.make()
    client.get_repo()
    client.list_issues("errmesh", state="all")
    client.get_issue(4)
    client.create_issue("t", "b", labels=["errmesh"])
    client.update_issue(
        4, state="closed", state_reason="duplicate", labels=["a"], title="t", body="b"
    )
    client.create_comment(4, "c")
    client.list_comments(4, since="2023-11-14T00:00:00Z")
    client.add_assignees(4, ["copilot-swe-agent[bot]"], agent_assignment={"base_branch": "main"})
    client.list_labels()
    client.create_label("errmesh", "5319e7", "d")
    client.get_ref("main")
    client.create_ref("refs/heads/errmesh/fix-1", "a" * 40)
    client.get_contents(".errmesh/x.md", ref="errmesh/fix-1")
    client.put_contents(".errmesh/x.md", "m", b"text", branch="errmesh/fix-1", sha="b" * 40)
    client.list_pulls(head="octo:errmesh/fix-1", state="all")
    client.create_pull("t", "errmesh/fix-1", "main", "Fixes #4", draft=True)
    ops = operations()
    assert len(world.github.requests) == 16
    for request in world.github.requests:
        path = request.url.raw_path.decode().partition("?")[0]
        matches = [
            (m, t, op)
            for m, t, pattern, op in ops
            if m == request.method.lower() and pattern.match(path)
        ]
        assert matches, f"{request.method} {path} is not in GitHub's description"
        method, template, op = max(matches, key=lambda m: m[1].count("/"))
        defined = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert set(request.url.params) <= defined, (template, set(request.url.params) - defined)
        if not request.content:
            assert "requestBody" not in op or not op["requestBody"].get("required")
            continue
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        body = json.loads(request.content)
        extra = set(body) - set(schema["properties"]) - UNDOCUMENTED.get((method, template), set())
        assert not extra, f"{request.method} {template} sends undocumented {extra}"
        jsonschema.validate(body, schema)


def test_branch_and_ref_spellings(world: World) -> None:
    client = world.make()
    for spelling in ("main", "heads/main", "refs/heads/main"):
        client.get_ref(spelling)
    assert {r.url.path for r in world.github.requests} == {"/repos/octo/app/git/ref/heads/main"}


def test_update_issue_needs_a_field(world: World) -> None:
    with pytest.raises(ValueError, match="at least one field"):
        world.make().update_issue(1)


# -- settings and the token ----------------------------------------------------------------------------


def test_settings_are_normalised_and_validated() -> None:
    settings = GitHubSettings(repo="octo/app", api_url="https://ghe.example.com/api/v3/")
    assert settings.api_url == "https://ghe.example.com/api/v3"
    assert (settings.owner, settings.name) == ("octo", "app")
    with pytest.raises(ValueError, match="ERRMESH_REPO"):
        GitHubSettings(repo="octo")
    with pytest.raises(ValueError, match="ERRMESH_GITHUB_API_URL"):
        GitHubSettings(repo="octo/app", api_url="ftp://x")


def test_the_token_comes_from_the_first_variable_set() -> None:
    env = {"GH_TOKEN": "gh", "GITHUB_TOKEN": "actions", "ERRMESH_GITHUB_TOKEN": "  "}
    assert find_token(env, run_gh=False) == "actions"
    assert find_token({"GH_TOKEN": "gh"}, run_gh=False) == "gh"
    assert find_token({**env, "ERRMESH_GITHUB_TOKEN": "mine"}, run_gh=False) == "mine"
    assert find_token({}, run_gh=False) is None


def fake_gh(tmp_path: Path, script: str) -> dict[str, str]:
    gh = tmp_path / "gh"
    gh.write_text(f"#!/bin/sh\n{script}\n")
    gh.chmod(0o755)
    return {"PATH": f"{tmp_path}:/usr/bin:/bin"}


def test_the_token_falls_back_to_gh_auth_token(tmp_path: Path) -> None:
    env = fake_gh(tmp_path, 'echo "gho_from_gh $*" | tr " " "_"')
    assert find_token(env) == "gho_from_gh_auth_token"
    enterprise = find_token(env, api_url="https://ghe.example.com/api/v3")
    assert enterprise == "gho_from_gh_auth_token_--hostname_ghe.example.com"


def test_a_failing_or_missing_gh_gives_no_token(tmp_path: Path) -> None:
    assert find_token(fake_gh(tmp_path, "echo 'not logged in' >&2; exit 1")) is None
    assert find_token({"PATH": str(tmp_path / "nowhere")}) is None


def test_gh_hostnames() -> None:
    assert gh_hostname("https://api.github.com") is None
    assert gh_hostname("https://ghe.example.com/api/v3") == "ghe.example.com"
    assert gh_hostname("https://api.octo.ghe.com") == "octo.ghe.com"


# -- what a relay's metrics read -----------------------------------------------------------


def test_every_request_is_counted_by_kind_and_answer_class(world: World) -> None:
    client = world.make()
    world.github.script = [
        refused(502, "Bad Gateway"),  # retried: two answers, two requests
        ok(),
        httpx.ConnectError("connection refused"),  # no answer at all: "transport"
        ok(),
        refused(404, "Not Found"),
        ok({"id": 1}, 201),
    ]
    client.get_repo()
    client.get_issue(1)
    with pytest.raises(NotFound):
        client.get_issue(2)
    client.create_comment(1, "a")
    dry = world.make(dry_run=True)
    dry.create_comment(1, "b")  # printed, not sent
    assert dry.requests == {("write", "dry_run"): 1}
    assert client.requests == {
        ("read", "5xx"): 1,
        ("read", "2xx"): 2,
        ("read", "transport"): 1,
        ("read", "4xx"): 1,
        ("write", "2xx"): 1,
    }


def test_the_sink_tells_its_usage_without_a_request(world: World) -> None:
    from github_sink.github import GitHubSink, GitHubSinkOptions
    from github_sink.sink import Metered

    sink = GitHubSink.open(
        GitHubSettings(repo="octo/app", token=TOKEN),
        GitHubSinkOptions(),
        None,
        transport=httpx.MockTransport(world.github),
        clock=world.clock,
        sleep=lambda s: None,
    )
    with sink:
        assert isinstance(sink, Metered)
        assert sink.usage(world.clock()).remaining is None, "not known before an answer"
        reset = str(int(T0) + 3600)
        world.github.script = [
            ok({"id": 1}, 201, x_ratelimit_remaining="4999", x_ratelimit_reset=reset)
        ]
        sink.client.create_comment(1, "a")
        sent = len(world.github.requests)
        usage = sink.usage(world.clock())
        assert len(world.github.requests) == sent
        assert usage.requests == {("write", "2xx"): 1}
        assert (usage.remaining, usage.writes_last_hour, usage.writes_per_hour) == (4999, 1, 500)
