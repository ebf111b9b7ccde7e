"""The retry policy: after one attempt, accept, retry after N seconds, or fail. Pure.

Every rule of ``github_sink/retry.py`` has an example here; the client tests
check that the client obeys these decisions.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from github_sink.errors import (
    BadCredentials,
    Conflict,
    GitHubUnavailable,
    IssuesDisabled,
    NotFound,
    PermissionDenied,
    RateLimited,
    SinkRejected,
    SinkUnavailable,
    UnexpectedResponse,
    ValidationFailed,
)
from github_sink.retry import (
    Accept,
    Answer,
    Decision,
    Fail,
    RequestInfo,
    Retry,
    RetryLimits,
    RetryState,
    TransportFailure,
    decide,
    is_rate_limited,
    retry_after_seconds,
)

T0 = 1_700_000_000.0
GET_REPO = RequestInfo(method="GET", route="/repos/octo/app", repo="octo/app")
GET_ISSUES = RequestInfo(method="GET", route="/repos/octo/app/issues", repo="octo/app")
POST_ISSUE = RequestInfo(
    method="POST", route="/repos/octo/app/issues", repo="octo/app", idempotent=False
)


class Ceiling(random.Random):
    """Full jitter that always draws the top of its range, to read the backoff ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def run(
    outcome: Answer | TransportFailure,
    state: RetryState | None = None,
    *,
    request: RequestInfo = GET_ISSUES,
    limits: RetryLimits | None = None,
    rng: random.Random | None = None,
) -> Decision:
    return decide(
        outcome,
        state or RetryState(),
        request=request,
        limits=limits or RetryLimits(),
        now=T0,
        rng=rng or Ceiling(),
    )


