"""Calling the local mesh from tests."""

from __future__ import annotations

from typing import Any

import httpx

from services.launcher.mesh import LocalMesh
from shared.tls import client_context


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
    async with mesh.caller(client_id) as caller:
        return await caller.token()
