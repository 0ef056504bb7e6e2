"""A caller of the running mesh, as any client would be: a client-credentials
token from the identity provider, uploads to ``POST /documents``, JSON-RPC to
``/a2a``. The demo uses it, and so do the integration tests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from services.orchestrator.upload import ACCEPTED_TYPES
from shared.tls import client_context

TERMINAL = ("completed", "failed")


class CallerError(Exception):
    """The mesh answered a call with an error the caller did not expect."""


class MeshCaller:
    def __init__(
        self,
        orchestrator_url: str,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        ca_file: Path,
    ) -> None:
        self._base = orchestrator_url.rstrip("/")
        self._token_url = token_url
        self._credentials = (client_id, client_secret)
        self._http = httpx.AsyncClient(verify=client_context(ca_file), timeout=30.0)
        self._token: str | None = None
        self._ids = 0

    async def __aenter__(self) -> MeshCaller:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def token(self) -> str:
        if self._token is None:
            response = await self._http.post(
                self._token_url,
                data={"grant_type": "client_credentials"},
                auth=self._credentials,
            )
            if response.status_code != 200:
                raise CallerError(f"token request refused ({response.status_code})")
            self._token = str(response.json()["access_token"])
        return self._token

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON-RPC reply body of ``method`` (result or error)."""
        self._ids += 1
        response = await self._http.post(
            f"{self._base}/a2a",
            json={
                "jsonrpc": "2.0",
                "id": self._ids,
                "method": method,
                "params": params or {},
            },
            headers={"Authorization": f"Bearer {await self.token()}"},
        )
        return response.json()

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = await self.rpc(method, params)
        if "error" in reply:
            error = reply["error"]
            raise CallerError(f"{method}: {error.get('message')} ({error.get('code')})")
        return reply["result"]

    async def upload(self, path: Path) -> httpx.Response:
        content_type = ACCEPTED_TYPES.get(
            path.suffix.lower(), "application/octet-stream"
        )
        data = await asyncio.to_thread(path.read_bytes)
        return await self._http.post(
            f"{self._base}/documents",
            files={"file": (path.name, data, content_type)},
            headers={"Authorization": f"Bearer {await self.token()}"},
        )

    async def wait(self, task_id: str, *, seconds: float = 60.0) -> dict[str, Any]:
        """Poll a task until it is completed or failed, for at most ``seconds``."""
        deadline = time.monotonic() + seconds
        delay = 0.05
        while True:
            task: dict[str, Any] = await self.result(
                "get_task_status", {"task_id": task_id}
            )
            if task["status"] in TERMINAL:
                return task
            if time.monotonic() > deadline:
                raise CallerError(
                    f"task {task_id} still {task['status']} after {seconds}s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
