"""The validator app built in-process by its factory, behind the real middleware."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa

from services.identity.keys import public_jwk
from services.validator.app import create_app
from services.validator.settings import ValidatorSettings
from shared.secrets import StaticSecretStore

ISSUER = "https://idp.invalid/realms/a2a-mesh"
KEY = rsa.generate_private_key(65537, 2048)
JWK = public_jwk(KEY.public_key(), "sig", "RS256")


def _token(roles: list[str], audience: str = "validator") -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": audience,
        "sub": str(uuid.uuid4()),
        "azp": "orchestrator",
        "exp": now + 60,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "typ": "Bearer",
        "realm_access": {"roles": roles},
    }
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": JWK["kid"]})


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ValidatorSettings(issuer=ISSUER), secrets=StaticSecretStore({}))
    with respx.mock(assert_all_called=True) as idp:
        idp.get(f"{ISSUER}/protocol/openid-connect/certs").respond(json={"keys": [JWK]})
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="https://validator.test"
            ) as http:
                yield http


def _rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


async def test_validate_document_scores_an_extraction(
    client: httpx.AsyncClient,
) -> None:
    extraction = {
        "s3_key": "uploads/a.txt",
        "content_hash": "0" * 64,
        "size_bytes": 10,
        "content_type": "text/plain",
        "format": "text",
        "document_type": "document",
        "text": "",
    }

    response = await client.post(
        "/a2a",
        json=_rpc(
            "validate_document",
            {"document_type": "document", "extracted_data": extraction},
        ),
        headers={"Authorization": f"Bearer {_token(['orchestrator'])}"},
    )

    assert response.status_code == 200
    result = response.json()["result"]
    assert result["score"] == 0
    assert result["passed"] is False
    assert all(rule["reason"] for rule in result["rules"])


async def test_validator_refuses_a_token_for_another_audience(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/a2a",
        json=_rpc("get_validation_rules", {"document_type": "invoice"}),
        headers={"Authorization": f"Bearer {_token(['admin'], 'archivist')}"},
    )

    assert response.status_code == 401
    assert response.json()["error"]["data"] == {"reason": "wrong_audience"}


async def test_agent_card_lists_the_methods_and_the_token_url(
    client: httpx.AsyncClient,
) -> None:
    card = (await client.get("/.well-known/agent-card.json")).json()

    assert [skill["id"] for skill in card["skills"]] == [
        "validate_document",
        "get_validation_rules",
    ]
    flow = card["securitySchemes"]["keycloak"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == f"{ISSUER}/protocol/openid-connect/token"


async def test_ready_reports_the_identity_provider_keys(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/ready")

    assert response.status_code == 200
    assert response.json()["checks"] == {"identity-provider": "ok"}


async def test_a_lone_surrogate_in_a_param_name_is_answered_as_32602(
    client: httpx.AsyncClient,
) -> None:
    body = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "get_validation_rules",'
        b' "params": {"document_type": "invoice", "\\ud800": 1}}'
    )

    response = await client.post(
        "/a2a",
        content=body,
        headers={
            "Authorization": f"Bearer {_token(['admin'])}",
            "Content-Type": "application/json",
        },
    )

    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32602
