"""A tasks table of its own on the session mesh's PostgreSQL (TLS, SCRAM), for
the repository, runner and pipeline tests: the cluster already runs for the
integration tests, and a separate database keeps the running orchestrator
from claiming the tasks these tests make."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from services.launcher.mesh import LocalMesh
from shared.database import Database, apply_migrations, create_pool
from shared.secrets import StaticSecretStore
from shared.settings import DatabaseSettings

_NAME = "orchestrator_tasks_tests"
_SECRET_ID = "tests/orchestrator-tasks-db"


@pytest.fixture(scope="session")
def tasks_database(mesh: LocalMesh) -> tuple[DatabaseSettings, StaticSecretStore]:
    """Where the tests' tasks table is, migrated like the mesh's own."""
    cluster = mesh.database
    assert cluster is not None
    password = secrets.token_urlsafe(16)
    settings = DatabaseSettings(
        db_host=cluster.host,
        db_port=cluster.port,
        db_name=_NAME,
        db_user=_NAME,
        db_password_secret_id=_SECRET_ID,
        db_ca_file=cluster.ca_path,
        db_pool_max=10,
    )
    store = StaticSecretStore({_SECRET_ID: password})

    async def prepare() -> None:
        await cluster.create_database(_NAME, _NAME, password)
        pool = await create_pool(settings, store)
        try:
            await apply_migrations(pool)
        finally:
            await pool.close()

    asyncio.run(prepare())
    return settings, store


async def _replica_database(
    tasks_database: tuple[DatabaseSettings, StaticSecretStore],
) -> Database:
    settings, store = tasks_database
    return Database(await create_pool(settings, store))


@pytest.fixture
async def database_a(
    tasks_database: tuple[DatabaseSettings, StaticSecretStore],
) -> AsyncIterator[Database]:
    """Replica A's pool, over an empty tasks table."""
    database = await _replica_database(tasks_database)
    try:
        await database.execute("TRUNCATE tasks")
        yield database
    finally:
        await database.pool.close()


@pytest.fixture
async def database_b(
    tasks_database: tuple[DatabaseSettings, StaticSecretStore],
    database_a: Database,
) -> AsyncIterator[Database]:
    """Replica B's pool, on the same table as replica A's."""
    database = await _replica_database(tasks_database)
    try:
        yield database
    finally:
        await database.pool.close()
