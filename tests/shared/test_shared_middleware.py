"""AuthMiddleware and CorrelationMiddleware in front of a tiny Starlette app,
with the real security gate over an in-memory store."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from shared.auth.dpop import DpopKey
from shared.auth.gate import SecurityGate
from shared.auth.middleware import AuthMiddleware
from shared.auth.policy import SecurityPolicy
from shared.auth.revocation import RevocationList
from shared.auth.verifier import TokenVerifier
from shared.logging import correlation_id
from tests.shared.kit import (
    A2A_URL,
    BASE_URL,
    BODY_LIMIT,
    TEST_POLICY,
    MemoryStore,
    SigningKey,
    asgi_client,
    bound_claims,
    claims,
    make_gate,
    protected_app,
    sign,
)

BARE_CHALLENGE = 'Bearer realm="a2a-mesh"'
INVALID_CHALLENGE = 'Bearer realm="a2a-mesh", error="invalid_token"'
DPOP_CHALLENGE = 'DPoP algs="ES256 PS256 RS256", error="invalid_dpop_proof"'
BODY = b'{"jsonrpc":"2.0","id":1,"method":"extract_document","params":{}}'


@pytest.fixture
def app(gate: SecurityGate) -> Starlette:
    return protected_app(gate)


@pytest.fixture
def dpop_key() -> DpopKey:
    return DpopKey()


def dpop_headers(
    key: DpopKey, token: str, *, body: bytes = BODY, url: str = A2A_URL
) -> dict[str, str]:
    """What the mesh's client sends: the bound token and a proof over ``body``."""
    return {
        "Authorization": f"DPoP {token}",
        "DPoP": key.proof("POST", url, access_token=token, body=body),
        "Content-Type": "application/json",
    }


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

    [record] = [r for r in caplog.records if r.getMessage() == "authentication_failure"]
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
    assert body["body"] == "{}"


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


async def test_auth_without_gate_uses_the_runtime_on_app_state(
    mesh_verifier: TokenVerifier,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    dpop_key: DpopKey,
) -> None:
    async def a2a(request: Request) -> JSONResponse:
        return JSONResponse({"client_id": request.state.principal.client_id})

    app = Starlette(
        routes=[Route("/a2a", a2a, methods=["POST"])],
        middleware=[Middleware(AuthMiddleware, body_limits={"/a2a": BODY_LIMIT})],
    )
    # The proof must name the runtime's public URL for the request to pass.
    app.state.runtime = SimpleNamespace(
        gate=make_gate(mesh_verifier, store, accept_bearer=False),
        settings=SimpleNamespace(public_base_url=BASE_URL),
    )
    token = sign(rsa_signing_key, bound_claims(dpop_key))

    async with asgi_client(app) as client:
        refused = await client.post("/a2a", content=BODY)
        accepted = await client.post(
            "/a2a", content=BODY, headers=dpop_headers(dpop_key, token)
        )

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
    gate: SecurityGate,
) -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    middleware = AuthMiddleware(
        app, body_limits={"/a2a": BODY_LIMIT}, gate=gate, base_url=BASE_URL
    )
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


async def test_auth_dpop_bound_request_reaches_the_app_with_its_exact_body(
    app: Starlette, rsa_signing_key: SigningKey, dpop_key: DpopKey
) -> None:
    token = sign(rsa_signing_key, bound_claims(dpop_key))

    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a", content=BODY, headers=dpop_headers(dpop_key, token)
        )

    assert response.status_code == 200
    # The middleware read the body for the proof; the route still gets it whole.
    assert response.json()["body"] == BODY.decode()


