"""The request budget: when the next GitHub request may go. Pure, virtual time.

A caller asks ``delay(method, now)``, waits that long, asks again until it
gets 0, then sends and calls ``record(method, now)``. The property test at the
end checks that whoever does so never exceeds a limit in any sliding window.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from github_sink.budget import Budget, BudgetLimits, get_header, is_mutating

T0 = 1_700_000_000.0


def headers(remaining: int, reset: float, resource: str = "core") -> dict[str, str]:
    return {
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(int(reset)),
        "x-ratelimit-resource": resource,
    }


def send(budget: Budget, method: str, now: float) -> float:
    """Obey the budget like the client does; returns the time the request went."""
    while (wait := budget.delay(method, now)) > 0:
        now += wait
    budget.record(method, now)
    return now


# -- mutating requests -------------------------------------------------------------


def test_the_first_write_goes_at_once_and_the_next_one_a_second_later() -> None:
    budget = Budget()
    assert budget.delay("POST", T0) == 0
    budget.record("POST", T0)
    assert budget.delay("PATCH", T0 + 0.25) == pytest.approx(0.75)
    assert budget.delay("PATCH", T0 + 1.0) == 0


def test_reads_are_not_spaced() -> None:
    budget = Budget()
    budget.record("POST", T0)
    budget.record("GET", T0)
    assert budget.delay("GET", T0) == 0


def test_the_minute_window_holds_the_write_after_per_minute_until_the_oldest_leaves() -> None:
    budget = Budget(BudgetLimits(per_minute=3, min_interval=0))
    for t in (0, 10, 20):
        budget.record("POST", T0 + t)
    # The write at T0 leaves the window at T0 + 60.
    assert budget.delay("POST", T0 + 30) == pytest.approx(30)
    assert budget.delay("POST", T0 + 60) == 0


def test_the_hour_window_holds_the_write_after_per_hour() -> None:
    budget = Budget(BudgetLimits(per_minute=100, per_hour=4, min_interval=0))
    for t in (0, 100, 200, 300):
        budget.record("PUT", T0 + t)
    assert budget.delay("DELETE", T0 + 400) == pytest.approx(3200)
    assert budget.delay("GET", T0 + 400) == 0  # reads are not content creation


def test_default_limits_are_githubs_documented_ones() -> None:
    limits = BudgetLimits()
    assert (limits.per_minute, limits.per_hour, limits.min_interval) == (80, 500, 1.0)


@pytest.mark.parametrize(
    ("method", "mutating"),
    [
        ("GET", False),
        ("head", False),
        ("POST", True),
        ("patch", True),
        ("PUT", True),
        ("DELETE", True),
    ],
)
def test_which_methods_count_as_writes(method: str, mutating: bool) -> None:
    assert is_mutating(method) is mutating


# -- the primary limit ----------------------------------------------------------------


def test_a_spent_primary_limit_holds_everything_until_the_reset() -> None:
    budget = Budget()
    budget.observe(headers(0, T0 + 120), T0)
    assert budget.delay("GET", T0) == pytest.approx(121)  # reset + 1 s margin
    assert budget.delay("POST", T0) == pytest.approx(121)
    assert budget.delay("GET", T0 + 120) == 0  # the window reset


def test_reads_leave_a_reserve_for_the_writes_that_carry_reports() -> None:
    budget = Budget(BudgetLimits(read_reserve=10))
    budget.observe(headers(10, T0 + 600), T0)
    assert budget.delay("GET", T0) == pytest.approx(601)
    assert budget.delay("POST", T0) == 0


def test_requests_count_the_remaining_down_between_answers() -> None:
    budget = Budget(BudgetLimits(read_reserve=0, min_interval=0))
    budget.observe(headers(2, T0 + 600), T0)
    budget.record("GET", T0)
    assert budget.delay("GET", T0) == 0
    budget.record("GET", T0)
    assert budget.delay("GET", T0) == pytest.approx(601)
    # The next answer says how things really are.
    budget.observe(headers(4999, T0 + 3600), T0 + 1)
    assert budget.delay("GET", T0 + 1) == 0


def test_other_resources_and_junk_headers_are_ignored() -> None:
    budget = Budget()
    budget.observe(headers(0, T0 + 60, resource="search"), T0)
    budget.observe({"x-ratelimit-remaining": "lots", "x-ratelimit-reset": "soon"}, T0)
    budget.observe({}, T0)
    assert budget.delay("GET", T0) == 0


def test_header_names_are_case_insensitive() -> None:
    budget = Budget()
    budget.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(T0 + 9))}, T0)
    assert budget.delay("GET", T0) == pytest.approx(10)
    assert get_header({"Retry-After": "5"}, "retry-after") == "5"


# -- refusals ----------------------------------------------------------------------------


def test_a_pause_holds_every_request_and_never_shortens() -> None:
    budget = Budget()
    budget.pause_until(T0 + 60)
    budget.pause_until(T0 + 30)
    assert budget.delay("GET", T0) == pytest.approx(60)
    assert budget.delay("POST", T0 + 59) == pytest.approx(1)


def test_statistics_are_a_snapshot() -> None:
    budget = Budget()
    send(budget, "POST", T0)
    send(budget, "POST", T0)
    budget.observe(headers(4000, T0 + 3600), T0 + 1)
    stats = budget.statistics(T0 + 60.5)
    assert (stats.writes_last_minute, stats.writes_last_hour) == (1, 2)
    assert (stats.remaining, stats.reset) == (4000, T0 + 3600)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="per_minute"):
        BudgetLimits(per_minute=0)
    with pytest.raises(ValueError, match="min_interval"):
        BudgetLimits(min_interval=-1)


# -- the property -------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    gap: float  # seconds the caller idles before asking


@dataclass(frozen=True)
class Observe:
    remaining: int
    reset_in: float
    gap: float


@dataclass(frozen=True)
class Pause:
    seconds: float


operations = st.lists(
    st.one_of(
        st.builds(
            Request,
            st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE"]),
            st.one_of(st.just(0.0), st.floats(0, 120), st.floats(0, 2, allow_subnormal=False)),
        ),
        st.builds(Observe, st.integers(0, 15), st.floats(0, 900), st.floats(0, 5)),
        st.builds(Pause, st.floats(0, 300)),
    ),
    max_size=120,
)
limits_strategy = st.builds(
    BudgetLimits,
    per_minute=st.integers(1, 6),
    per_hour=st.integers(1, 20),
    min_interval=st.sampled_from([0.0, 0.5, 1.0, 7.3]),
    read_reserve=st.integers(0, 3),
    reset_margin=st.sampled_from([0.0, 1.0]),
)


@settings(max_examples=300, deadline=None)
@given(limits=limits_strategy, ops=operations, start=st.floats(0, 2e9))
def test_obeying_the_delays_never_exceeds_a_limit(
    limits: BudgetLimits, ops: list[Request | Observe | Pause], start: float
) -> None:
    budget = Budget(limits)
    now = start
    writes: list[float] = []
    paused_until = float("-inf")
    # Per observation: (remaining, reset, requests sent since, reads sent since).
    primary: list[list[float]] = []
    for op in ops:
        if isinstance(op, Observe):
            now += op.gap
            reset = float(int(now + op.reset_in))
            budget.observe(headers(op.remaining, reset), now)
            primary.append([op.remaining, reset, 0, 0])
            continue
        if isinstance(op, Pause):
            paused_until = max(paused_until, now + op.seconds)
            budget.pause_until(now + op.seconds)
            continue
        now = send(budget, op.method, now + op.gap)
        assert now >= paused_until
        if primary and now < primary[-1][1]:
            primary[-1][2] += 1
            primary[-1][3] += not is_mutating(op.method)
        if is_mutating(op.method):
            if writes:
                assert now >= writes[-1] + limits.min_interval
            writes.append(now)
    for i, t in enumerate(writes):
        assert sum(1 for s in writes[: i + 1] if s + 60 > t) <= limits.per_minute
        assert sum(1 for s in writes[: i + 1] if s + 3600 > t) <= limits.per_hour
    for remaining, _reset, sent, reads in primary:
        assert sent <= remaining
        assert reads <= max(0, remaining - limits.read_reserve)
