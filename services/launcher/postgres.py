"""A throwaway PostgreSQL cluster for local runs and tests, reachable over TLS only.

The cluster lives in a fresh directory, listens on 127.0.0.1 at a free port and
accepts TCP connections only through ``hostssl`` with SCRAM; a client that does
not ask for TLS finds no ``pg_hba.conf`` entry. The superuser password is random
and kept in memory. PostgreSQL refuses to run as root, so under root the server
runs as the ``postgres`` account, or ``nobody`` where that does not exist.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import asyncpg

from certs.authority import CertPair
from services.launcher.errors import LauncherError, StartupFailed
from services.launcher.pg_setup import (
    ServerAccount,
    find_postgres_bin,
    scram_sha256_verifier,
    server_account,
)
from services.launcher.ports import free_port
from shared.logging import log_event

logger = logging.getLogger(__name__)

# A Unix socket path must fit in sun_path: 108 bytes on Linux, 104 on macOS.
_SOCKET_PATH_LIMIT = 100
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_BIND_ATTEMPTS = 3
_CONNECT_TIMEOUT = 10.0
_COMMAND_TIMEOUT = 30.0
_LOG_TAIL_LINES = 30


class PostgresCluster:
    """A PostgreSQL server in a temporary directory that speaks TLS only."""

    host = "127.0.0.1"

    def __init__(
        self,
        server_cert: CertPair,
        ca_path: Path,
        *,
        base_dir: Path | None = None,
        superuser: str = "mesh_admin",
        keep: bool = False,
        timeout: float = 60.0,
        bin_dir: Path | None = None,
    ) -> None:
        _check_identifier(superuser)
        self.server_cert = server_cert
        self.ca_path = ca_path
        self.superuser = superuser
        self.superuser_password = secrets.token_urlsafe(32)
        self.port = 0
        self.keep = keep
        self.timeout = timeout
        self._base_dir = base_dir
        self._bin_dir = bin_dir
        self._account: ServerAccount | None = None
        self._work_dir: Path | None = None
        self._running = False

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PostgresCluster {self.host}:{self.port} {state}>"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def work_dir(self) -> Path:
        """The directory holding the data directory and the server log."""
        if self._work_dir is None:
            raise LauncherError("the cluster has not been started")
        return self._work_dir

    @property
    def started(self) -> bool:
        """Whether the cluster's files were made (they outlive a stop)."""
        return self._work_dir is not None

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "server.log"

    def start(self) -> None:
        """Create the cluster and wait until it accepts connections."""
        if self._running:
            raise LauncherError("the cluster is already running")

        self._bin_dir = bin_dir = self._bin_dir or find_postgres_bin()
        self._account = server_account()
        self._work_dir = self._make_work_dir()

        try:
            self._initdb(bin_dir)
            self._configure()
            self._launch(bin_dir)
        except BaseException:
            self._shutdown(bin_dir)
            self._remove_work_dir()
            raise

    def stop(self) -> None:
        """Stop the server and, unless ``keep`` is set, delete its files."""
        if self._work_dir is None:
            return

        try:
            if self._bin_dir is not None:
                self._shutdown(self._bin_dir)
        finally:
            self._remove_work_dir()

    def alive(self) -> bool:
        """Whether the server process is still there."""
        pid = self._postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    @property
    def pid(self) -> int | None:
        """The server's (postmaster's) process id, while it has one."""
        return self._postmaster_pid()

    def _postmaster_pid(self) -> int | None:
        if self._work_dir is None:
            return None
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().split("\n")[0]
            return int(first_line)
        except (OSError, ValueError):
            return None

    def log_tail(self) -> str:
        """The last lines of the server's log."""
        return _tail(self._read_log())

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; ``restart`` brings it back."""
        self._kill_postmaster()
        self._running = False

    def restart(self) -> None:
        """Start the server again on its port and data, after a stop or a kill."""
        bin_dir = self._bin_dir or find_postgres_bin()
        wait = max(int(self.timeout), 1)
        command = self._start_command(bin_dir, wait)
        returncode, output = self._run(command, timeout=wait + 10)
        if returncode != 0:
            raise StartupFailed("postgres", "restart failed", _tail(output))
        self._running = True
        log_event(logger, "postgres.restarted", port=self.port)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the server against our CA."""
        context = ssl.create_default_context(cafile=self.ca_path)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def dsn(self, database: str, user: str) -> str:
        """A libpq-style URL with verify-full TLS; the password goes separately."""
        ca = quote(str(self.ca_path), safe="/")
        return (
            f"postgresql://{user}@{self.host}:{self.port}/{database}"
            f"?sslmode=verify-full&sslrootcert={ca}"
        )

    async def connect(
        self,
        database: str = "postgres",
        *,
        user: str | None = None,
        password: str | None = None,
    ) -> asyncpg.Connection[asyncpg.Record]:
        """Connect over verified TLS, as the superuser unless ``user`` is given."""
        if not self._running:
            raise LauncherError("the cluster is not running")

        if user is None:
            user, password = self.superuser, self.superuser_password

        return await asyncpg.connect(
            host=self.host,
            port=self.port,
            user=user,
            password=password,
            database=database,
            ssl=self.ssl_context(),
            timeout=_CONNECT_TIMEOUT,
            command_timeout=_COMMAND_TIMEOUT,
        )

    async def create_database(self, name: str, owner: str, password: str) -> None:
        """Create (or update) login role ``owner`` and database ``name`` it owns."""
        _check_identifier(name)
        _check_identifier(owner)
        if owner == self.superuser:
            raise ValueError("the owner must not be the cluster's superuser")
        verifier = scram_sha256_verifier(password)

        connection = await self.connect()
        try:
            role_exists = await connection.fetchval(
                "SELECT 1 FROM pg_roles WHERE rolname = $1", owner
            )
            verb = "ALTER" if role_exists else "CREATE"
            await _execute_quoted(
                connection, f"{verb} ROLE %I LOGIN PASSWORD %L", owner, verifier
            )

            database_exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", name
            )
            if not database_exists:
                await _execute_quoted(
                    connection, "CREATE DATABASE %I OWNER %I", name, owner
                )

            # Each service reaches its own database only.
            await _execute_quoted(
                connection, "REVOKE ALL ON DATABASE %I FROM PUBLIC", name
            )
        finally:
            await connection.close(timeout=_CONNECT_TIMEOUT)

    def _make_work_dir(self) -> Path:
        root = self._base_dir or _short_temp_root()
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self._account is not None:
            _check_reachable(root, self._account)

        work_dir = Path(tempfile.mkdtemp(prefix="mesh-pg-", dir=root))
        if self._account is not None:
            os.chown(work_dir, self._account.uid, self._account.gid)

        return work_dir

    def _initdb(self, bin_dir: Path) -> None:
        password_file = self.work_dir / "superuser.pw"
        self._write_owned(password_file, self.superuser_password + "\n", 0o600)

        command = [
            str(bin_dir / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={self.superuser}",
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            # Nothing here has to survive a power cut.
            "--no-sync",
        ]
        try:
            returncode, output = self._run(command)
        finally:
            password_file.unlink(missing_ok=True)

        if returncode is None:
            raise StartupFailed("initdb", "timed out", _tail(output))
        if returncode != 0:
            raise StartupFailed("initdb", f"exit status {returncode}", _tail(output))

    def _configure(self) -> None:
        cert = self.server_cert.cert_path.read_text()
        key = self.server_cert.key_path.read_text()
        self._write_owned(self.data_dir / "server.crt", cert, 0o644)
        # PostgreSQL refuses a key that its own account does not own at 0600.
        self._write_owned(self.data_dir / "server.key", key, 0o600)

        hba = (
            "# Written by the mesh launcher: TLS with SCRAM over TCP, nothing else.\n"
            f"local all {self.superuser} scram-sha-256\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        )
        self._write_owned(self.data_dir / "pg_hba.conf", hba, 0o600)

        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'mesh.conf'\n")

    def _write_settings(self) -> None:
        socket_dir = str(self.data_dir)
        if len(f"{socket_dir}/.s.PGSQL.{self.port}") > _SOCKET_PATH_LIMIT:
            # Too long a path would stop the server; it then listens on TCP only.
            socket_dir = ""

        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": _quote_setting(socket_dir),
            "unix_socket_permissions": "0700",
            "ssl": "on",
            "ssl_cert_file": "'server.crt'",
            "ssl_key_file": "'server.key'",
            "ssl_min_protocol_version": "'TLSv1.2'",
            "password_encryption": "'scram-sha-256'",
            "shared_buffers": "'32MB'",
            # A throwaway cluster may lose data when the machine crashes, never
            # when the server does: commits still reach the WAL before they
            # are acknowledged (synchronous_commit stays on).
            "fsync": "off",
            "full_page_writes": "off",
        }
        text = "".join(f"{name} = {value}\n" for name, value in settings.items())
        self._write_owned(self.data_dir / "mesh.conf", text, 0o600)

    def _launch(self, bin_dir: Path) -> None:
        wait = max(int(self.timeout), 1)
        command = self._start_command(bin_dir, wait)

        for attempt in range(1, _BIND_ATTEMPTS + 1):
            self.port = free_port()
            self._write_settings()
            self.log_path.unlink(missing_ok=True)

            started = time.monotonic()
            returncode, output = self._run(command, timeout=wait + 10)
            if returncode == 0:
                self._running = True
                elapsed = time.monotonic() - started
                log_event(
                    logger,
                    "postgres.started",
                    port=self.port,
                    seconds=round(elapsed, 2),
                    account=self._account.name if self._account else None,
                )
                return

            log_tail = _tail(self._read_log() + output)
            # Another process may have taken the port since free_port() saw it.
            if "could not bind" in log_tail and attempt < _BIND_ATTEMPTS:
                self._shutdown(bin_dir)
                continue

            reason = "timed out" if returncode is None else f"exit {returncode}"
            raise StartupFailed("postgres", reason, log_tail)

    def _start_command(self, bin_dir: Path, wait: int) -> list[str]:
        return [
            str(bin_dir / "pg_ctl"),
            f"--pgdata={self.data_dir}",
            f"--log={self.log_path}",
            f"--timeout={wait}",
            "--wait",
            "--silent",
            "start",
        ]

    def _shutdown(self, bin_dir: Path) -> None:
        if self._work_dir is None or not (self.data_dir / "postmaster.pid").exists():
            self._running = False
            return

        for mode in ("fast", "immediate"):
            command = [
                str(bin_dir / "pg_ctl"),
                f"--pgdata={self.data_dir}",
                f"--mode={mode}",
                "--timeout=20",
                "--wait",
                "--silent",
                "stop",
            ]
            returncode, _ = self._run(command, timeout=30)
            if returncode == 0:
                self._running = False
                return

        self._kill_postmaster()
        self._running = False

    def _kill_postmaster(self) -> None:
        pid = self._postmaster_pid()
        if pid is None:
            return

        log_event(logger, "postgres.killed", level=logging.WARNING, pid=pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def _remove_work_dir(self) -> None:
        # A kept directory stays reachable through work_dir for inspection.
        if self._work_dir is None or self.keep:
            return

        work_dir, self._work_dir = self._work_dir, None

        try:
            shutil.rmtree(work_dir)
        except OSError as exc:
            log_event(
                logger,
                "postgres.cleanup_failed",
                level=logging.WARNING,
                path=str(work_dir),
                error=str(exc),
            )

    def _read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _run(
        self, command: Sequence[str], *, timeout: float | None = None
    ) -> tuple[int | None, str]:
        """Run ``command`` as the server account; ``None`` status means timed out."""
        account = self._account
        environment = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.work_dir),
            "LC_ALL": "C",
            "LANG": "C",
            "TZ": "UTC",
        }

        # Output goes to a file, not a pipe: the server that pg_ctl leaves
        # running could hold a pipe open and make reading it block forever.
        with tempfile.TemporaryFile() as output:
            try:
                completed = subprocess.run(  # noqa: S603 - fixed programs, no shell
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.work_dir,
                    env=environment,
                    timeout=timeout or self.timeout,
                    check=False,
                    user=account.uid if account else None,
                    group=account.gid if account else None,
                    extra_groups=list(account.groups) if account else None,
                )
                returncode: int | None = completed.returncode
            except subprocess.TimeoutExpired:
                returncode = None
            output.seek(0)
            text = output.read().decode(errors="replace")

        return returncode, text

    def _write_owned(self, path: Path, text: str, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), mode)
            if self._account is not None:
                os.fchown(handle.fileno(), self._account.uid, self._account.gid)


