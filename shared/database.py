"""PostgreSQL through asyncpg over TLS, and the migrations that shape it.

The connection always verifies the server's certificate against the configured
CA bundle and the host name (libpq's ``verify-full``); there is no setting that
weakens it. The password comes from the secret store and is read again once
when the server refuses it, so a rotated password causes no outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from shared.errors import DependencyUnavailable
from shared.logging import log_event
from shared.secrets import SecretStore
from shared.settings import DatabaseSettings
from shared.tls import client_context

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Any fixed number will do, as long as every service uses the same one.
_MIGRATION_LOCK = 0x6132615F6D657368

Pool = asyncpg.Pool
if TYPE_CHECKING:
    Connection = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

# What a lost, refused or restarting server looks like to asyncpg.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    # A connection the server dropped mid-query can be left in a state asyncpg
    # refuses to use again; for the caller that is still a lost database.
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
)


# A password refused even after reading the secret again: nothing the caller
# can fix, and not our bug either.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    *_CONNECTION_ERRORS,
    asyncpg.InvalidPasswordError,
)

_CUT_OFF: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    *_CONNECTION_ERRORS,
)


class Database:
    """The connection pool, with a lost server reported as ``DependencyUnavailable``.

    Repositories talk to this, never to asyncpg's pool, so a database outage is
    a -32013 for the caller and not an internal error.
    """

    def __init__(
        self,
        pool: Pool,
        *,
        timeout: float = 10.0,
        password_refused: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self._timeout = timeout
        self._password_refused = password_refused

    async def execute(self, query: str, *args: object) -> str:
        async with self._connection() as connection:
            return await connection.execute(query, *args)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        async with self._connection() as connection:
            return await connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        async with self._connection() as connection:
            return await connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: object) -> object:
        async with self._connection() as connection:
            return await connection.fetchval(query, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection inside a transaction, committed when the block ends."""
        async with self._connection() as connection, connection.transaction():
            yield connection

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        # A stalled server must not hold a caller: waiting for a connection
        # and the work on it share one deadline. A connection cut off by that
        # deadline (or by a lost server) is closed at once: handing it back
        # to the pool would reset it over the wire and wait all over again.
        async with _translated(), asyncio.timeout(self._timeout):
            connection = await self._acquire()
            try:
                yield connection
            except _CUT_OFF:
                connection.terminate()
                raise
            finally:
                await self.pool.release(connection)

    async def _acquire(self) -> Connection:
        try:
            return await self.pool.acquire()
        except asyncpg.InvalidPasswordError:
            if self._password_refused is None:
                raise
        # The password was rotated under a running pool: new connections need
        # the new one. Read the secret again, then try once more.
        log_event(logger, "database.password_reread", level=logging.WARNING)
        self._password_refused()
        return await self.pool.acquire()


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        log_event(
            logger,
            "database.unavailable",
            level=logging.ERROR,
            error=type(exc).__name__,
        )
        raise DependencyUnavailable("database") from exc


async def create_pool(settings: DatabaseSettings, secrets: SecretStore) -> Pool:
    """A connection pool, with one retry after re-reading the password."""
    try:
        return await _reread_on_refusal(
            settings, secrets, lambda: _connect(settings, secrets)
        )
    except asyncpg.InvalidPasswordError as exc:
        log_event(
            logger,
            "database.password_refused",
            level=logging.ERROR,
            user=settings.db_user,
        )
        raise DependencyUnavailable(
            "database", "the database refused the password"
        ) from exc


async def connect(
    settings: DatabaseSettings, secrets: SecretStore
) -> asyncpg.Connection:
    """One connection outside the pool, for a long ``LISTEN``; same TLS rules,
    and the same second try with the secret read again after a rotation."""
    options = await _options(settings, secrets)

    async def attempt() -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(**options)
        return connection

    return await _reread_on_refusal(settings, secrets, attempt)


async def _reread_on_refusal(
    settings: DatabaseSettings,
    secrets: SecretStore,
    attempt: Callable[[], Awaitable[T]],
) -> T:
    """``attempt``, and once more after reading the password secret again if
    the server refused the password: a rotation costs no outage."""
    try:
        return await attempt()
    except asyncpg.InvalidPasswordError:
        log_event(logger, "database.password_reread", level=logging.WARNING)
        secrets.refresh(settings.db_password_secret_id)
    return await attempt()


async def _options(settings: DatabaseSettings, secrets: SecretStore) -> dict[str, Any]:
    async def password() -> str:
        # Read for every new connection (from the store's cache), so a pool
        # opened before a rotation connects with the new password after it.
        return await secrets.get(settings.db_password_secret_id)

    return {
        "host": settings.db_host,
        "port": settings.db_port,
        "user": settings.db_user,
        "database": settings.db_name,
        "password": password,
        "ssl": client_context(settings.db_ca_file),
        "timeout": settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_command_timeout_seconds,
    }


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool.

    asyncpg's default reset is a round trip (unlock advisory locks, close
    cursors, UNLISTEN, RESET ALL) on every release, which doubled the cost of
    the replay check on each request. The mesh sets no session state on
    pooled connections: it LISTENs on a connection of its own and releases
    its one advisory lock explicitly. An open transaction is still rolled
    back by asyncpg before this is called.
    """


async def _connect(settings: DatabaseSettings, secrets: SecretStore) -> Pool:
    options = await _options(settings, secrets)
    try:
        pool = await asyncpg.create_pool(
            **options,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            reset=_keep_session,
        )
    except asyncpg.InvalidPasswordError:
        raise
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log_event(
            logger,
            "database.connect_failed",
            level=logging.ERROR,
            host=settings.db_host,
            port=settings.db_port,
            error=type(exc).__name__,
        )
        raise DependencyUnavailable("database") from exc

    log_event(
        logger, "database.connected", host=settings.db_host, port=settings.db_port
    )
    return pool


async def apply_migrations(pool: Pool) -> list[str]:
    """Apply the SQL files not yet applied, in order, under an advisory lock."""
    applied: list[str] = []
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                row["version"]
                for row in await connection.fetch(
                    "SELECT version FROM schema_migrations"
                )
            }
            for version, sql in _migrations():
                if version in done:
                    continue
                async with connection.transaction():
                    await connection.execute(sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version
                    )
                applied.append(version)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

    if applied:
        log_event(logger, "database.migrated", versions=applied)
    return applied


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files("shared.migrations")
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(entry.name.removesuffix(".sql"), entry.read_text()) for entry in files]