async def test_auth_proof_naming_the_host_header_url_is_refused(
    app: Starlette, rsa_signing_key: SigningKey, dpop_key: DpopKey
) -> None:
    # The client reached http://testserver, but the service's public URL is
    # configured: a proof for any other URL was made for another service.
    token = sign(rsa_signing_key, bound_claims(dpop_key))
    headers = dpop_headers(dpop_key, token, url="http://testserver/a2a")

    async with asgi_client(app) as client:
        response = await client.post("/a2a", content=BODY, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == DPOP_CHALLENGE
    assert refusal_reason(response) == "dpop_wrong_url"


async def test_auth_body_changed_after_signing_is_refused(
    app: Starlette, rsa_signing_key: SigningKey, dpop_key: DpopKey
) -> None:
    token = sign(rsa_signing_key, bound_claims(dpop_key))
    tampered = BODY.replace(b"extract_document", b"archive_document")

    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a", content=tampered, headers=dpop_headers(dpop_key, token)
        )

    assert response.status_code == 401
    assert refusal_reason(response) == "dpop_body_mismatch"


async def test_auth_replayed_request_is_refused_with_32004(
    app: Starlette, rsa_signing_key: SigningKey, dpop_key: DpopKey
) -> None:
    token = sign(rsa_signing_key, bound_claims(dpop_key))
    headers = dpop_headers(dpop_key, token)

    async with asgi_client(app) as client:
        first = await client.post("/a2a", content=BODY, headers=headers)
        replayed = await client.post("/a2a", content=BODY, headers=headers)

    assert first.status_code == 200
    assert replayed.status_code == 401
    assert replayed.headers["www-authenticate"] == DPOP_CHALLENGE
    assert replayed.json()["error"] == {
        "code": -32004,
        "message": "DPoP proof already used",
        "data": {"reason": "proof_replayed"},
    }


async def test_auth_bearer_token_where_dpop_is_required_gets_a_dpop_challenge(
    mesh_verifier: TokenVerifier, store: MemoryStore, rsa_signing_key: SigningKey
) -> None:
    app = protected_app(make_gate(mesh_verifier, store, accept_bearer=False))

    response = await post_a2a(app, {"Authorization": f"Bearer {sign(rsa_signing_key)}"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == DPOP_CHALLENGE
    assert refusal_reason(response) == "dpop_required"


async def test_auth_client_not_among_the_callers_gets_403_without_challenge(
    app: Starlette, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(azp="viewer"))

    response = await post_a2a(app, {"Authorization": f"Bearer {token}"})

    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert response.json()["error"]["code"] == -32002
    assert response.json()["error"]["data"] == {"reason": "client_not_allowed"}


async def test_auth_revoked_token_is_refused_with_32005(
    mesh_verifier: TokenVerifier, store: MemoryStore, rsa_signing_key: SigningKey
) -> None:
    revocations = RevocationList(store)
    app = protected_app(make_gate(mesh_verifier, store, revocations=revocations))
    payload = claims()
    store.revoke(payload["jti"])
    await revocations.reload()

    response = await post_a2a(
        app, {"Authorization": f"Bearer {sign(rsa_signing_key, payload)}"}
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE
    assert response.json()["error"]["code"] == -32005
    assert response.json()["error"]["data"] == {"reason": "token_revoked"}


async def test_auth_rate_limited_caller_gets_429_with_retry_after(
    mesh_verifier: TokenVerifier, store: MemoryStore, rsa_signing_key: SigningKey
) -> None:
    policy = SecurityPolicy.parse(
        TEST_POLICY.replace("requests_per_minute = 1000", "requests_per_minute = 1")
    )
    app = protected_app(make_gate(mesh_verifier, store, policy=policy))
    headers = {"Authorization": f"Bearer {sign(rsa_signing_key)}"}

    async with asgi_client(app) as client:
        first = await client.post("/a2a", json={}, headers=headers)
        second = await client.post("/a2a", json={}, headers=headers)

    assert first.status_code == 200
    assert second.status_code == 429
    assert "www-authenticate" not in second.headers
    error = second.json()["error"]
    assert error["code"] == -32003
    assert error["data"]["reason"] == "rate_limited"
    # The oldest request leaves the window a minute after it was made.
    assert second.headers["retry-after"] == str(error["data"]["retry_after"])
    assert 59 <= error["data"]["retry_after"] <= 60


async def test_auth_big_body_without_a_token_is_refused_before_it_is_read(
    app: Starlette, gate: SecurityGate, store: MemoryStore
) -> None:
    # A stranger must not make the service hold a large body: the token is
    # checked first, and only its refusal is recorded.
    async with asgi_client(app) as client:
        response = await client.post("/a2a", content=b"x" * (BODY_LIMIT + 1))
    await gate.audit.flush()

    assert response.status_code == 401
    assert response.json()["error"]["data"] == {"reason": "missing_token"}
    assert [(e.event, e.reason) for e in store.events] == [
        ("authentication_failure", "missing_token")
    ]


async def test_auth_stolen_bound_token_without_proof_is_refused_before_the_body(
    app: Starlette, rsa_signing_key: SigningKey, dpop_key: DpopKey
) -> None:
    # The thief lacks the key: nothing of a large body is read for him.
    token = sign(rsa_signing_key, bound_claims(dpop_key))

    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a",
            content=b"x" * (BODY_LIMIT + 1),
            headers={"Authorization": f"DPoP {token}"},
        )

    assert response.status_code == 401
    assert response.json()["error"]["data"] == {"reason": "dpop_proof_missing"}


async def test_auth_body_over_the_limit_is_refused_with_413(
    app: Starlette, gate: SecurityGate, store: MemoryStore, rsa_signing_key: SigningKey
) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a",
            content=b"x" * (BODY_LIMIT + 1),
            headers={"Authorization": f"Bearer {sign(rsa_signing_key)}"},
        )
    await gate.audit.flush()

    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": -32600,
        "message": f"Request body exceeds {BODY_LIMIT} bytes",
        "data": {"reason": "too_large"},
    }
    assert [(e.event, e.reason) for e in store.events] == [
        ("invalid_input", "too_large")
    ]


