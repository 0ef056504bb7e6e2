"""An exception no route handled: a generic -32603 (500) for the caller, an
ERROR line with the traceback for the log, both with the request's
correlation id, as the services stack the middleware."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from shared.auth.middleware import CorrelationMiddleware
from shared.internal_errors import InternalErrorMiddleware
from shared.logging import JsonFormatter
from shared.runtime import Runtime
from shared.service import ServiceParts, create_service_app
from shared.settings import ServiceSettings
from tests.shared.kit import asgi_client


async def crash(request: Request) -> Response:
    raise RuntimeError("a bug of ours")


async def fine(request: Request) -> Response:
    return PlainTextResponse("ok")


async def crash_midway(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"half"
        raise RuntimeError("a bug of ours, once the answer began")

    return StreamingResponse(body())


@pytest.fixture
def app() -> Starlette:
    return Starlette(
        routes=[
            Route("/crash", crash),
            Route("/fine", fine),
            Route("/midway", crash_midway),
        ],
        middleware=[
            Middleware(CorrelationMiddleware),
            Middleware(InternalErrorMiddleware),
        ],
    )


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """The module's log lines, formatted as the services write them."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("shared.internal_errors")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


async def test_internal_error_is_a_generic_500_with_the_correlation_id(
    app: Starlette, log: io.StringIO
) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/crash", headers={"X-Correlation-ID": "cid-500"})

    assert response.status_code == 500
    assert response.json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": "Internal error"},
        "id": None,
    }
    assert response.headers["x-correlation-id"] == "cid-500"
    assert "a bug of ours" not in response.text


async def test_internal_error_is_logged_with_traceback_and_correlation_id(
    app: Starlette, log: io.StringIO
) -> None:
    async with asgi_client(app) as client:
        await client.get("/crash", headers={"X-Correlation-ID": "cid-500"})

    [line] = [json.loads(raw) for raw in log.getvalue().splitlines()]
    assert (line["event"], line["level"], line["path"]) == (
        "request.internal_error",
        "error",
        "/crash",
    )
    assert line["correlation_id"] == "cid-500"
    assert "RuntimeError: a bug of ours" in line["exception"]


async def test_a_services_internal_error_carries_the_correlation_id(
    log: io.StringIO,
) -> None:
    async def build(runtime: Runtime, stack: AsyncExitStack) -> ServiceParts:
        raise AssertionError("the app is not started here")

    settings = ServiceSettings(
        service_name="extractor",
        issuer="https://idp.test/realms/a2a-mesh",
        db_ca_file=Path("/ca.pem"),
    )
    service = create_service_app(settings, description="test", build=build)
    service.add_route("/crash", crash)

    async with asgi_client(service) as client:
        response = await client.get("/crash", headers={"X-Correlation-ID": "cid-svc"})

    assert response.status_code == 500
    assert response.headers["x-correlation-id"] == "cid-svc"
    assert json.loads(log.getvalue())["correlation_id"] == "cid-svc"


async def test_a_request_that_succeeds_is_passed_through(app: Starlette) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/fine")

    assert (response.status_code, response.text) == (200, "ok")


async def test_an_error_after_the_answer_began_is_not_answered_twice(
    app: Starlette, log: io.StringIO
) -> None:
    async with asgi_client(app) as client:
        with pytest.raises(RuntimeError, match="once the answer began"):
            await client.get("/midway")

    assert "request.internal_error" in log.getvalue()
