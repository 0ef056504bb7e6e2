"""Structured logging: the JSON line, the jti prefix, and no token in any log."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette

from shared.auth.gate import SecurityGate
from shared.logging import JsonFormatter, correlation_id, jti_prefix, log_event
from tests.shared.kit import (
    MemoryStore,
    SigningKey,
    asgi_client,
    claims,
    protected_app,
    sign,
)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("extractor"))
    logger = logging.getLogger("tests.shared.logging-probe")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_formatter_emits_one_object_with_event_fields_and_correlation_id(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    token = correlation_id.set("cid-42")
    try:
        log_event(logger, "s3.put", key="uploads/a.pdf", size=12)
    finally:
        correlation_id.reset(token)

    [line] = lines(stream)
    record = json.loads(line)
    assert record["event"] == "s3.put"
    assert record["key"] == "uploads/a.pdf"
    assert record["size"] == 12
    assert record["correlation_id"] == "cid-42"
    assert record["service"] == "extractor"
    assert record["level"] == "info"
    assert record["logger"] == "tests.shared.logging-probe"
    assert record["ts"].endswith("+00:00")


def test_json_formatter_without_correlation_id_omits_it(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    log_event(logger, "service.started", port=8002)

    [line] = lines(stream)
    assert "correlation_id" not in json.loads(line)


def test_json_formatter_keeps_multiline_exception_on_one_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    try:
        raise RuntimeError("first\nsecond")
    except RuntimeError:
        log_event(logger, "rpc.internal_error", level=logging.ERROR, exc_info=True)

    [line] = lines(stream)
    record = json.loads(line)
    assert record["level"] == "error"
    assert "RuntimeError: first\nsecond" in record["exception"]


def test_json_formatter_serialises_unusual_field_values(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    log_event(logger, "odd", versions=["0001"], when=object, text="é")

    record = json.loads(lines(stream)[0])
    assert record["versions"] == ["0001"]
    assert record["text"] == "é"
    assert isinstance(record["when"], str)


def test_log_event_below_logger_level_is_not_emitted(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.setLevel(logging.WARNING)

    log_event(logger, "call.done", target="extractor")

    assert lines(stream) == []


def test_jti_prefix_returns_eight_characters() -> None:
    assert jti_prefix("0123456789abcdef-full-jti") == "01234567"


@pytest.mark.parametrize("jti", [None, ""])
def test_jti_prefix_of_missing_jti_is_none(jti: object) -> None:
    assert jti_prefix(jti) is None


def test_jti_prefix_of_short_jti_is_the_jti() -> None:
    assert jti_prefix("abc") == "abc"


@pytest.fixture
def app(gate: SecurityGate) -> Starlette:
    return protected_app(gate)


def formatted(caplog: pytest.LogCaptureFixture) -> str:
    formatter = JsonFormatter("extractor")
    return "\n".join(formatter.format(record) for record in caplog.records)


async def test_refused_requests_never_log_the_token(
    app: Starlette,
    gate: SecurityGate,
    store: MemoryStore,
    caplog: pytest.LogCaptureFixture,
    rsa_signing_key: SigningKey,
    stranger_key: SigningKey,
) -> None:
    caplog.set_level(logging.DEBUG)
    past = int(time.time()) - 3600
    tokens = {
        "expired": sign(rsa_signing_key, claims(iat=past - 60, exp=past)),
        "bad_signature": sign(stranger_key),
        "wrong_audience": sign(rsa_signing_key, claims(aud="archivist")),
    }

    async with asgi_client(app) as client:
        for token in tokens.values():
            response = await client.post(
                "/a2a", json={}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401
        basic = await client.post(
            "/a2a", json={}, headers={"Authorization": "Basic c2VydmljZTpzM2NyZXQ="}
        )
        assert basic.status_code == 401
    await gate.audit.flush()

    output = formatted(caplog) + caplog.text + repr(store.events)
    refusals = [r for r in caplog.records if r.getMessage() == "authentication_failure"]
    assert [r.__dict__["mesh_fields"]["reason"] for r in refusals] == [
        *tokens,
        "malformed_token",
    ]
    assert [e.reason for e in store.events] == [*tokens, "malformed_token"]
    for token in tokens.values():
        _, payload, signature = token.split(".")
        assert token not in output
        assert payload not in output
        assert signature not in output
    assert "c2VydmljZTpzM2NyZXQ=" not in output


async def test_refusal_of_a_verified_token_logs_only_the_jti_prefix(
    app: Starlette,
    gate: SecurityGate,
    store: MemoryStore,
    caplog: pytest.LogCaptureFixture,
    rsa_signing_key: SigningKey,
) -> None:
    caplog.set_level(logging.DEBUG)
    # A valid token from a client the service does not serve: refused after
    # verification, so the refusal can name the token, by its prefix only.
    payload = claims(jti="abcdef0123456789-unique-token-id", azp="viewer")
    token = sign(rsa_signing_key, payload)

    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a", json={}, headers={"Authorization": f"Bearer {token}"}
        )
    await gate.audit.flush()

    assert response.status_code == 403
    output = formatted(caplog) + caplog.text + repr(store.events)
    [refused] = [r for r in caplog.records if r.getMessage() == "authorization_failure"]
    assert refused.__dict__["mesh_fields"]["jti"] == "abcdef01"
    assert [e.jti_prefix for e in store.events] == ["abcdef01"]
    assert payload["jti"] not in output
    assert token not in output
    assert token.split(".")[2] not in output


async def test_accepted_request_logs_nothing_of_the_token(
    app: Starlette, caplog: pytest.LogCaptureFixture, rsa_signing_key: SigningKey
) -> None:
    caplog.set_level(logging.DEBUG)
    payload = claims(jti="abcdef0123456789-unique-token-id")
    token = sign(rsa_signing_key, payload)

    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a", json={}, headers={"Authorization": f"Bearer {token}"}
        )

    assert response.status_code == 200
    output = formatted(caplog) + caplog.text
    assert payload["jti"] not in output
    assert token not in output
    assert token.split(".")[1] not in output
    assert token.split(".")[2] not in output
