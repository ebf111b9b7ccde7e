"""The fake GitHub (``tests.github_fake``): what it does, shown by use.

Most tests talk to it in-process through ``httpx.WSGITransport``; a few go
over a real loopback socket with :func:`serve`, as the sink in another
process would. Time is a :class:`FakeClock` wherever a window matters, so
nothing here sleeps to wait.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.github_fake import (
    COPILOT,
    FakeClock,
    GitHubApp,
    Token,
    check_request,
    check_response,
    match,
    serve,
)
from tests.github_fake.fixtures import HEADERS, HTTPX_TRANSPORT_ERRORS, assert_no_violations

ROOT = Path(__file__).resolve().parent.parent
REPO = "/repos/octo-org/octo-repo"


@contextmanager
def client_for(app: GitHubApp, token: str = "test-token") -> Iterator[httpx.Client]:
    """An in-process client, as the sink would be configured against GitHub."""
    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(
        transport=transport, base_url="http://github.test", headers=headers
    ) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> Iterator[GitHubApp]:
    """A fake GitHub on a fake clock, that fails the test on any refused request."""
    fake = GitHubApp(clock=clock, transport_errors=HTTPX_TRANSPORT_ERRORS)
    yield fake
    assert_no_violations(fake)


@pytest.fixture
def gh(app: GitHubApp) -> Iterator[httpx.Client]:
    with client_for(app) as client:
        yield client


def head_of_main(gh: httpx.Client) -> str:
    sha: str = gh.get(f"{REPO}/git/ref/heads/main").json()["object"]["sha"]
    return sha


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- issues and labels ------------------------------------------------------


def test_an_issue_created_with_labels_reads_back_whole(gh: httpx.Client) -> None:
    assert gh.post(f"{REPO}/labels", json={"name": "errmesh", "color": "d73a4a"}).status_code == 201

    created = gh.post(
        f"{REPO}/issues",
        json={"title": "ZeroDivisionError in report()", "body": "trace", "labels": ["errmesh"]},
    )

    assert created.status_code == 201
    issue = created.json()
    assert created.headers["Location"] == issue["url"]
    assert issue["number"] == 1 and issue["state"] == "open"
    assert issue["html_url"] == "http://github.test/octo-org/octo-repo/issues/1"
    assert issue["user"]["login"] == "errmesh-bot" and issue["node_id"]
    assert [label["name"] for label in issue["labels"]] == ["errmesh"]
    assert gh.get(f"{REPO}/issues/1").json() == issue


def test_labels_that_do_not_exist_are_dropped_from_a_new_issue(gh: httpx.Client) -> None:
    issue = gh.post(f"{REPO}/issues", json={"title": "t", "labels": ["never-created"]}).json()

    assert issue["labels"] == []


def test_creating_a_label_that_exists_is_422_already_exists(gh: httpx.Client) -> None:
    gh.post(f"{REPO}/labels", json={"name": "errmesh"})

    again = gh.post(f"{REPO}/labels", json={"name": "ErrMesh", "color": "ffffff"})

    assert again.status_code == 422
    assert again.json()["errors"] == [
        {"resource": "Label", "field": "name", "code": "already_exists"}
    ]


def test_an_issue_body_over_65536_characters_is_refused(gh: httpx.Client) -> None:
    answer = gh.post(f"{REPO}/issues", json={"title": "t", "body": "x" * 65_537})

    assert answer.status_code == 422
    assert "too long" in answer.json()["errors"][0]["message"]


def test_the_issue_list_filters_on_every_label_sorts_newest_first_and_includes_pulls(
    gh: httpx.Client, clock: FakeClock
) -> None:
    for name in ("errmesh", "sev:high"):
        gh.post(f"{REPO}/labels", json={"name": name})
    gh.post(f"{REPO}/issues", json={"title": "one", "labels": ["errmesh"]})
    clock.advance(1)
    gh.post(f"{REPO}/issues", json={"title": "two", "labels": ["errmesh", "sev:high"]})
    clock.advance(1)
    gh.patch(f"{REPO}/issues/1", json={"state": "closed", "state_reason": "completed"})
    gh.post(f"{REPO}/git/refs", json={"ref": "refs/heads/fix", "sha": head_of_main(gh)})
    gh.put(f"{REPO}/contents/a.txt", json={"message": "m", "content": b64("a"), "branch": "fix"})
    gh.post(f"{REPO}/pulls", json={"title": "pr", "head": "fix", "base": "main"})

    def titles(**params: str) -> list[str]:
        return [i["title"] for i in gh.get(f"{REPO}/issues", params=params).json()]

    assert titles() == ["pr", "two"]  # default: open, created desc
    assert titles(state="all", labels="errmesh") == ["two", "one"]
    assert titles(state="all", labels="errmesh,sev:high") == ["two"]
    assert titles(state="closed") == ["one"]
    assert titles(state="all", direction="asc") == ["one", "two", "pr"]
    pr = gh.get(f"{REPO}/issues/3").json()
    assert pr["pull_request"]["url"].endswith("/pulls/3")


# -- pagination, ETag, rate limit -----------------------------------------


def test_lists_paginate_with_rfc5988_link_headers(gh: httpx.Client) -> None:
    for i in range(5):
        gh.post(f"{REPO}/labels", json={"name": f"l{i}"})

    first = gh.get(f"{REPO}/labels", params={"per_page": 2})
    middle = gh.get(first.links["next"]["url"])
    last = gh.get(first.links["last"]["url"])

    assert [x["name"] for x in first.json()] == ["l0", "l1"]
    assert set(first.links) == {"next", "last"}
    assert (
        first.links["next"]["url"]
        == "http://github.test/repos/octo-org/octo-repo/labels?per_page=2&page=2"
    )
    assert first.links["last"]["url"].endswith("page=3")
    assert set(middle.links) == {"prev", "next", "last", "first"}
    assert [x["name"] for x in last.json()] == ["l4"]
    assert set(last.links) == {"prev", "first"}
    assert "Link" not in gh.get(f"{REPO}/labels").headers  # one page: no Link


def test_an_unchanged_list_answers_304_to_its_etag_and_costs_no_rate_limit(
    gh: httpx.Client,
) -> None:
    first = gh.get(f"{REPO}/issues", params={"state": "all"})
    used = int(first.headers["x-ratelimit-used"])

    again = gh.get(
        f"{REPO}/issues", params={"state": "all"}, headers={"If-None-Match": first.headers["ETag"]}
    )

    assert again.status_code == 304 and again.content == b""
    assert int(again.headers["x-ratelimit-used"]) == used
    gh.post(f"{REPO}/issues", json={"title": "new"})
    changed = gh.get(
        f"{REPO}/issues", params={"state": "all"}, headers={"If-None-Match": first.headers["ETag"]}
    )
    assert changed.status_code == 200 and len(changed.json()) == 1


def test_every_answer_carries_the_rate_limit_headers(gh: httpx.Client, clock: FakeClock) -> None:
    answers = [
        gh.get(REPO),
        gh.get(f"{REPO}/issues/99"),
        gh.post(f"{REPO}/labels", json={"name": "x"}),
    ]

    for answer in answers:
        assert answer.headers["x-ratelimit-limit"] == "5000"
        assert answer.headers["x-ratelimit-resource"] == "core"
        assert int(answer.headers["x-ratelimit-reset"]) == int(clock()) + 3600
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["4999", "4998", "4997"]


def test_rate_limit_endpoint_reports_without_counting(gh: httpx.Client) -> None:
    gh.get(REPO)

    state = gh.get("/rate_limit").json()

    assert state["resources"]["core"]["used"] == 1
    assert gh.get("/rate_limit").json()["rate"]["remaining"] == 4999


# -- git: refs, contents, pulls -------------------------------------------


def test_creating_a_ref_that_exists_is_422_and_reading_a_missing_one_is_404(
    gh: httpx.Client,
) -> None:
    ref = {"ref": "refs/heads/errmesh/fix-abc", "sha": head_of_main(gh)}
    assert gh.get(f"{REPO}/git/ref/heads/errmesh/fix-abc").status_code == 404

    assert gh.post(f"{REPO}/git/refs", json=ref).status_code == 201
    again = gh.post(f"{REPO}/git/refs", json=ref)

    assert again.status_code == 422 and again.json()["message"] == "Reference already exists"
    assert gh.get(f"{REPO}/git/ref/heads/errmesh/fix-abc").json()["object"]["sha"] == ref["sha"]


def test_writing_a_file_needs_the_sha_of_the_version_it_replaces(gh: httpx.Client) -> None:
    path = f"{REPO}/contents/.errmesh/abc.md"
    put = {"message": "errmesh: notes", "content": b64("v1")}

    created = gh.put(path, json=put)
    without_sha = gh.put(path, json={**put, "content": b64("v2")})
    stale = gh.put(path, json={**put, "content": b64("v2"), "sha": "0" * 40})
    updated = gh.put(
        path, json={**put, "content": b64("v2"), "sha": created.json()["content"]["sha"]}
    )

    assert created.status_code == 201
    assert without_sha.status_code == 422
    assert stale.status_code == 409
    assert updated.status_code == 200
    read = gh.get(path).json()
    assert base64.b64decode(read["content"]) == b"v2"
    assert read["sha"] == updated.json()["content"]["sha"]


def test_a_draft_pull_request_purely_over_rest(gh: httpx.Client) -> None:
    gh.post(f"{REPO}/issues", json={"title": "bug"})
    default = gh.get(REPO).json()["default_branch"]
    sha = gh.get(f"{REPO}/git/ref/heads/{default}").json()["object"]["sha"]
    gh.post(f"{REPO}/git/refs", json={"ref": "refs/heads/errmesh/fix-abc", "sha": sha})
    gh.put(
        f"{REPO}/contents/.errmesh/abc.md",
        json={"message": "m", "content": b64("plan"), "branch": "errmesh/fix-abc"},
    )

    pull = gh.post(
        f"{REPO}/pulls",
        json={
            "title": "Fix #1",
            "head": "errmesh/fix-abc",
            "base": default,
            "body": "Fixes #1",
            "draft": True,
        },
    )

    assert pull.status_code == 201
    assert pull.json()["draft"] is True and pull.json()["number"] == 2  # numbers shared with issues
    assert pull.json()["head"]["ref"] == "errmesh/fix-abc"
    again = gh.post(
        f"{REPO}/pulls", json={"title": "x", "head": "errmesh/fix-abc", "base": default}
    )
    assert again.status_code == 422 and "already exists" in again.json()["errors"][0]["message"]
    listed = gh.get(f"{REPO}/pulls", params={"head": "octo-org:errmesh/fix-abc"}).json()
    assert [p["number"] for p in listed] == [2]


def test_a_pull_from_a_branch_without_new_commits_is_refused(gh: httpx.Client) -> None:
    gh.post(f"{REPO}/git/refs", json={"ref": "refs/heads/empty", "sha": head_of_main(gh)})

    answer = gh.post(f"{REPO}/pulls", json={"title": "x", "head": "empty", "base": "main"})

    assert answer.status_code == 422
    assert answer.json()["errors"][0]["message"] == "No commits between main and empty"


# -- Copilot --------------------------------------------------------------


def test_assigning_copilot_records_the_agent_assignment_sent(
    gh: httpx.Client, app: GitHubApp
) -> None:
    gh.post(f"{REPO}/issues", json={"title": "bug"})
    assignment = {
        "target_repo": "octo-org/octo-repo",
        "base_branch": "main",
        "custom_instructions": "Add a test.",
    }

    answer = gh.post(
        f"{REPO}/issues/1/assignees", json={"assignees": [COPILOT], "agent_assignment": assignment}
    )

    assert answer.status_code == 201
    assert [a["login"] for a in answer.json()["assignees"]] == [COPILOT]
    assert [(a.issue_number, a.agent_assignment) for a in app.agent_assignments] == [
        (1, assignment)
    ]


def test_copilot_is_silently_not_assigned_with_an_installation_token(clock: FakeClock) -> None:
    app = GitHubApp(clock=clock, tokens=[Token("app-token", user_to_server=False)])
    with client_for(app, "app-token") as gh:
        gh.post(f"{REPO}/issues", json={"title": "bug"})
        answer = gh.post(f"{REPO}/issues/1/assignees", json={"assignees": [COPILOT]})

    assert answer.status_code == 201 and answer.json()["assignees"] == []
    assert app.agent_assignments == []


# -- auth -----------------------------------------------------------------


def test_bad_tokens_unknown_repositories_and_read_only_tokens(clock: FakeClock) -> None:
    app = GitHubApp(clock=clock, tokens=["test-token", Token("ro", read_only=True)])
    with client_for(app, "nope") as bad, client_for(app, "ro") as ro, client_for(app) as gh:
        assert bad.get(REPO).status_code == 401
        assert bad.get(REPO).json()["message"] == "Bad credentials"
        assert gh.get(REPO, headers={"Authorization": ""}).status_code == 401
        assert gh.get(REPO, headers={"Authorization": "token test-token"}).status_code == 200
        assert gh.get("/repos/octo-org/other").json()["message"] == "Not Found"
        assert ro.get(REPO).status_code == 200
        refused = ro.post(f"{REPO}/issues", json={"title": "t"})
    assert refused.status_code == 403
    assert refused.json()["message"] == "Resource not accessible by personal access token"
    assert app.violations == []


# -- faults ---------------------------------------------------------------


def test_server_errors_hit_the_next_matching_requests_then_stop(
    gh: httpx.Client, app: GitHubApp
) -> None:
    app.faults.error(502, times=2, route="POST /repos/{owner}/{repo}/issues")

    assert gh.get(REPO).status_code == 200  # does not match
    statuses = [gh.post(f"{REPO}/issues", json={"title": "t"}).status_code for _ in range(3)]

    assert statuses == [502, 502, 201]
    assert gh.get(f"{REPO}/issues").json()[0]["number"] == 1  # the refused ones did nothing
    assert app.count("POST", "/repos/{owner}/{repo}/issues", fault="error") == 2


def test_a_secondary_limit_says_when_to_retry(
    gh: httpx.Client, app: GitHubApp, clock: FakeClock
) -> None:
    app.faults.secondary_limit(retry_after=30, hold=True, method="POST")
    app.faults.too_many_requests(retry_after=5, method="PATCH")

    refused = gh.post(f"{REPO}/issues", json={"title": "t"})
    still = gh.post(f"{REPO}/labels", json={"name": "x"})
    too_many = gh.patch(f"{REPO}/issues/1", json={"title": "t"})

    assert refused.status_code == 403 and refused.headers["retry-after"] == "30"
    assert refused.json()["message"].startswith("You have exceeded a secondary rate limit")
    assert still.status_code == 403  # held until retry-after has passed
    assert too_many.status_code == 429 and too_many.headers["retry-after"] == "5"
    clock.advance(30)
    assert gh.post(f"{REPO}/issues", json={"title": "t"}).status_code == 201


def test_an_exhausted_primary_limit_refuses_until_its_reset(
    gh: httpx.Client, app: GitHubApp, clock: FakeClock
) -> None:
    reset = app.faults.exhaust_primary(seconds=120)

    refused = gh.get(REPO)

    assert refused.status_code == 403
    assert refused.json()["message"].startswith("API rate limit exceeded")
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) == int(reset) == int(clock()) + 120
    clock.advance(119)
    assert gh.get(REPO).status_code == 403
    clock.advance(1)
    assert gh.get(REPO).headers["x-ratelimit-remaining"] == "4999"


def test_a_small_primary_limit_runs_out(clock: FakeClock) -> None:
    app = GitHubApp(clock=clock, rate_limit=2)
    with client_for(app) as gh:
        assert [gh.get(REPO).status_code for _ in range(3)] == [200, 200, 403]
        clock.advance(3600)
        assert gh.get(REPO).status_code == 200


def test_an_outage_answers_502_to_everything_until_it_ends(
    gh: httpx.Client, app: GitHubApp, clock: FakeClock
) -> None:
    app.down_until(clock() + 60)

    assert gh.get(REPO).status_code == 502
    assert gh.post(f"{REPO}/issues", json={"title": "t"}).status_code == 502
    clock.advance(60)
    assert gh.get(REPO).status_code == 200


def test_in_process_a_timeout_raises_read_timeout_after_the_write_took_effect(
    gh: httpx.Client, app: GitHubApp
) -> None:
    app.faults.timeout(route="/repos/{owner}/{repo}/issues", method="POST")

    with pytest.raises(httpx.ReadTimeout):
        gh.post(f"{REPO}/issues", json={"title": "t"})

    assert [i["title"] for i in gh.get(f"{REPO}/issues").json()] == [
        "t"
    ]  # a retry would duplicate it


def test_in_process_a_reset_raises_read_error_and_nothing_happened(
    gh: httpx.Client, app: GitHubApp
) -> None:
    app.faults.reset(method="POST")

    with pytest.raises(httpx.ReadError):
        gh.post(f"{REPO}/issues", json={"title": "t"})

    assert gh.get(f"{REPO}/issues").json() == []
    assert app.requests[0].status is None and app.requests[0].fault == "reset"


def test_over_a_socket_faults_look_like_network_failures() -> None:
    app = GitHubApp()
    with serve(app) as url, httpx.Client(base_url=url, headers=HEADERS, timeout=0.2) as gh:
        app.faults.reset()
        with pytest.raises(httpx.ReadError):
            gh.get(REPO)
        app.faults.timeout(seconds=30)
        with pytest.raises(httpx.ReadTimeout):
            gh.post(f"{REPO}/issues", json={"title": "t"})
        assert gh.get(f"{REPO}/issues").json()[0]["title"] == "t"
    assert app.violations == []


# -- the referee: requests GitHub would refuse ---------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "reason"),
    [
        ("POST", "/issues", {"body": "no title"}, "'title' is a required property"),
        (
            "POST",
            "/issues",
            {"title": "t", "labels": "bug"},
            "body.labels: 'bug' is not of type 'array'",
        ),
        (
            "POST",
            "/issues",
            {"title": "t", "lables": ["bug"]},
            "body field 'lables' is not defined",
        ),
        (
            "POST",
            "/issues",
            {"title": "t", "issue_field_values": [{"field_id": 1, "value": "v", "extra": 1}]},
            "Additional properties are not allowed ('extra' was unexpected)",
        ),
        ("POST", "/pulls", {"title": "t", "head": "x"}, "'base' is a required property"),
        ("GET", "/issues?state=bogus", None, "query parameter 'state' must be one of"),
        ("GET", "/issues?page_size=5", None, "query parameter 'page_size' is not defined"),
        (
            "POST",
            "/issues/1/assignees",
            {"agent_assignment": {"base_ref": "main"}},
            "'base_ref' was unexpected",
        ),
    ],
)
def test_a_request_github_would_refuse_is_a_violation(
    method: str, path: str, body: Any, reason: str
) -> None:
    app = GitHubApp(clock=FakeClock())
    with client_for(app) as gh:
        answer = gh.request(method, REPO + path, json=body)

    assert answer.status_code == 422 and answer.json()["message"] == "Invalid request"
    assert len(app.violations) == 1
    assert app.violations[0].startswith(f"{method} {REPO}{path.split('?')[0]}: ")
    assert reason in app.violations[0]
    with pytest.raises(AssertionError, match="GitHub would refuse"):
        assert_no_violations(app)


def test_unknown_routes_are_violations_answered_404() -> None:
    app = GitHubApp(clock=FakeClock())
    with client_for(app) as gh:
        assert gh.get(f"{REPO}/issues/events").status_code == 422  # issue_number must be an integer
        assert gh.delete(f"{REPO}/issues/1").status_code == 404
        assert gh.get("/user/repos").status_code == 404

    assert [v.split(": ", 1)[1] for v in app.violations] == [
        "path parameter 'issue_number' must be an integer, got 'events'",
        "no such method on this path",
        "unknown path",
    ]


def test_check_request_can_be_used_on_its_own() -> None:
    assert check_request("POST", "/repos/o/r/issues", "", {}, b'{"title": "t"}') == []
    assert check_request("GET", "/repos/o/r/issues", "state=all&labels=errmesh&per_page=100") == []
    assert check_request("POST", "/repos/o/r/issues", body=b"{not json")[0].startswith(
        "POST /repos/o/r/issues: body is not JSON"
    )
    op, params = match("PUT", "/repos/o/r/contents/.errmesh/abc.md") or (None, {})
    assert op is not None and op.route == "PUT /repos/{owner}/{repo}/contents/{path}"
    assert params["path"] == ".errmesh/abc.md"


def test_answers_are_checked_against_the_documented_schemas(gh: httpx.Client) -> None:
    issue = gh.post(f"{REPO}/issues", json={"title": "t"}).json()
    op, _ = match("GET", "/repos/o/r/issues/1") or (None, {})
    assert op is not None

    assert check_response(op, 200, issue) == []
    broken = {k: v for k, v in issue.items() if k != "node_id"}
    assert check_response(op, 200, broken) == [
        "GET /repos/{owner}/{repo}/issues/{issue_number} -> 200: (root): 'node_id' is a required property"
    ]
    assert check_response(op, 200, {**issue, "created_at": "yesterday"})[0].endswith(
        "created_at: 'yesterday' is not a 'date-time'"
    )


def test_every_operation_in_the_description_answers_on_schema(
    gh: httpx.Client, app: GitHubApp
) -> None:
    sha = head_of_main(gh)
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/rate_limit", None),
        ("GET", REPO, None),
        ("GET", f"{REPO}/branches/main", None),
        ("POST", f"{REPO}/labels", {"name": "errmesh", "description": "filed by errmesh"}),
        ("GET", f"{REPO}/labels", None),
        (
            "POST",
            f"{REPO}/issues",
            {"title": "t", "labels": ["errmesh"], "assignees": ["octo-org"]},
        ),
        ("GET", f"{REPO}/issues", None),
        ("GET", f"{REPO}/issues/1", None),
        (
            "PATCH",
            f"{REPO}/issues/1",
            {"body": "b", "state": "closed", "state_reason": "not_planned"},
        ),
        ("POST", f"{REPO}/issues/1/labels", {"labels": ["errmesh"]}),
        ("POST", f"{REPO}/issues/1/assignees", {"assignees": [COPILOT]}),
        ("POST", f"{REPO}/issues/1/comments", {"body": "seen again"}),
        ("GET", f"{REPO}/issues/1/comments", None),
        ("POST", f"{REPO}/git/refs", {"ref": "refs/heads/fix", "sha": sha}),
        (
            "PUT",
            f"{REPO}/contents/docs/a.md",
            {"message": "m", "content": b64("a"), "branch": "fix"},
        ),
        ("GET", f"{REPO}/contents/docs?ref=fix", None),
        ("GET", f"{REPO}/contents/docs/a.md?ref=fix", None),
        ("POST", f"{REPO}/pulls", {"title": "p", "head": "fix", "base": "main", "draft": True}),
        ("GET", f"{REPO}/pulls?state=all", None),
        ("GET", f"{REPO}/pulls/2", None),
        ("PATCH", f"{REPO}/pulls/2", {"state": "closed"}),
        ("GET", "/search/issues?q=t", None),
    ]
    for method, url, body in calls:
        assert gh.request(method, url, json=body).is_success, (method, url)
    comment = gh.get(f"{REPO}/issues/1/comments").json()[0]["id"]
    assert gh.patch(f"{REPO}/issues/comments/{comment}", json={"body": "edited"}).status_code == 200
    new_sha = gh.get(f"{REPO}/git/ref/heads/fix").json()["object"]["sha"]
    assert gh.patch(f"{REPO}/git/refs/heads/main", json={"sha": new_sha}).status_code == 200
    assert gh.delete(f"{REPO}/git/refs/heads/fix").status_code == 204

    seen = {r.route for r in app.requests}
    assert seen == {op.route for op in app.spec.operations}
    assert app.violations == []  # every answer validated against its documented schema


# -- search ---------------------------------------------------------------


def test_search_lags_behind_writes(gh: httpx.Client, clock: FakeClock) -> None:
    gh.post(f"{REPO}/issues", json={"title": "KeyError in sync", "body": "errmesh:sig=abc"})
    query = {"q": 'repo:octo-org/octo-repo is:issue "errmesh:sig=abc"'}

    assert gh.get("/search/issues", params=query).json()["total_count"] == 0
    clock.advance(60)
    found = gh.get("/search/issues", params=query)
    assert found.json()["total_count"] == 1
    assert found.headers["x-ratelimit-resource"] == "search"


# -- the audit: pacing, counters, concurrency ----------------------------


def test_the_budget_audit_catches_writes_too_close_together(
    gh: httpx.Client, app: GitHubApp, clock: FakeClock
) -> None:
    gh.post(f"{REPO}/issues", json={"title": "a"})
    clock.advance(0.5)
    gh.post(f"{REPO}/issues", json={"title": "b"})
    clock.advance(1.0)
    gh.get(f"{REPO}/issues")  # reads are not audited
    gh.post(f"{REPO}/issues/1/comments", json={"body": "c"})

    flagged = app.budget_violations(per_minute=80, per_hour=500, min_interval=1.0)

    assert [(r.route, r.time - app.requests[0].time) for r in flagged] == [
        ("POST /repos/{owner}/{repo}/issues", 0.5)
    ]
    assert "0.500 s after the previous write" in app.budget_report()[0]


def test_the_budget_audit_catches_81_writes_in_a_minute(
    gh: httpx.Client, app: GitHubApp, clock: FakeClock
) -> None:
    gh.post(f"{REPO}/issues", json={"title": "a"})
    clock.advance(3600)
    app.faults.error(500, times=1)  # writes that met a fault count too: GitHub saw them
    for _ in range(81):
        gh.post(f"{REPO}/issues/1/comments", json={"body": "c"})
        clock.advance(0.74)

    flagged = app.budget_violations(per_minute=80, per_hour=500, min_interval=0.5)

    assert flagged == [app.requests[-1]]
    assert "write number 81 within 60 s" in app.budget_report(min_interval=0.5)[0]
    assert app.count("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") == 81
    assert (
        app.count(route="POST /repos/{owner}/{repo}/issues/{issue_number}/comments", status=201)
        == 80
    )


def test_max_concurrent_counts_requests_in_flight_over_a_socket() -> None:
    app = GitHubApp()
    app.faults.timeout(seconds=0.5, times=3, method="GET")  # holds each answer 0.5 s
    start = threading.Barrier(3)
    statuses: list[int] = []

    def get(gh: httpx.Client) -> None:
        start.wait()
        statuses.append(gh.get(REPO).status_code)

    with serve(app) as url, httpx.Client(base_url=url, headers=HEADERS, timeout=5) as gh:
        threads = [threading.Thread(target=get, args=(gh,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert statuses == [200, 200, 200]
    assert app.max_concurrent == 3


# -- serving ----------------------------------------------------------------


def test_serve_supports_an_enterprise_style_prefix() -> None:
    app = GitHubApp(prefix="/api/v3")
    with serve(app) as url, httpx.Client(base_url=url, headers=HEADERS) as gh:
        assert url.endswith("/api/v3")
        repo = gh.get(REPO).json()
        assert repo["url"] == f"{url}{REPO}"
        assert repo["html_url"] == url.removesuffix("/api/v3") + "/octo-org/octo-repo"
    assert app.violations == []


def test_the_fixtures_give_a_ready_client(
    github_client: httpx.Client, github_app: GitHubApp
) -> None:
    assert github_client.get(REPO).status_code == 200
    assert github_app.count("GET", "/repos/{owner}/{repo}") == 1


def test_the_url_fixture_serves_over_loopback(github_url: str) -> None:
    with httpx.Client(base_url=github_url, headers=HEADERS) as gh:
        assert gh.get(REPO).json()["full_name"] == "octo-org/octo-repo"


def test_it_runs_standalone_for_other_processes() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.github_fake",
            "--port",
            "0",
            "--repo",
            "me/proj",
            "--token",
            "T",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        with httpx.Client(base_url=url, headers={"Authorization": "token T"}) as gh:
            assert gh.get("/repos/me/proj").status_code == 200
            assert gh.get("/_fake/report").json()["requests"] == 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert '"violations": []' in err


def test_the_vendored_api_description_is_the_shared_one() -> None:
    from tests.github_fake.openapi import DEFAULT_SPEC, SHARED_SPEC

    if not SHARED_SPEC.exists():
        pytest.skip("no ../shared beside this clone: the vendored copy is all there is")
    assert DEFAULT_SPEC.read_bytes() == SHARED_SPEC.read_bytes()