async def _execute_quoted(
    connection: asyncpg.Connection[asyncpg.Record], template: str, *values: str
) -> None:
    """Run a utility statement whose names and literals the server quotes."""
    # Utility statements take no bind parameters; format() quotes them instead.
    arguments = ", ".join(f"${index}::text" for index in range(2, len(values) + 2))
    statement = await connection.fetchval(
        f"SELECT format($1, {arguments})", template, *values
    )
    await connection.execute(statement)


def _short_temp_root() -> Path:
    # The macOS default temporary folder is too long for a Unix socket path.
    default = Path(tempfile.gettempdir())
    if len(str(default)) <= 20 or not Path("/tmp").is_dir():  # noqa: S108
        return default
    return Path("/tmp")  # noqa: S108


def _check_reachable(folder: Path, account: ServerAccount) -> None:
    for step in (folder, *folder.parents):
        info = step.stat()
        if info.st_uid == account.uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid in account.groups:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            raise LauncherError(
                f"PostgreSQL runs as {account.name!r}, which cannot enter {step} "
                f"(mode {info.st_mode & 0o777:o}); choose a base directory it "
                "can reach, such as one under /tmp"
            )


def _check_identifier(name: str) -> None:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"invalid PostgreSQL name {name!r}: use lower-case letters, digits "
            "and '_', starting with a letter or '_'"
        )


def _quote_setting(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
