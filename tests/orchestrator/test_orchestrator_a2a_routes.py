"""The A2A route's log filter: the SDK's lines about a request it cannot
read are the caller's mistake (a warning, no traceback); its own failures
stay errors with their traceback."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI

from services.orchestrator.a2a_routes import add_a2a_route

DISPATCHER = "a2a.server.routes.jsonrpc_dispatcher"


def logged(
    caplog: pytest.LogCaptureFixture, logger: str, message: str
) -> logging.LogRecord:
    add_a2a_route(FastAPI())
    with caplog.at_level(logging.INFO):
        try:
            raise ValueError("the caller's input, quoted")
        except ValueError:
            logging.getLogger(logger).exception(message)
    [record] = [r for r in caplog.records if r.name == logger]
    return record


@pytest.mark.parametrize(
    ("logger", "message"),
    [
        (DISPATCHER, "Failed to validate base JSON-RPC request"),
        (DISPATCHER, "Failed to parse request params"),
        (
            "a2a.compat.v0_3.jsonrpc_adapter",
            "Failed to validate base JSON-RPC request for v0.3",
        ),
    ],
)
def test_a2a_unreadable_request_is_a_warning_without_traceback(
    caplog: pytest.LogCaptureFixture, logger: str, message: str
) -> None:
    record = logged(caplog, logger, message)

    assert (record.levelno, record.levelname) == (logging.WARNING, "WARNING")
    assert record.exc_info is None


def test_a2a_sdk_failure_stays_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = logged(caplog, DISPATCHER, "Unhandled exception")

    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


def test_a2a_filter_is_added_once_however_many_apps_are_made() -> None:
    add_a2a_route(FastAPI())
    add_a2a_route(FastAPI())

    assert len(logging.getLogger(DISPATCHER).filters) == 1
