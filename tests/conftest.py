"""The real mesh, started once for the integration and security tests (and only
when one of them asks for it): PostgreSQL with TLS, the S3 and Secrets Manager
endpoint, the identity provider and the four services, each a separate
process, with a second archivist replica behind the first one's URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from services.launcher.caller import MeshCaller
from services.launcher.mesh import LocalMesh
from tests.helpers.tokens import TokenForge

EXTRACT_TIMEOUT_SECONDS = 5


@pytest.fixture(scope="session")
def mesh() -> Iterator[LocalMesh]:
    # Quick to take over and retry tasks an outage left unfinished, so fault
    # tests end soon.
    recovery = {
        "MESH_TASK_LEASE_SECONDS": "3",
        "MESH_TASK_CLAIM_INTERVAL_SECONDS": "0.5",
        "MESH_TASK_RETRY_BASE_SECONDS": "0.5",
        "MESH_TASK_RETRY_MAX_SECONDS": "2",
        "MESH_AGENT_PROBE_INTERVAL_SECONDS": "1",
    }
    # A document too slow to read is stopped after seconds, not the default 20,
    # so that the test of it ends soon; every corpus document takes far less.
    extraction = {"MESH_EXTRACT_TIMEOUT_SECONDS": str(EXTRACT_TIMEOUT_SECONDS)}
    with LocalMesh(
        service_env={"orchestrator": recovery, "extractor": extraction},
        replicas={"archivist": 2},
    ) as running:
        yield running


@pytest.fixture(scope="session")
def forge(mesh: LocalMesh) -> TokenForge:
    return TokenForge(mesh.signing_key_file, mesh.addresses.issuer)


@pytest.fixture
async def database(mesh: LocalMesh) -> AsyncIterator[asyncpg.Connection]:
    assert mesh.database is not None
    connection = await mesh.database.connect("mesh")
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def processor(mesh: LocalMesh) -> AsyncIterator[MeshCaller]:
    async with mesh.caller("document-processor") as caller:
        yield caller
