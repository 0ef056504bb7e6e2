"""RateLimiter: an exact sliding window of 60 s per principal, the
Retry-After it answers, and memory that stays bounded under many principals."""

from __future__ import annotations

import pytest

import shared.auth.ratelimit as ratelimit_module
from shared.auth.ratelimit import RateLimiter
from shared.errors import RateLimited
from tests.shared.kit import Clock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit_module, "time", fake)
    return fake


@pytest.fixture
def limiter(clock: Clock) -> RateLimiter:
    return RateLimiter()


def refused(limiter: RateLimiter, principal: str, limit: int) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        limiter.admit(principal, limit)
    return caught.value


def test_requests_up_to_the_limit_are_admitted(limiter: RateLimiter) -> None:
    for _ in range(3):
        limiter.admit("alice", 3)

    error = refused(limiter, "alice", 3)

    assert (error.code, error.http_status, error.reason) == (
        -32003,
        429,
        "rate_limited",
    )
    assert error.message == "More than 3 requests a minute"


def test_oldest_request_leaves_the_window_after_exactly_a_minute(
    limiter: RateLimiter, clock: Clock
) -> None:
    start = clock.now
    limiter.admit("alice", 1)

    clock.now = start + 59.9
    refused(limiter, "alice", 1)
    clock.now = start + 60
    limiter.admit("alice", 1)


def test_window_slides_request_by_request(limiter: RateLimiter, clock: Clock) -> None:
    limiter.admit("alice", 2)  # t=0
    clock.advance(30)
    limiter.admit("alice", 2)  # t=30

    clock.advance(30)  # t=60: the first has left, the second has not
    limiter.admit("alice", 2)
    refused(limiter, "alice", 2)


def test_retry_after_is_when_the_oldest_request_leaves(
    limiter: RateLimiter, clock: Clock
) -> None:
    limiter.admit("alice", 2)  # t=0
    clock.advance(10)
    limiter.admit("alice", 2)  # t=10
    clock.advance(15)  # t=25

    error = refused(limiter, "alice", 2)

    assert error.retry_after == 35
    assert error.data == {"reason": "rate_limited", "retry_after": 35}


def test_retry_after_is_rounded_up_to_whole_seconds(
    limiter: RateLimiter, clock: Clock
) -> None:
    limiter.admit("alice", 1)
    clock.advance(20.2)

    assert refused(limiter, "alice", 1).retry_after == 40


def test_retry_after_is_never_less_than_a_second(
    limiter: RateLimiter, clock: Clock
) -> None:
    limiter.admit("alice", 1)
    clock.advance(59.99)

    assert refused(limiter, "alice", 1).retry_after == 1


def test_refused_requests_do_not_count(limiter: RateLimiter, clock: Clock) -> None:
    # Hammering while limited must not push the way out further away.
    limiter.admit("alice", 1)
    for _ in range(10):
        clock.advance(5)
        refused(limiter, "alice", 1)

    clock.advance(10)  # t=60
    limiter.admit("alice", 1)


def test_principals_have_separate_budgets(limiter: RateLimiter) -> None:
    limiter.admit("alice", 1)

    limiter.admit("bob", 1)
    refused(limiter, "alice", 1)


def test_limit_is_applied_as_given_on_each_request(limiter: RateLimiter) -> None:
    # The role of the token decides the limit; a request with a higher one
    # (an orchestrator token) may go on where the lower one stopped.
    limiter.admit("alice", 1)
    refused(limiter, "alice", 1)

    limiter.admit("alice", 2)


def test_released_request_gives_its_place_back(limiter: RateLimiter) -> None:
    limiter.admit("alice", 1)

    limiter.release("alice")

    limiter.admit("alice", 1)


def test_release_of_an_unknown_principal_changes_nothing(limiter: RateLimiter) -> None:
    limiter.release("nobody")

    limiter.admit("nobody", 1)
    refused(limiter, "nobody", 1)


def test_many_principals_never_grow_memory_past_the_bound(
    monkeypatch: pytest.MonkeyPatch, limiter: RateLimiter
) -> None:
    monkeypatch.setattr(ratelimit_module, "_MAX_PRINCIPALS", 100)

    for n in range(1000):
        limiter.admit(f"subject-{n}", 5)

    assert len(limiter._requests) <= 100


def test_idle_principals_are_forgotten_before_active_ones(
    monkeypatch: pytest.MonkeyPatch, limiter: RateLimiter, clock: Clock
) -> None:
    monkeypatch.setattr(ratelimit_module, "_MAX_PRINCIPALS", 3)
    limiter.admit("idle-1", 1)
    limiter.admit("idle-2", 1)
    clock.advance(30)
    limiter.admit("active", 1)
    clock.advance(31)  # the idle ones' requests have left the window

    limiter.admit("newcomer", 1)

    # The active principal's request still counts: making room reset nothing.
    refused(limiter, "active", 1)


def test_a_batch_counts_each_item_all_or_none(
    limiter: RateLimiter, clock: Clock
) -> None:
    limiter.admit("alice", 10, cost=6)

    with pytest.raises(RateLimited):
        limiter.admit("alice", 10, cost=5)

    # The refused batch counted nothing: four single requests still fit.
    for _ in range(4):
        limiter.admit("alice", 10)
    assert refused(limiter, "alice", 10).reason == "rate_limited"


def test_a_refused_batch_is_told_when_the_whole_of_it_fits(
    limiter: RateLimiter, clock: Clock
) -> None:
    limiter.admit("alice", 10, cost=4)
    clock.advance(20)
    limiter.admit("alice", 10, cost=4)

    with pytest.raises(RateLimited) as caught:
        limiter.admit("alice", 10, cost=6)

    # Six fit once the first four have left the window, 40 s from now.
    assert caught.value.data["retry_after"] == 40
