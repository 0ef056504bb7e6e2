"""``shared.database`` against a real TLS-only PostgreSQL: verification,
password rotation and migrations."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from certs.authority import DevCertificates, create_ca, ensure_dev_certs
from services.launcher.postgres import PostgresCluster
from shared.database import Database, Pool, apply_migrations, create_pool
from shared.errors import DependencyUnavailable
from shared.secrets import StaticSecretStore
from shared.settings import DatabaseSettings

PASSWORD = "correct horse battery staple"
SECRET_ID = "a2a-mesh/db-password"
_MIGRATIONS = Path(__file__).parents[2] / "shared" / "migrations"


class RotatingSecretStore(StaticSecretStore):
    """Serves a stale value until refreshed, as a cache does after a rotation."""

    def __init__(self, stale: str, current: str) -> None:
        super().__init__({SECRET_ID: stale})
        self._current = current
        self.refreshes = 0

    def refresh(self, secret_id: str) -> None:
        self.refreshes += 1
        self._values[secret_id] = self._current


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    return ensure_dev_certs(tmp_path_factory.mktemp("certs"), ["archivist"])


@pytest.fixture(scope="module")
def cluster(certs: DevCertificates) -> Iterator[PostgresCluster]:
    with PostgresCluster(certs.server("postgres"), certs.ca.cert_path) as pg:
        asyncio.run(pg.create_database("mesh", "mesh", PASSWORD))
        yield pg


def _settings(cluster: PostgresCluster, ca_file: Path) -> DatabaseSettings:
    return DatabaseSettings(
        db_host=cluster.host,
        db_port=cluster.port,
        db_ca_file=ca_file,
        db_password_secret_id=SECRET_ID,
        db_connect_timeout_seconds=5,
    )


@pytest.fixture
async def pool(cluster: PostgresCluster) -> AsyncIterator[Pool]:
    settings = _settings(cluster, cluster.ca_path)
    created = await create_pool(settings, StaticSecretStore({SECRET_ID: PASSWORD}))
    try:
        yield created
    finally:
        await created.close()


async def test_pool_connects_over_tls(pool: Pool) -> None:
    in_tls = await pool.fetchval(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    )
    assert in_tls is True


async def test_server_certificate_from_another_ca_is_refused(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    stranger = create_ca(tmp_path)
    settings = _settings(cluster, stranger.cert_path)

    with pytest.raises(DependencyUnavailable) as raised:
        await create_pool(settings, StaticSecretStore({SECRET_ID: PASSWORD}))

    assert raised.value.dependency == "database"
    assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)


# asyncpg leaves the socket of a refused login to the garbage collector; the
# warning about it belongs to this test, not to whichever test runs next.
_REFUSED_LOGIN_SOCKET = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


def _collect_refused_sockets() -> None:
    gc.collect()


@_REFUSED_LOGIN_SOCKET
async def test_rotated_password_is_read_again_once(cluster: PostgresCluster) -> None:
    secrets = RotatingSecretStore(stale="old password", current=PASSWORD)

    pool = await create_pool(_settings(cluster, cluster.ca_path), secrets)
    await pool.close()
    _collect_refused_sockets()

    assert secrets.refreshes == 1


@_REFUSED_LOGIN_SOCKET
async def test_wrong_password_after_refresh_is_dependency_unavailable(
    cluster: PostgresCluster,
) -> None:
    secrets = RotatingSecretStore(stale="old password", current="still wrong")

    with pytest.raises(DependencyUnavailable) as raised:
        await create_pool(_settings(cluster, cluster.ca_path), secrets)

    _collect_refused_sockets()
    assert isinstance(raised.value.__cause__, asyncpg.InvalidPasswordError)
    assert secrets.refreshes == 1


async def test_migrations_apply_once_even_when_run_concurrently(
    cluster: PostgresCluster,
) -> None:
    settings = _settings(cluster, cluster.ca_path)
    secrets = StaticSecretStore({SECRET_ID: PASSWORD})
    pools = [await create_pool(settings, secrets) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(p) for p in pools))
        versions = await pools[0].fetch("SELECT version FROM schema_migrations")
        tables = await pools[0].fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    finally:
        for p in pools:
            await p.close()

    every_file = sorted(path.stem for path in _MIGRATIONS.glob("*.sql"))
    applied = [version for result in results for version in result]
    assert applied == every_file
    assert [r["version"] for r in versions] == every_file
    assert every_file[:3] == ["0001_initial", "0002_security", "0003_task_cancel"]
    assert {r["tablename"] for r in tables} >= {
        "tasks",
        "documents",
        "processing_log",
        "schema_migrations",
    }


async def test_a_stalled_query_is_dependency_unavailable_within_the_timeout(
    pool: Pool,
) -> None:
    database = Database(pool, timeout=0.5)

    started = asyncio.get_running_loop().time()
    with pytest.raises(DependencyUnavailable) as raised:
        await database.fetchval("SELECT pg_sleep(5)")

    assert raised.value.dependency == "database"
    assert asyncio.get_running_loop().time() - started < 2


def _server_processes(cluster: PostgresCluster) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(entry.name))
    return [postmaster, *children]


async def test_a_stalled_server_answers_within_the_timeout_every_time(
    cluster: PostgresCluster,
) -> None:
    settings = _settings(cluster, cluster.ca_path)
    pool = await create_pool(settings, StaticSecretStore({SECRET_ID: PASSWORD}))
    database = Database(pool, timeout=1.0)
    await database.fetchval("SELECT 1")
    stalled = _server_processes(cluster)
    loop = asyncio.get_running_loop()

    for pid in stalled:
        os.kill(pid, signal.SIGSTOP)
    try:
        durations = []
        for _ in range(3):
            started = loop.time()
            with pytest.raises(DependencyUnavailable):
                await database.fetchval("SELECT 1")
            durations.append(loop.time() - started)
    finally:
        for pid in stalled:
            os.kill(pid, signal.SIGCONT)

    assert max(durations) < 2.0, durations
    assert await database.fetchval("SELECT 1") == 1
    await pool.close()
