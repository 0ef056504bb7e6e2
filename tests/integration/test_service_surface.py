"""What every running service shows without a token: readiness with each of
its dependencies, and an agent card describing its methods and how to call
them; and what it no longer shows: an OpenAPI map."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.launcher.mesh import LocalMesh
from tests.helpers.mesh import client_token

pytestmark = pytest.mark.integration

# The checks each service's /ready runs, beyond the three every service has.
OWN_CHECKS = {"orchestrator": {"s3"}, "extractor": {"s3"}, "validator": set()}
COMMON_CHECKS = {"identity-provider", "database", "revocations"}


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


@pytest.mark.parametrize(
    ("service", "bearer"), [("orchestrator", True), ("extractor", False)]
)
async def test_agent_card_lists_methods_and_says_which_tokens_it_takes(
    mesh: LocalMesh, service: str, bearer: bool
) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.get(f"{mesh.url(service)}/.well-known/agent-card.json")

    card = response.json()
    assert card["url"] == f"{mesh.url(service)}/a2a"
    assert all("inputSchema" in skill for skill in card["skills"])
    rule = card["securitySchemes"]["keycloak"]["description"]
    assert "DPoP-bound tokens" in rule
    assert rule.startswith("Bearer tokens, or") is bearer


async def test_openapi_map_is_not_served(mesh: LocalMesh) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.get(f"{mesh.url('orchestrator')}/openapi.json")

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
    ["window_seconds=\uff11\uff12", "window_seconds=0", "window_seconds=12.5"],
    ids=["full-width-digits", "zero", "fraction"],
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
