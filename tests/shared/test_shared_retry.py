"""Backoff: each wait between half and all of its doubling ceiling, capped, one
fewer than the tries; and which transport failures count as retryable."""

from __future__ import annotations

import httpx
import pytest

from shared.retry import RETRYABLE_STATUS, Backoff, is_connection_error

SAMPLES = 200


def ceiling(backoff: Backoff, retry: int) -> float:
    return min(backoff.cap, backoff.base * 2.0**retry)


@pytest.mark.parametrize("retry", range(8))
def test_delay_is_within_half_and_all_of_its_ceiling(retry: int) -> None:
    backoff = Backoff(base=0.5, cap=20.0)
    top = ceiling(backoff, retry)

    waits = [backoff.delay(retry) for _ in range(SAMPLES)]

    assert all(top / 2 <= wait <= top for wait in waits)
    # Jittered: replicas that failed together do not retry together.
    assert len(set(waits)) > SAMPLES // 2


def test_delay_doubles_until_the_cap_then_stays_under_it() -> None:
    backoff = Backoff(base=1.0, cap=30.0)

    assert [ceiling(backoff, retry) for retry in range(7)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert all(15.0 <= backoff.delay(9) <= 30.0 for _ in range(SAMPLES))


@pytest.mark.parametrize("retry", [64, 1100, 5000])
def test_delay_of_a_very_late_retry_is_still_capped(retry: int) -> None:
    # A task may be allowed many tries (MESH_TASK_MAX_ATTEMPTS has no upper
    # bound): its late waits are the cap's, not an error.
    backoff = Backoff(base=1.0, cap=30.0)

    assert 15.0 <= backoff.delay(retry) <= 30.0


@pytest.mark.parametrize(("attempts", "waits"), [(1, 0), (2, 1), (3, 2), (6, 5)])
def test_delays_are_one_fewer_than_the_attempts(attempts: int, waits: int) -> None:
    backoff = Backoff(attempts=attempts, base=0.1, cap=1.0)

    delays = list(backoff.delays())

    assert len(delays) == waits
    for retry, wait in enumerate(delays):
        top = ceiling(backoff, retry)
        assert top / 2 <= wait <= top


def test_default_backoff_tries_three_times_within_a_second() -> None:
    delays = list(Backoff().delays())

    assert len(delays) == 2
    assert sum(delays) <= 0.6


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no answer to SYN"),
        httpx.ReadError("reset"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("closed before a reply"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_failures_before_a_reply_are_connection_errors(error: Exception) -> None:
    assert is_connection_error(error)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("the other side may still be working"),
        httpx.WriteTimeout("slow"),
        httpx.HTTPStatusError(
            "500",
            request=httpx.Request("POST", "https://x.test"),
            response=httpx.Response(500),
        ),
        ValueError("not JSON"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_timeout_waiting_for_a_reply_is_not_a_connection_error(
    error: Exception,
) -> None:
    assert not is_connection_error(error)


def test_only_gateway_and_unavailable_statuses_are_retryable() -> None:
    assert frozenset({502, 503, 504}) == RETRYABLE_STATUS
