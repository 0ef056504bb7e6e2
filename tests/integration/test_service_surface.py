"""What every running service shows without a token: readiness with each of
its dependencies, and an agent card describing its methods and how to call
them; and the orchestrator's OpenAPI description, which the agents do not
serve."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from services.launcher.mesh import LocalMesh
from tests.helpers.evidence import security_events
from tests.helpers.mesh import client_token

pytestmark = pytest.mark.integration

# The checks each service's /ready runs, beyond the three every service has.
OWN_CHECKS = {
    "orchestrator": {"s3"},
    "extractor": {"s3", "workers"},
    "validator": set(),
}
COMMON_CHECKS = {"identity-provider", "database", "revocations"}
# SYSTEM.md's orchestrator methods, and the archive look-ups it passes on.
ORCHESTRATOR_METHODS = (
    "process_document",
    "process_batch",
    "get_task_status",
    "list_pending_documents",
    "discover_agents",
    "get_document",
    "search_documents",
    "get_document_stats",
)


@pytest.mark.parametrize("service", ["orchestrator", "extractor", "validator"])
async def test_ready_reports_every_dependency_of_the_service(
    mesh: LocalMesh, service: str
) -> None:
    # Other tests cut the database and rotate its password; a replica is
    # not ready until it has reconnected, which takes a second or two.
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        for _ in range(50):
            response = await http.get(f"{mesh.url(service)}/ready")
            if response.status_code == 200:
                break
            await asyncio.sleep(0.2)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == COMMON_CHECKS | OWN_CHECKS[service]
    assert set(body["checks"].values()) == {"ok"}


async def test_an_agents_card_lists_methods_and_says_which_tokens_it_takes(
    mesh: LocalMesh,
) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.get(
            f"{mesh.url('extractor')}/.well-known/agent-card.json"
        )

    card = response.json()
    assert card["url"] == f"{mesh.url('extractor')}/a2a"
    assert all("inputSchema" in skill for skill in card["skills"])
    rule = card["securitySchemes"]["keycloak"]["description"]
    assert "DPoP-bound tokens" in rule
    assert not rule.startswith("Bearer tokens, or")


async def test_the_orchestrators_card_says_it_takes_bearer_and_dpop_tokens(
    mesh: LocalMesh,
) -> None:
    # Its card is the A2A 1.0 one (tests/integration/test_a2a_protocol.py).
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.get(
            f"{mesh.url('orchestrator')}/.well-known/agent-card.json"
        )

    scheme = response.json()["securitySchemes"]["keycloak"]["oauth2SecurityScheme"]
    assert "Bearer, or DPoP-bound" in scheme["description"]


async def test_the_orchestrator_serves_its_openapi_description_without_a_token(
    mesh: LocalMesh,
) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.get(f"{mesh.url('orchestrator')}/openapi.json")

    assert response.status_code == 200
    description = response.json()
    assert description["openapi"] == "3.1.0"
    assert description["servers"] == [{"url": mesh.url("orchestrator")}]
    body = description["paths"]["/a2a"]["post"]["requestBody"]
    methods = [
        branch["title"]
        for branch in body["content"]["application/json"]["schema"]["oneOf"]
    ]
    assert sorted(methods) == sorted(ORCHESTRATOR_METHODS)


@pytest.mark.parametrize("service", ["extractor", "validator", "archivist"])
async def test_an_agent_serves_no_openapi_map(mesh: LocalMesh, service: str) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.get(f"{mesh.url(service)}/openapi.json")

    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/a2a/", "/documents/", "/admin/revoke-token/"])
async def test_trailing_slash_is_not_redirected_to_a_host_the_caller_names(
    mesh: LocalMesh, path: str
) -> None:
    # A redirect would be built from the Host header: no redirects at all.
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        token = await client_token(mesh, "mesh-admin")
        response = await http.post(
            f"{mesh.url('orchestrator')}{path}",
            headers={"Authorization": f"Bearer {token}", "Host": "evil.example"},
            content=b"{}",
        )

    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "query",
    [
        "window_seconds=\uff11\uff12",
        "window_seconds=0",
        "window_seconds=12.5",
        f"window_seconds={'9' * 5000}",
    ],
    ids=["full-width-digits", "zero", "fraction", "more-digits-than-int-reads"],
)
async def test_admin_query_numbers_are_plain_whole_numbers(
    mesh: LocalMesh, query: str
) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        token = await client_token(mesh, "mesh-admin")
        response = await http.get(
            f"{mesh.url('orchestrator')}/admin/security-stats?{query}",
            headers={"Authorization": f"Bearer {token}"},
        )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32602


@pytest.mark.parametrize("service", ["orchestrator", "extractor"])
async def test_forwarded_for_from_an_untrusted_peer_is_not_believed(
    mesh: LocalMesh, database: asyncpg.Connection, service: str
) -> None:
    # No proxy is trusted here: the audit names the real peer, whatever the
    # caller writes in X-Forwarded-For (uvicorn's own belief is off too).
    cid = f"xff-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        await http.post(
            f"{mesh.url(service)}/a2a",
            headers={
                "Authorization": "Bearer not-a-token",
                "X-Forwarded-For": "203.0.113.9, 198.51.100.7",
                "X-Forwarded-Proto": "http",
                "X-Correlation-ID": cid,
            },
            content=b"{}",
        )

    rows = await security_events(database, cid)
    assert [r["client_address"] for r in rows] == ["127.0.0.1"]


async def test_refused_certificate_header_is_kept_as_a_security_event(
    mesh: LocalMesh, database: asyncpg.Connection
) -> None:
    cid = f"alb-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/a2a",
            headers={"X-Amzn-Mtls-Clientcert": "x", "X-Correlation-ID": cid},
            content=b"{}",
        )

    assert response.status_code == 401
    rows = await security_events(database, cid)
    assert [(r["event"], r["reason"]) for r in rows] == [
        ("authentication_failure", "untrusted_certificate_header")
    ]