async def test_auth_streamed_body_over_the_limit_is_refused_with_413(
    app: Starlette, rsa_signing_key: SigningKey
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must hold while the body arrives.
        for _ in range(BODY_LIMIT // 100 + 1):
            yield b"x" * 100

    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a",
            content=chunks(),
            headers={"Authorization": f"Bearer {sign(rsa_signing_key)}"},
        )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"]["data"] == {"reason": "too_large"}


async def test_auth_body_of_exactly_the_limit_is_accepted(
    app: Starlette, rsa_signing_key: SigningKey
) -> None:
    body = json.dumps({"pad": "x" * (BODY_LIMIT - 11)}).encode()
    assert len(body) == BODY_LIMIT

    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a",
            content=body,
            headers={"Authorization": f"Bearer {sign(rsa_signing_key)}"},
        )

    assert response.status_code == 200
    assert response.json()["body"] == body.decode()


async def test_auth_database_outage_during_the_replay_check_is_32013(
    app: Starlette, store: MemoryStore, rsa_signing_key: SigningKey, dpop_key: DpopKey
) -> None:
    # A lost database is a dependency failure the caller may retry, not our bug.
    token = sign(rsa_signing_key, bound_claims(dpop_key))
    store.down = True

    async with asgi_client(app) as client:
        response = await client.post(
            "/a2a", content=BODY, headers=dpop_headers(dpop_key, token)
        )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == {
        "code": -32013,
        "message": "database is unavailable",
        "data": {"dependency": "database"},
    }
    assert "body" not in response.json()


async def test_auth_body_trickling_past_the_deadline_is_refused_with_408(
    gate: SecurityGate, store: MemoryStore, rsa_signing_key: SigningKey
) -> None:
    reached: list[bytes] = []

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(b"route")

    app = AuthMiddleware(
        route,
        body_limits={"/a2a": BODY_LIMIT},
        gate=gate,
        base_url=BASE_URL,
        body_timeout_seconds=0.2,
    )
    token = sign(rsa_signing_key).encode()
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/a2a",
        "headers": [(b"authorization", b"Bearer " + token)],
        "client": ("127.0.0.1", 50000),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        # One byte now and then, never the end of the body.
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    await gate.audit.flush()

    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"]["data"] == {"reason": "body_timeout"}
    assert reached == []
    assert [(e.event, e.reason) for e in store.events] == [
        ("invalid_input", "body_timeout")
    ]
