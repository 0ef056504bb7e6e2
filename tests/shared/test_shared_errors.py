"""The error table against SYSTEM.md, and the shape of each error's JSON-RPC form."""

from __future__ import annotations

import pytest

from shared.errors import (
    ERROR_TABLE,
    AuthError,
    DependencyUnavailable,
    DocumentNotFound,
    DocumentRejected,
    Forbidden,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MeshError,
    MethodNotFound,
    ParseError,
    PayloadTooLarge,
    RateLimited,
    RemoteError,
    ReplayDetected,
    TaskNotFound,
    TokenRevoked,
    Unauthenticated,
)

# Codes from SYSTEM.md ("Error codes"); HTTP statuses of the auth layer from the
# same paragraph, the others as errors.py documents them.
EXPECTED: list[tuple[type[MeshError], int, int]] = [
    (ParseError, -32700, 400),
    (InvalidRequest, -32600, 400),
    (MethodNotFound, -32601, 200),
    (InvalidParams, -32602, 200),
    (InternalError, -32603, 500),
    (Unauthenticated, -32001, 401),
    (Forbidden, -32002, 403),
    (RateLimited, -32003, 429),
    (ReplayDetected, -32004, 401),
    (TokenRevoked, -32005, 401),
    (DocumentNotFound, -32010, 200),
    (DocumentRejected, -32011, 200),
    (TaskNotFound, -32012, 200),
    (DependencyUnavailable, -32013, 200),
    (PayloadTooLarge, -32600, 413),
]


@pytest.mark.parametrize(
    ("error", "code", "status"), EXPECTED, ids=[e[0].__name__ for e in EXPECTED]
)
def test_error_table_maps_class_to_code_and_status(
    error: type[MeshError], code: int, status: int
) -> None:
    assert ERROR_TABLE[error] == (code, status)
    assert (error.code, error.http_status) == (code, status)


def test_error_table_lists_every_error_class() -> None:
    assert set(ERROR_TABLE) == {error for error, _, _ in EXPECTED}


@pytest.mark.parametrize(
    "error", [Unauthenticated, Forbidden, ReplayDetected, TokenRevoked]
)
def test_auth_error_carries_its_reason_in_data(error: type[AuthError]) -> None:
    refusal = error("expired")

    assert refusal.reason == "expired"
    assert refusal.to_jsonrpc() == {
        "code": error.code,
        "message": error.default_message,
        "data": {"reason": "expired"},
    }


def test_rate_limited_says_when_to_try_again() -> None:
    refusal = RateLimited(
        "rate_limited", "More than 5 requests a minute", retry_after=7
    )

    assert refusal.reason == "rate_limited"
    assert refusal.retry_after == 7
    assert refusal.to_jsonrpc() == {
        "code": -32003,
        "message": "More than 5 requests a minute",
        "data": {"reason": "rate_limited", "retry_after": 7},
    }


def test_rate_limited_without_retry_after_says_one_second() -> None:
    assert RateLimited("rate_limited").to_jsonrpc()["data"] == {
        "reason": "rate_limited",
        "retry_after": 1,
    }


def test_error_without_data_omits_the_data_member() -> None:
    assert InternalError().to_jsonrpc() == {"code": -32603, "message": "Internal error"}


def test_document_not_found_by_id_names_the_document() -> None:
    error = DocumentNotFound(document_id="doc-1")

    assert error.data == {"reason": "missing_document", "document_id": "doc-1"}


def test_document_rejected_carries_its_reason() -> None:
    error = DocumentRejected("encrypted_pdf", "The PDF is encrypted")

    assert error.to_jsonrpc()["data"] == {"reason": "encrypted_pdf"}


def test_dependency_unavailable_names_the_dependency() -> None:
    error = DependencyUnavailable("s3")

    assert error.to_jsonrpc() == {
        "code": -32013,
        "message": "s3 is unavailable",
        "data": {"dependency": "s3"},
    }


def test_remote_error_keeps_the_remote_code() -> None:
    error = RemoteError(-32012, "No task 't-1'", {"task_id": "t-1"})

    assert error.to_jsonrpc() == {
        "code": -32012,
        "message": "No task 't-1'",
        "data": {"task_id": "t-1"},
    }