def answer(status: int, body: Any = None, **headers: str) -> Answer:
    return Answer(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def failure(decision: Decision) -> Exception:
    assert isinstance(decision, Fail), decision
    return decision.error


# -- accepted ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_success_and_not_modified_are_accepted(status: int) -> None:
    assert isinstance(run(answer(status)), Accept)


# -- rate limits -----------------------------------------------------------------------


def test_a_secondary_limit_with_retry_after_waits_exactly_that() -> None:
    decision = run(
        answer(403, {"message": "You have exceeded a secondary rate limit."}, retry_after="37")
    )
    assert isinstance(decision, Retry)
    assert decision.delay == 37
    assert decision.rate_limited
    assert decision.state.refusals == 1 and decision.state.failures == 0


def test_429_is_always_a_rate_limit() -> None:
    decision = run(answer(429))
    assert isinstance(decision, Retry) and decision.rate_limited
    assert decision.delay == 60


def test_a_spent_primary_limit_waits_until_the_reset() -> None:
    decision = run(
        answer(
            403,
            {"message": "API rate limit exceeded"},
            x_ratelimit_remaining="0",
            x_ratelimit_reset=str(int(T0 + 300)),
        )
    )
    assert isinstance(decision, Retry)
    assert decision.delay == pytest.approx(301)  # + 1 s for clocks that differ


def test_without_hints_refusals_back_off_from_a_minute_doubling_to_fifteen() -> None:
    refused = answer(403, {"message": "You have triggered an abuse detection mechanism."})
    limits = RetryLimits(max_rate_limit_wait=10_000)
    state = RetryState()
    delays = []
    for _ in range(6):
        decision = run(refused, state, limits=limits)
        assert isinstance(decision, Retry)
        delays.append(decision.delay)
        state = decision.state
    assert delays == [60, 120, 240, 480, 900, 900]


def test_refusals_have_a_total_cap_then_fail_with_when_to_come_back() -> None:
    refused = answer(429, retry_after="600")
    first = run(refused)
    assert isinstance(first, Retry)
    error = failure(run(refused, first.state))
    assert isinstance(error, RateLimited) and isinstance(error, SinkUnavailable)
    assert error.retry_at == T0 + 600
    assert "900 s" in str(error)


def test_a_wait_longer_than_the_cap_fails_at_once() -> None:
    reset = str(int(T0 + 3000))
    error = failure(run(answer(403, x_ratelimit_remaining="0", x_ratelimit_reset=reset)))
    assert isinstance(error, RateLimited)
    assert error.retry_at == pytest.approx(T0 + 3001)


def test_refusals_do_not_count_towards_giving_up() -> None:
    limits = RetryLimits(max_attempts=2)
    decision = run(answer(429, retry_after="1"), RetryState(attempts=5, failures=1), limits=limits)
    assert isinstance(decision, Retry)


def test_refusals_are_retried_even_for_posts_github_did_not_carry_them_out() -> None:
    decision = run(answer(429, retry_after="3"), request=POST_ISSUE)
    assert isinstance(decision, Retry) and decision.delay == 3


@pytest.mark.parametrize(
    ("status", "headers", "message", "limited"),
    [
        (429, {}, "", True),
        (403, {"retry-after": "5"}, "", True),
        (403, {"x-ratelimit-remaining": "0"}, "", True),
        (403, {}, "You have exceeded a secondary rate limit", True),
        (403, {}, "API rate limit exceeded for user", True),
        (403, {"x-ratelimit-remaining": "4999"}, "Resource not accessible by integration", False),
        (404, {"retry-after": "5"}, "", False),
    ],
)
def test_which_refusals_are_rate_limits(
    status: int, headers: dict[str, str], message: str, limited: bool
) -> None:
    assert is_rate_limited(status, headers, message) is limited


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("12", T0) == 12
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:20 GMT", T0) == 60
    assert retry_after_seconds("Tue, 14 Nov 2023 22:00:00 GMT", T0) == 0
    assert retry_after_seconds("soon", T0) is None
    assert retry_after_seconds(None, T0) is None


# -- transient failures -------------------------------------------------------------------


def test_server_errors_back_off_exponentially_then_give_up_after_max_attempts() -> None:
    state = RetryState()
    delays = []
    for _ in range(5):
        decision = run(answer(502), state)
        assert isinstance(decision, Retry) and not decision.rate_limited
        delays.append(decision.delay)
        state = decision.state
    assert delays == [1, 2, 4, 8, 16]
    error = failure(run(answer(502), state))
    assert isinstance(error, GitHubUnavailable) and isinstance(error, SinkUnavailable)
    assert error.attempts == 6 and error.status == 502
    assert "gave up after 6 attempts" in str(error)


def test_the_backoff_is_capped() -> None:
    decision = run(answer(500), RetryState(failures=20), limits=RetryLimits(max_attempts=99))
    assert isinstance(decision, Retry) and decision.delay == 60


def test_jitter_is_full_and_comes_from_the_injected_random() -> None:
    state = RetryState(failures=3)
    delays = {run(answer(503), state, rng=random.Random(seed)).delay for seed in range(20)}  # type: ignore[union-attr]
    assert all(0 <= d < 8 for d in delays) and len(delays) == 20
    again = run(answer(503), state, rng=random.Random(7))
    assert again == run(answer(503), state, rng=random.Random(7))


def test_a_server_retry_after_is_honoured() -> None:
    decision = run(answer(503, retry_after="30"))
    assert isinstance(decision, Retry) and decision.delay == 30


@pytest.mark.parametrize("kind", ["timeout", "connect", "reset", "protocol"])
def test_transport_failures_are_retried_for_reads(kind: str) -> None:
    decision = run(TransportFailure(kind, "boom"))  # type: ignore[arg-type]
    assert isinstance(decision, Retry) and decision.delay == 1


def test_a_post_that_may_have_reached_github_is_not_repeated() -> None:
    for outcome in (answer(502), TransportFailure("timeout"), TransportFailure("reset")):
        error = failure(run(outcome, request=POST_ISSUE))
        assert isinstance(error, GitHubUnavailable)
        assert error.maybe_applied
        assert "look before retrying" in str(error)


def test_a_post_that_never_connected_is_retried() -> None:
    decision = run(TransportFailure("connect", "refused"), request=POST_ISSUE)
    assert isinstance(decision, Retry)


# -- permanent refusals ------------------------------------------------------------------------


def test_401_names_every_place_a_token_comes_from() -> None:
    error = failure(run(answer(401, {"message": "Bad credentials"}), request=GET_REPO))
    assert isinstance(error, BadCredentials) and isinstance(error, SinkRejected)
    assert "bad GitHub token" in str(error)
    for name in ("ERRMESH_GITHUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "gh auth login"):
        assert name in str(error)
    assert (error.status, error.method, error.route) == (401, "GET", "/repos/octo/app")
    assert error.github_message == "Bad credentials"


def test_404_on_the_repository_names_the_repo_setting() -> None:
    error = failure(run(answer(404, {"message": "Not Found"}), request=GET_REPO))
    assert isinstance(error, NotFound)
    assert str(error).startswith("repository octo/app not found or not visible to this token")
    assert "ERRMESH_REPO" in str(error)


def test_404_elsewhere_says_what_was_missing() -> None:
    info = RequestInfo(method="GET", route="/repos/octo/app/git/ref/heads/x", repo="octo/app")
    error = failure(run(answer(404, {"message": "Not Found"}), request=info))
    assert isinstance(error, NotFound)
    assert "GET /repos/octo/app/git/ref/heads/x answered 404 Not Found" in str(error)


def test_403_without_a_rate_limit_names_the_permissions_needed() -> None:
    body = {"message": "Resource not accessible by personal access token"}
    error = failure(run(answer(403, body, x_ratelimit_remaining="4999"), request=POST_ISSUE))
    assert isinstance(error, PermissionDenied)
    assert "the token lacks permission" in str(error)
    assert "issues: write" in str(error) and "ERRMESH_AUTO_PR" in str(error)


def test_410_says_issues_are_disabled() -> None:
    error = failure(
        run(answer(410, {"message": "Issues are disabled for this repo"}), request=POST_ISSUE)
    )
    assert isinstance(error, IssuesDisabled)
    assert "issues are disabled on repository octo/app" in str(error)


def test_409_is_a_conflict() -> None:
    error = failure(run(answer(409, {"message": "is at 1234 but expected 5678"})))
    assert isinstance(error, Conflict) and "409 is at 1234" in str(error)


def test_422_shows_githubs_message_and_errors() -> None:
    body = {
        "message": "Validation Failed",
        "errors": [
            {
                "resource": "Issue",
                "field": "body",
                "code": "custom",
                "message": "body is too long (maximum is 65536 characters)",
            }
        ],
    }
    error = failure(run(answer(422, body), request=POST_ISSUE))
    assert isinstance(error, ValidationFailed)
    assert "Validation Failed" in str(error) and "body is too long" in str(error)
    assert error.errors[0]["field"] == "body"
    assert not error.already_exists


@pytest.mark.parametrize(
    "body",
    [
        {
            "message": "Validation Failed",
            "errors": [{"resource": "Label", "code": "already_exists", "field": "name"}],
        },
        {"message": "Reference already exists"},
        {
            "message": "Validation Failed",
            "errors": [
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": "A pull request already exists for octo:errmesh/fix-1.",
                }
            ],
        },
    ],
)
def test_422_already_exists_is_recognisable(body: dict[str, Any]) -> None:
    error = failure(run(answer(422, body), request=POST_ISSUE))
    assert isinstance(error, ValidationFailed) and error.already_exists


@pytest.mark.parametrize("status", [400, 405, 413, 418])
def test_other_statuses_are_unexpected_and_not_retried(status: int) -> None:
    error = failure(run(answer(status, {"message": "Problems parsing JSON"})))
    assert isinstance(error, UnexpectedResponse) and isinstance(error, SinkRejected)
    assert str(status) in str(error)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryLimits(max_attempts=0)
