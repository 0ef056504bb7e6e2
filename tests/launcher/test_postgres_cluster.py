"""Tests of the throwaway TLS-only PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from certs.authority import (
    CertPair,
    DevCertificates,
    create_ca,
    ensure_dev_certs,
    issue_server_cert,
)
from services.launcher.errors import LauncherError, PrerequisiteMissing, StartupFailed
from services.launcher.pg_setup import (
    MISSING_MESSAGE,
    find_postgres_bin,
    scram_sha256_verifier,
)
from services.launcher.ports import free_port
from services.launcher.postgres import PostgresCluster

# OpenSSL verification results, as reported in SSLCertVerificationError.
UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
IP_ADDRESS_MISMATCH = 64

ROOT = os.geteuid() == 0


def _fake_programs(folder: Path, names: tuple[str, ...]) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        program = folder / name
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    return ensure_dev_certs(tmp_path_factory.mktemp("certs"), ["archivist"])


@pytest.fixture(scope="module")
def cluster(dev_certs: DevCertificates) -> Iterator[PostgresCluster]:
    # A missing installation fails these tests rather than skipping them.
    find_postgres_bin()
    with PostgresCluster(dev_certs.server("postgres"), dev_certs.ca.cert_path) as pg:
        yield pg


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A base directory the server account can enter, unlike pytest's tmp_path."""
    folder = Path(tempfile.mkdtemp(prefix="mesh-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_find_postgres_bin_uses_mesh_pg_bin(tmp_path: Path) -> None:
    folder = _fake_programs(tmp_path / "pg", ("initdb", "pg_ctl", "postgres"))
    environ = {"MESH_PG_BIN": str(folder), "PATH": ""}

    found = find_postgres_bin(environ, versioned_root=tmp_path / "absent")

    assert found == folder


def test_find_postgres_bin_with_incomplete_mesh_pg_bin_raises(tmp_path: Path) -> None:
    folder = _fake_programs(tmp_path / "pg", ("initdb",))
    environ = {"MESH_PG_BIN": str(folder), "PATH": ""}

    with pytest.raises(PrerequisiteMissing) as caught:
        find_postgres_bin(environ, versioned_root=tmp_path / "absent")

    assert caught.value.what == "postgresql"


def test_find_postgres_bin_searches_path(tmp_path: Path) -> None:
    folder = _fake_programs(tmp_path / "bin", ("initdb", "pg_ctl", "postgres"))
    environ = {"PATH": f"{tmp_path / 'empty'}{os.pathsep}{folder}"}

    found = find_postgres_bin(environ, versioned_root=tmp_path / "absent")

    assert found == folder


def test_find_postgres_bin_prefers_highest_complete_version(tmp_path: Path) -> None:
    programs = ("initdb", "pg_ctl", "postgres")
    for version in ("9.6", "13", "15"):
        _fake_programs(tmp_path / version / "bin", programs)
    _fake_programs(tmp_path / "16" / "bin", ("psql",))

    found = find_postgres_bin({"PATH": ""}, versioned_root=tmp_path)

    assert found == tmp_path / "15" / "bin"


def test_find_postgres_bin_without_binaries_raises(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteMissing) as caught:
        find_postgres_bin({"PATH": ""}, versioned_root=tmp_path)

    assert caught.value.what == "postgresql"
    assert str(caught.value) == MISSING_MESSAGE


def test_free_port_returns_a_port_that_can_be_bound() -> None:
    port = free_port()

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", port))


def test_scram_verifier_has_postgres_layout() -> None:
    verifier = scram_sha256_verifier("correct horse")

    mechanism, rest = verifier.split("$", 1)
    assert mechanism == "SCRAM-SHA-256"
    assert rest.startswith("4096:")
    assert "correct horse" not in verifier


def test_scram_verifier_refuses_non_ascii_password() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        scram_sha256_verifier("pässword")


def test_cluster_with_invalid_superuser_name_raises(
    dev_certs: DevCertificates,
) -> None:
    with pytest.raises(ValueError, match="invalid PostgreSQL name"):
        PostgresCluster(
            dev_certs.server("postgres"), dev_certs.ca.cert_path, superuser="x; --"
        )


def test_cluster_repr_hides_the_password(dev_certs: DevCertificates) -> None:
    pg = PostgresCluster(dev_certs.server("postgres"), dev_certs.ca.cert_path)

    assert pg.superuser_password not in repr(pg)


async def test_create_database_owned_by_the_superuser_raises(
    dev_certs: DevCertificates,
) -> None:
    pg = PostgresCluster(dev_certs.server("postgres"), dev_certs.ca.cert_path)

    with pytest.raises(ValueError, match="superuser"):
        await pg.create_database("mesh", pg.superuser, "password")


@pytest.mark.integration
async def test_connection_over_verified_tls_reports_ssl(
    cluster: PostgresCluster,
) -> None:
    context = ssl.create_default_context(cafile=cluster.ca_path)
    connection = await asyncpg.connect(
        host="127.0.0.1",
        port=cluster.port,
        user=cluster.superuser,
        password=cluster.superuser_password,
        database="postgres",
        ssl=context,
        timeout=10,
    )
    try:
        uses_ssl = await connection.fetchval(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
    finally:
        await connection.close()

    assert uses_ssl is True


@pytest.mark.integration
async def test_plain_tcp_connection_is_refused(cluster: PostgresCluster) -> None:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError) as caught:
        await asyncpg.connect(
            host="127.0.0.1",
            port=cluster.port,
            user=cluster.superuser,
            password=cluster.superuser_password,
            database="postgres",
            ssl=False,
            timeout=10,
        )

    # 28000: no pg_hba.conf entry matches a connection without encryption.
    assert caught.value.sqlstate == "28000"


@pytest.mark.integration
async def test_connection_trusting_another_ca_fails_verification(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    other_ca = create_ca(tmp_path)
    context = ssl.create_default_context(cafile=other_ca.cert_path)

    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        await asyncpg.connect(
            host="127.0.0.1",
            port=cluster.port,
            user=cluster.superuser,
            password=cluster.superuser_password,
            ssl=context,
            timeout=10,
        )

    assert caught.value.verify_code == UNABLE_TO_GET_ISSUER_CERT_LOCALLY


@pytest.mark.integration
async def test_server_certificate_for_another_host_fails_verification(
    dev_certs: DevCertificates, tmp_path: Path
) -> None:
    find_postgres_bin()
    wrong = issue_server_cert(
        dev_certs.ca, tmp_path, "elsewhere", ["elsewhere.invalid"]
    )

    with (
        PostgresCluster(wrong, dev_certs.ca.cert_path) as pg,
        pytest.raises(ssl.SSLCertVerificationError) as caught,
    ):
        await pg.connect()

    assert caught.value.verify_code == IP_ADDRESS_MISMATCH


@pytest.mark.integration
async def test_create_database_gives_its_owner_a_tls_login(
    cluster: PostgresCluster,
) -> None:
    await cluster.create_database("archive_a", "owner_a", "first-password")
    await cluster.create_database("archive_a", "owner_a", "second-password")

    connection = await cluster.connect(
        "archive_a", user="owner_a", password="second-password"
    )
    try:
        row = await connection.fetchrow(
            "SELECT current_user, current_database(), ssl"
            " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
    finally:
        await connection.close()

    assert row is not None
    assert tuple(row) == ("owner_a", "archive_a", True)


@pytest.mark.integration
async def test_database_is_closed_to_other_roles(cluster: PostgresCluster) -> None:
    await cluster.create_database("archive_b", "owner_b", "password-b")
    await cluster.create_database("archive_c", "owner_c", "password-c")

    # Asked of the server rather than tried: a refused TLS login leaves asyncpg's
    # transport closing after the test's event loop has gone.
    connection = await cluster.connect()
    try:
        may_connect = await connection.fetchval(
            "SELECT has_database_privilege($1, $2, 'CONNECT')", "owner_c", "archive_b"
        )
    finally:
        await connection.close()

    assert may_connect is False


@pytest.mark.integration
def test_server_key_copy_is_private_to_the_server_account(
    cluster: PostgresCluster,
) -> None:
    key = (cluster.data_dir / "server.key").stat()
    data = cluster.data_dir.stat()

    assert stat.S_IMODE(key.st_mode) == 0o600
    assert key.st_uid == data.st_uid
    assert (key.st_uid != 0) is ROOT


@pytest.mark.integration
def test_stop_removes_files_and_closes_the_port(
    dev_certs: DevCertificates, reachable_dir: Path
) -> None:
    find_postgres_bin()
    pg = PostgresCluster(
        dev_certs.server("postgres"), dev_certs.ca.cert_path, base_dir=reachable_dir
    )
    pg.start()
    port = pg.port

    pg.stop()

    assert list(reachable_dir.iterdir()) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.integration
def test_stop_with_keep_leaves_data_and_log(
    dev_certs: DevCertificates, reachable_dir: Path
) -> None:
    find_postgres_bin()
    pg = PostgresCluster(
        dev_certs.server("postgres"),
        dev_certs.ca.cert_path,
        base_dir=reachable_dir,
        keep=True,
    )
    pg.start()

    pg.stop()

    assert (pg.data_dir / "PG_VERSION").is_file()
    assert pg.log_path.is_file()
    assert not (pg.data_dir / "postmaster.pid").exists()


@pytest.mark.integration
def test_start_failure_raises_with_log_tail_and_cleans_up(
    dev_certs: DevCertificates, reachable_dir: Path
) -> None:
    find_postgres_bin()
    server = dev_certs.server("postgres")
    # A key that does not belong to the certificate stops the server at start.
    mismatched = CertPair(server.cert_path, dev_certs.server("s3").key_path)
    pg = PostgresCluster(mismatched, dev_certs.ca.cert_path, base_dir=reachable_dir)

    with pytest.raises(StartupFailed) as caught:
        pg.start()

    assert caught.value.component == "postgres"
    assert "server.key" in caught.value.log_tail
    assert list(reachable_dir.iterdir()) == []


@pytest.mark.integration
@pytest.mark.skipif(not ROOT, reason="only root hands the server to another account")
def test_start_as_root_in_unreachable_base_dir_raises(
    dev_certs: DevCertificates, tmp_path: Path
) -> None:
    find_postgres_bin()
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    pg = PostgresCluster(
        dev_certs.server("postgres"), dev_certs.ca.cert_path, base_dir=hidden / "pg"
    )

    with pytest.raises(LauncherError, match="cannot enter"):
        pg.start()


@pytest.mark.integration
async def test_killed_cluster_restarts_on_its_port_with_its_data(
    dev_certs: DevCertificates, reachable_dir: Path
) -> None:
    pg = PostgresCluster(
        dev_certs.server("postgres"), dev_certs.ca.cert_path, base_dir=reachable_dir
    )
    pg.start()
    try:
        connection = await pg.connect()
        await connection.execute("CREATE TABLE survivor (id int)")
        await connection.execute("INSERT INTO survivor VALUES (1)")
        await connection.close()
        port = pg.port

        await asyncio.to_thread(pg.kill)
        assert not pg.alive()
        await asyncio.to_thread(pg.restart)

        assert pg.alive()
        assert pg.port == port
        connection = await pg.connect()
        assert await connection.fetchval("SELECT id FROM survivor") == 1
        await connection.close()
    finally:
        await asyncio.to_thread(pg.stop)
