"""CircuitBreaker: opens after the threshold of failures in a row or when the
service says it is not ready, closes when it says it is ready again."""

from __future__ import annotations

import logging

import pytest

from shared.circuit import CircuitBreaker


def test_breaker_starts_closed() -> None:
    breaker = CircuitBreaker("extractor", threshold=3)

    assert breaker.closed
    assert breaker.state == "closed"
    assert breaker.reason == ""


def test_breaker_opens_at_the_threshold_of_failures_in_a_row() -> None:
    breaker = CircuitBreaker("extractor", threshold=3)

    breaker.failed()
    breaker.failed()
    assert breaker.closed

    breaker.failed()
    assert breaker.state == "open"
    assert breaker.reason == "3 failed calls in a row"


def test_a_success_starts_the_count_again() -> None:
    breaker = CircuitBreaker("extractor", threshold=3)

    breaker.failed()
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    breaker.failed()

    assert breaker.closed


def test_not_ready_opens_the_breaker_with_its_detail() -> None:
    breaker = CircuitBreaker("archivist", threshold=5)

    breaker.probed(False, "not ready (HTTP 503)")

    assert breaker.state == "open"
    assert breaker.reason == "not ready (HTTP 503)"


def test_ready_closes_an_open_breaker_and_forgets_the_failures() -> None:
    breaker = CircuitBreaker("extractor", threshold=2)
    breaker.failed()
    breaker.failed()
    assert breaker.state == "open"

    breaker.probed(True)
    assert breaker.closed

    # The count starts again: one more failure does not reopen it.
    breaker.failed()
    assert breaker.closed


def test_an_open_breaker_keeps_its_first_reason() -> None:
    breaker = CircuitBreaker("validator", threshold=1)
    breaker.probed(False, "unreachable: ConnectError")

    breaker.failed()
    breaker.probed(False, "not ready (HTTP 503)")

    assert breaker.reason == "unreachable: ConnectError"


def test_opening_and_closing_are_logged_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breaker = CircuitBreaker("extractor", threshold=1)

    with caplog.at_level(logging.INFO, logger="shared.circuit"):
        breaker.failed()
        breaker.failed()
        breaker.probed(True)
        breaker.probed(True)

    assert [record.getMessage() for record in caplog.records] == [
        "circuit.opened",
        "circuit.closed",
    ]
    assert caplog.records[0].levelno == logging.WARNING
