"""Every service refuses a call without a valid token, and a caller without the
role, before anything is executed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from services.launcher.mesh import LocalMesh
from shared.auth.dpop import DpopKey
from tests.helpers.mesh import client_token, post_rpc
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

SERVICES = ("orchestrator", "extractor", "validator", "archivist")


def _call(service: str, key: str) -> tuple[str, dict[str, Any]]:
    """A state-changing (or at least logged) call to ``service`` about ``key``."""
    extraction = {
        "s3_key": key,
        "content_hash": "0" * 64,
        "size_bytes": 5,
        "content_type": "text/plain",
        "format": "text",
        "document_type": "document",
        "text": "hello",
    }
    validation = {
        "document_type": "document",
        "score": 10,
        "passed": False,
        "rules": [],
    }
    calls: dict[str, tuple[str, dict[str, Any]]] = {
        "orchestrator": ("process_document", {"s3_key": key}),
        "extractor": ("extract_document", {"s3_key": key}),
        "validator": (
            "validate_document",
            {"document_type": "document", "extracted_data": extraction},
        ),
        "archivist": (
            "archive_document",
            {
                "task_id": str(uuid.uuid4()),
                "extraction": extraction,
                "validation": validation,
            },
        ),
    }
    return calls[service]


async def _nothing_happened(
    mesh: LocalMesh, database: asyncpg.Connection, service: str, key: str
) -> None:
    tasks = await database.fetchval("SELECT count(*) FROM tasks WHERE s3_key = $1", key)
    documents = await database.fetchval(
        "SELECT count(*) FROM documents WHERE s3_key = $1", key
    )
    assert (tasks, documents) == (0, 0)
    # Extraction and validation leave no rows; their logs name every key they touch.
    assert key not in mesh.processes[service].log_path.read_text()


BadToken = Callable[[TokenForge, str], str | None]

BAD_TOKENS: dict[str, tuple[BadToken, str]] = {
    "no token": (lambda forge, aud: None, "missing_token"),
    "not a JWT": (lambda forge, aud: "not-a-jwt", "malformed_token"),
    "expired": (lambda forge, aud: forge.expired(aud, ["admin"]), "expired"),
    "signed by another key": (
        lambda forge, aud: forge.other_key(aud, ["admin"]),
        "bad_signature",
    ),
    "alg none": (
        lambda forge, aud: forge.alg_none(aud, ["admin"]),
        "algorithm_not_allowed",
    ),
    "HS256 keyed with the public key": (
        lambda forge, aud: forge.hmac_with_public_key(aud, ["admin"]),
        "algorithm_not_allowed",
    ),
    "wrong issuer": (
        lambda forge, aud: forge.wrong_issuer(aud, ["admin"]),
        "wrong_issuer",
    ),
    "wrong audience": (
        lambda forge, aud: forge.wrong_audience(aud, ["admin"]),
        "wrong_audience",
    ),
    "an ID token, not an access token": (
        lambda forge, aud: forge.valid(aud, ["admin"], typ="ID"),
        "invalid_token",
    ),
}


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_token_is_refused_with_401_and_nothing_runs(
    mesh: LocalMesh,
    forge: TokenForge,
    database: asyncpg.Connection,
    service: str,
    case: str,
) -> None:
    make_token, reason = BAD_TOKENS[case]
    key = f"uploads/refused/{uuid.uuid4().hex}.txt"
    method, params = _call(service, key)

    response = await post_rpc(
        mesh, service, method, params, token=make_token(forge, service)
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="a2a-mesh"')
    body = response.json()
    assert body["error"]["code"] == -32001
    assert body["error"]["data"] == {"reason": reason}
    assert body["id"] is None
    await _nothing_happened(mesh, database, service, key)


@pytest.mark.parametrize("service", SERVICES)
async def test_caller_without_the_role_gets_32002_and_nothing_runs(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, service: str
) -> None:
    key = f"uploads/forbidden/{uuid.uuid4().hex}.txt"
    method, params = _call(service, key)

    response = await _post_as(mesh, forge, service, method, params, ["viewer"])

    assert response.status_code == 403
    assert response.json()["error"]["code"] == -32002
    assert response.json()["error"]["data"] == {"reason": "missing_role"}
    await _nothing_happened(mesh, database, service, key)


@pytest.mark.parametrize("client_id", ["no-roles", "viewer"])
async def test_real_client_without_the_role_cannot_start_a_task(
    mesh: LocalMesh, database: asyncpg.Connection, client_id: str
) -> None:
    key = f"uploads/forbidden/{uuid.uuid4().hex}.txt"
    token = await client_token(mesh, client_id)

    response = await post_rpc(
        mesh, "orchestrator", "process_document", {"s3_key": key}, token=token
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == -32002
    await _nothing_happened(mesh, database, "orchestrator", key)


async def test_token_for_the_extractor_is_refused_by_the_archivist(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    key = f"uploads/audience/{uuid.uuid4().hex}.txt"
    method, params = _call("archivist", key)

    response = await post_rpc(
        mesh, "archivist", method, params, token=forge.valid("extractor", ["admin"])
    )

    assert response.status_code == 401
    assert response.json()["error"]["data"] == {"reason": "wrong_audience"}
    await _nothing_happened(mesh, database, "archivist", key)


async def test_the_same_call_with_the_role_does_run(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """The control for the refusals above: a good token does reach the method."""
    key = f"uploads/allowed/{uuid.uuid4().hex}.txt"
    method, params = _call("archivist", key)

    response = await _post_as(
        mesh, forge, "archivist", method, params, ["orchestrator"]
    )

    assert response.status_code == 200
    assert response.json()["result"]["created"] is True
    rows = await database.fetchval(
        "SELECT count(*) FROM documents WHERE s3_key = $1", key
    )
    assert rows == 1


async def _post_as(
    mesh: LocalMesh,
    forge: TokenForge,
    service: str,
    method: str,
    params: dict[str, Any],
    roles: list[str],
) -> httpx.Response:
    """A call with a good token for ``roles``: the agents take DPoP-bound
    tokens only, the orchestrator also plain bearer ones."""
    if service == "orchestrator":
        return await post_rpc(
            mesh, service, method, params, token=forge.valid(service, roles)
        )
    key = DpopKey()
    token = forge.bound(service, roles, key)
    return await post_rpc(mesh, service, method, params, token=token, dpop=key)


async def test_health_needs_no_token(mesh: LocalMesh) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        for service in SERVICES:
            response = await http.get(f"{mesh.url(service)}/health")
            assert response.status_code == 200
            assert response.json() == {"status": "ok", "service": service}
