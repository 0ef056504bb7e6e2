"""What every running service shows without a token: readiness with each of
its dependencies, and an agent card describing its methods and how to call
them; and what it no longer shows: an OpenAPI map."""

from __future__ import annotations

import httpx
import pytest

from services.launcher.mesh import LocalMesh
from shared.tls import client_context

pytestmark = pytest.mark.integration

# The checks each service's /ready runs, beyond the three every service has.
OWN_CHECKS = {"orchestrator": {"s3"}, "extractor": {"s3"}, "validator": set()}
COMMON_CHECKS = {"identity-provider", "database", "revocations"}


@pytest.mark.parametrize("service", ["orchestrator", "extractor", "validator"])
async def test_ready_reports_every_dependency_of_the_service(
    mesh: LocalMesh, service: str
) -> None:
    async with httpx.AsyncClient(verify=client_context(mesh.ca_file)) as http:
        response = await http.get(f"{mesh.url(service)}/ready")

    assert response.status_code == 200
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
    async with httpx.AsyncClient(verify=client_context(mesh.ca_file)) as http:
        response = await http.get(f"{mesh.url(service)}/.well-known/agent-card.json")

    card = response.json()
    assert card["url"] == f"{mesh.url(service)}/a2a"
    assert all("inputSchema" in skill for skill in card["skills"])
    rule = card["securitySchemes"]["keycloak"]["description"]
    assert "DPoP-bound tokens" in rule
    assert rule.startswith("Bearer tokens, or") is bearer


async def test_openapi_map_is_not_served(mesh: LocalMesh) -> None:
    async with httpx.AsyncClient(verify=client_context(mesh.ca_file)) as http:
        response = await http.get(f"{mesh.url('orchestrator')}/openapi.json")

    assert response.status_code == 404
