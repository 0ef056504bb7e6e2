"""Calling the local mesh from tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from services.launcher.mesh import LocalMesh
from shared.auth.dpop import DpopKey


async def post_rpc(
    mesh: LocalMesh,
    service: str,
    method: str,
    params: dict[str, Any],
    *,
    token: str | None,
    dpop: DpopKey | None = None,
) -> httpx.Response:
    """One JSON-RPC call to ``service`` with ``token`` (or none): as a bearer
    token, or with ``dpop`` as a DPoP-bound one with a fresh proof."""
    request = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    body = json.dumps(request).encode()
    url = f"{mesh.url(service)}/a2a"
    headers = {"Content-Type": "application/json"}
    if token is not None and dpop is None:
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None and dpop is not None:
        headers["Authorization"] = f"DPoP {token}"
        headers["DPoP"] = dpop.proof("POST", url, access_token=token, body=body)
    async with httpx.AsyncClient(verify=mesh.tls_context(), timeout=30) as http:
        return await http.post(url, content=body, headers=headers)


async def client_token(mesh: LocalMesh, client_id: str) -> str:
    """A real token from the identity provider for a realm client."""
    async with mesh.caller(client_id) as caller:
        return await caller.token()
