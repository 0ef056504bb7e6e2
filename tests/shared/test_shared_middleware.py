"""AuthMiddleware and CorrelationMiddleware in front of a tiny Starlette app."""

from __future__ import annotations

import logging
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from shared.auth.middleware import AuthMiddleware
from shared.auth.verifier import TokenVerifier
from shared.logging import correlation_id
from tests.shared.kit import SigningKey, asgi_client, claims, protected_app, sign

BARE_CHALLENGE = 'Bearer realm="a2a-mesh"'
INVALID_CHALLENGE = 'Bearer realm="a2a-mesh", error="invalid_token"'


@pytest.fixture
def app(mesh_verifier: TokenVerifier) -> Starlette:
    return protected_app(mesh_verifier)


async def post_a2a(app: Starlette, headers: dict[str, str] | None = None) -> Any:
    async with asgi_client(app) as client:
        return await client.post("/a2a", json={}, headers=headers or {})


async def raw_request(
    app: Starlette, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes]]:
    """Calls the app through bare ASGI, with header bytes no HTTP client would send."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"])


def refusal_reason(response: Any) -> str:
    body = response.json()
    assert body["error"]["code"] == -32001
    assert body["id"] is None
    reason: str = body["error"]["data"]["reason"]
    return reason


async def test_auth_missing_header_returns_401_with_bare_bearer_challenge(
    app: Starlette,
) -> None:
    response = await post_a2a(app)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE
    assert response.headers["cache-control"] == "no-store"
    assert refusal_reason(response) == "missing_token"


@pytest.mark.parametrize(
    "value",
    ["Basic b3JjaGVzdHJhdG9yOnMzY3JldA==", "Bearer", "Bearer    ", "Token abc"],
    ids=["basic", "bearer-no-token", "bearer-blank", "other-scheme"],
)
async def test_auth_malformed_header_returns_401_malformed_token(
    app: Starlette, value: str
) -> None:
    response = await post_a2a(app, {"Authorization": value})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE
    assert refusal_reason(response) == "malformed_token"


async def test_auth_expired_token_returns_401_expired_with_invalid_token_challenge(
    app: Starlette, rsa_signing_key: SigningKey
) -> None:
    past = int(time.time()) - 3600
    token = sign(rsa_signing_key, claims(iat=past - 60, exp=past))

    response = await post_a2a(app, {"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE
    assert refusal_reason(response) == "expired"


async def test_auth_refusal_is_logged_at_warning_with_reason(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    await post_a2a(app, {"Authorization": "Basic abc"})

    [record] = [r for r in caplog.records if r.getMessage() == "auth.refused"]
    assert record.levelno == logging.WARNING
    assert record.__dict__["mesh_fields"]["reason"] == "malformed_token"
    assert record.__dict__["mesh_fields"]["path"] == "/a2a"


async def test_auth_valid_token_places_principal_in_request_state(
    app: Starlette, rsa_signing_key: SigningKey
) -> None:
    payload = claims(azp="lambda", realm_access={"roles": ["lambda"]})
    token = sign(rsa_signing_key, payload)

    response = await post_a2a(app, {"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    body = response.json()
    assert body["subject"] == payload["sub"]
    assert body["client_id"] == "lambda"
    assert body["roles"] == ["lambda"]


async def test_auth_bearer_scheme_is_case_insensitive(
    app: Starlette, rsa_signing_key: SigningKey
) -> None:
    response = await post_a2a(app, {"Authorization": f"bearer {sign(rsa_signing_key)}"})

    assert response.status_code == 200


async def test_auth_unprotected_path_passes_without_token(app: Starlette) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert "www-authenticate" not in response.headers


async def test_auth_protected_subpath_requires_token(app: Starlette) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/a2a/anything", json={})

    assert response.status_code == 401
    assert refusal_reason(response) == "missing_token"


async def test_auth_path_sharing_the_prefix_is_not_protected(app: Starlette) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/a2a-public", json={})

    assert response.status_code == 404


async def test_auth_without_verifier_uses_the_runtime_on_app_state(
    mesh_verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    async def a2a(request: Request) -> JSONResponse:
        return JSONResponse({"client_id": request.state.principal.client_id})

    app = Starlette(
        routes=[Route("/a2a", a2a, methods=["POST"])],
        middleware=[Middleware(AuthMiddleware)],
    )
    app.state.runtime = SimpleNamespace(verifier=mesh_verifier)

    refused = await post_a2a(app)
    accepted = await post_a2a(app, {"Authorization": f"Bearer {sign(rsa_signing_key)}"})

    assert refused.status_code == 401
    assert accepted.json() == {"client_id": "orchestrator"}


async def test_correlation_well_formed_id_is_adopted_and_echoed(
    app: Starlette,
) -> None:
    offered = "req-2026.01_ABC-xyz"
    async with asgi_client(app) as client:
        response = await client.get("/health", headers={"X-Correlation-ID": offered})

    assert response.headers["x-correlation-id"] == offered
    assert response.json()["correlation_id"] == offered


async def test_correlation_missing_id_is_generated_and_echoed(app: Starlette) -> None:
    async with asgi_client(app) as client:
        response = await client.get("/health")

    generated = response.headers["x-correlation-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert response.json()["correlation_id"] == generated


@pytest.mark.parametrize(
    "offered",
    [b"a" * 65, b"a" * 200, b"has space", b"line\nbreak", b"semi;colon", b""],
    ids=["65-chars", "200-chars", "space", "newline", "semicolon", "empty"],
)
async def test_correlation_malformed_id_is_replaced(
    app: Starlette, offered: bytes
) -> None:
    status, headers = await raw_request(
        app, "/health", [(b"x-correlation-id", offered)]
    )

    assert status == 200
    echoed = headers[b"x-correlation-id"]
    assert echoed != offered
    assert re.fullmatch(rb"[0-9a-f]{32}", echoed)


async def test_correlation_id_longest_allowed_is_adopted(app: Starlette) -> None:
    offered = b"a" * 64

    _, headers = await raw_request(app, "/health", [(b"x-correlation-id", offered)])

    assert headers[b"x-correlation-id"] == offered


async def test_correlation_id_is_echoed_on_auth_refusal(app: Starlette) -> None:
    response = await post_a2a(app, {"X-Correlation-ID": "cid-refused"})

    assert response.status_code == 401
    assert response.headers["x-correlation-id"] == "cid-refused"


async def test_correlation_contextvar_is_reset_after_the_request(
    app: Starlette,
) -> None:
    async with asgi_client(app) as client:
        await client.get("/health", headers={"X-Correlation-ID": "cid-1"})

    assert correlation_id.get() is None


async def test_auth_websocket_on_protected_path_is_closed_without_reaching_app(
    mesh_verifier: TokenVerifier,
) -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    middleware = AuthMiddleware(app, verifier=mesh_verifier, protected=("/a2a",))
    await middleware(
        {"type": "websocket", "path": "/a2a", "headers": []}, receive, send
    )

    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert reached == []


async def test_auth_two_authorization_headers_are_refused_as_malformed(
    app: Starlette, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims())

    status, headers = await raw_request(
        app,
        "/a2a",
        [(b"authorization", f"Bearer {token}".encode())] * 2,
    )

    assert status == 401
    assert headers[b"www-authenticate"] == INVALID_CHALLENGE.encode()
