"""Calling the local mesh from tests."""

from __future__ import annotations

from typing import Any

import httpx

from services.launcher.caller import MeshCaller
from services.launcher.mesh import LocalMesh
from shared.tls import client_context


def caller_for(mesh: LocalMesh, client_id: str) -> MeshCaller:
    """A caller authenticated as one of the realm's clients."""
    return MeshCaller(
        mesh.url("orchestrator"),
        token_url=mesh.addresses.token_url,
        client_id=client_id,
        client_secret=mesh.client_secrets[client_id],
        ca_file=mesh.ca_file,
    )


async def post_rpc(
    mesh: LocalMesh,
    service: str,
    method: str,
    params: dict[str, Any],
    *,
    token: str | None,
) -> httpx.Response:
    """One JSON-RPC call to ``service`` with ``token`` (or none) as bearer."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(
        verify=client_context(mesh.ca_file), timeout=30
    ) as http:
        return await http.post(
            f"{mesh.url(service)}/a2a",
            json={"jsonrpc": "2.0", "id": 7, "method": method, "params": params},
            headers=headers,
        )


async def client_token(mesh: LocalMesh, client_id: str) -> str:
    """A real token from the identity provider for a realm client."""
    async with caller_for(mesh, client_id) as caller:
        return await caller.token()
