"""Rotating the database password while the mesh works: the new password goes
into Secrets Manager and the database, the connections opened before are
cut, and every service reconnects by reading the secret again. No task fails.

Runs on the session mesh: afterwards the mesh simply works on with the new
password, which is the point."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.launcher.caller import MeshCaller
from services.launcher.mesh import DB_PASSWORD_SECRET, DB_USER, LocalMesh
from tests.helpers.evidence import log_lines

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).parents[2] / "services" / "launcher" / "samples"
DOCUMENTS = ["sample_invoice.pdf", "sample_invoice.txt", "invoice_demo_20260101.csv"]


async def test_database_password_rotation_under_load_fails_no_task(
    mesh: LocalMesh, processor: MeshCaller, database: asyncpg.Connection
) -> None:
    before = _rereads(mesh)
    first = [await _start(processor, name) for name in DOCUMENTS]

    await _rotate(mesh, database, secrets.token_urlsafe(24))
    second = [await _start(processor, name) for name in DOCUMENTS]

    finished = await asyncio.gather(
        *(processor.wait(task_id, seconds=90) for task_id in first + second)
    )
    assert [task["status"] for task in finished] == ["completed"] * len(finished)
    # The services did meet the old password, and read the secret again.
    assert _rereads(mesh) > before
    # Every replica is back to ready: pool and revocation listener both.
    for service in ("orchestrator", "extractor", "validator", "archivist"):
        assert await _ready_soon(mesh, service), f"{service} not ready"


async def _ready_soon(mesh: LocalMesh, service: str) -> bool:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        for _ in range(50):
            response = await http.get(f"{mesh.url(service)}/ready")
            if response.status_code == 200:
                return True
            await asyncio.sleep(0.2)
    return False


async def _start(processor: MeshCaller, name: str) -> str:
    response = await processor.upload(SAMPLES / name)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def _rotate(mesh: LocalMesh, database: asyncpg.Connection, password: str) -> None:
    """What a rotation Lambda does (AWSPENDING, then AWSCURRENT), then cut
    the idle connections so the pools must log in again."""
    client = mesh.aws.client("secretsmanager")
    await asyncio.to_thread(
        client.put_secret_value, SecretId=DB_PASSWORD_SECRET, SecretString=password
    )
    # The role name is a constant of ours; the password is bound as a literal
    # by format(), since ALTER ROLE takes no parameters.
    statement = await database.fetchval(
        "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
        DB_USER,
        password,
    )
    await database.execute(statement)
    await database.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE usename = $1 AND state = 'idle'",
        DB_USER,
    )


def _rereads(mesh: LocalMesh) -> int:
    return sum(
        1
        for service in ("orchestrator", "extractor", "validator", "archivist")
        for line in log_lines(mesh, service)
        if line.get("event") == "database.password_reread"
    )
