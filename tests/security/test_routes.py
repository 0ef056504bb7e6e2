"""Path tricks: no spelling of a protected path reaches its route without
passing the security gate first. Sent as raw bytes, so no client tidies the
path on the way."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from services.launcher.mesh import LocalMesh
from tests.helpers.evidence import executed
from tests.helpers.raw import RawRequest, new_correlation_id, pipelined, rpc_body

pytestmark = pytest.mark.integration

FRONT = "orchestrator"
PROTECTED = ("/a2a", "/admin/revoke-token", "/documents")
VARIANTS = (
    "{}/",
    "/{}",
    "{}/.",
    "/.{}",
    "{}/..{}",
    "{}%2F",
    "{}?x=1",
    "{};x",
    "/health/..{}",
    "/%2e{}",
)


@pytest.mark.parametrize("path", PROTECTED)
async def test_no_spelling_of_a_protected_path_skips_the_gate(
    mesh: LocalMesh, database: asyncpg.Connection, path: str
) -> None:
    """Without a token, every variant is refused by the gate (401) or matches
    no route (404); none is answered by the route itself."""
    jti = f"sec-{uuid.uuid4()}"
    body = (
        json.dumps({"jti": jti, "reason": "path trick"}).encode()
        if path.startswith("/admin")
        else rpc_body("list_pending_documents", {})
    )
    requests = [
        RawRequest(
            FRONT,
            body,
            [
                ("Content-Type", "application/json"),
                ("X-Correlation-ID", new_correlation_id()),
            ],
            path=variant.format(path, path),
        )
        for variant in VARIANTS
    ]

    responses = await pipelined(mesh, requests, connections=len(requests))

    for request, response in zip(requests, responses, strict=True):
        assert response.status in (400, 401, 404), (request.path, response.status)
        if response.status == 401:
            reason = response.json()["error"]["data"]["reason"]
            assert reason == "missing_token", request.path
        assert executed(mesh, FRONT, str(request.correlation_id)) == 0
    revoked = await database.fetchval(
        "SELECT count(*) FROM revoked_tokens WHERE jti = $1", jti
    )
    assert revoked == 0
