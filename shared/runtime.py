"""What every service holds while it runs: HTTP client, secrets, database,
keys, tokens and the security gate.

Built in the app's lifespan, never at import time, and closed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import httpx

from shared.auth.audit import Audit
from shared.auth.dpop import DpopKey, ProofVerifier
from shared.auth.gate import SecurityGate
from shared.auth.jwks import JwksCache
from shared.auth.policy import SecurityPolicy
from shared.auth.replay import ReplayGuard
from shared.auth.revocation import Connect, RevocationList
from shared.auth.service_token import ServiceTokenProvider
from shared.auth.store import PostgresSecurityStore
from shared.auth.verifier import TokenVerifier
from shared.client import AgentClient
from shared.database import Database, apply_migrations, connect, create_pool
from shared.errors import DependencyUnavailable
from shared.logging import log_event
from shared.secrets import AwsEndpoint, SecretsManagerStore, SecretStore
from shared.settings import ServiceSettings
from shared.tls import client_context

logger = logging.getLogger(__name__)

# Used proofs are kept a minute or so; clearing them this often keeps the
# table small without a query per request.
_PROOF_CLEANUP_SECONDS = 60.0


@dataclass
class Runtime:
    settings: ServiceSettings
    http: httpx.AsyncClient
    aws: AwsEndpoint
    secrets: SecretStore
    database: Database
    security: PostgresSecurityStore
    keys: JwksCache
    gate: SecurityGate
    policy: SecurityPolicy
    revocations: RevocationList
    dpop_key: DpopKey
    _tokens: dict[str, ServiceTokenProvider] = field(default_factory=dict)

    def agent(self, name: str, base_url: str) -> AgentClient:
        """A client for another service, with tokens for that service alone."""
        return AgentClient(name, base_url, http=self.http, tokens=self.tokens_for(name))

    def tokens_for(self, audience: str) -> ServiceTokenProvider:
        """This service's tokens for ``audience``, from the Keycloak client
        scope ``<audience>-audience``."""
        provider = self._tokens.get(audience)
        if provider is None:
            settings = self.settings
            provider = ServiceTokenProvider(
                self.http,
                token_url=settings.token_endpoint,
                proof_url=settings.issuer_token_endpoint,
                client_id=settings.own_client_id,
                secret_id=settings.own_secret_id,
                secrets=self.secrets,
                renew_margin_seconds=settings.token_renew_margin_seconds,
                scope=f"{audience}-audience",
                dpop_key=self.dpop_key,
            )
            self._tokens[audience] = provider
        return provider


@asynccontextmanager
async def open_runtime(
    settings: ServiceSettings,
    policy: SecurityPolicy,
    secrets: SecretStore | None = None,
) -> AsyncIterator[Runtime]:
    aws = AwsEndpoint(
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        ca_bundle=settings.aws_ca_bundle,
    )
    secrets = secrets or SecretsManagerStore(
        aws, ttl_seconds=settings.secrets_ttl_seconds
    )
    timeout = httpx.Timeout(settings.http_timeout_seconds, connect=5.0)

    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                timeout=timeout,
                verify=client_context(
                    settings.ca_file, certificate=settings.client_certificate
                ),
            )
        )
        pool = await create_pool(settings, secrets)
        stack.push_async_callback(pool.close)
        await apply_migrations(pool)
        database = Database(
            pool,
            timeout=settings.db_command_timeout_seconds,
            password_refused=partial(secrets.refresh, settings.db_password_secret_id),
        )
        store = PostgresSecurityStore(database)

        keys = JwksCache(
            http,
            settings.jwks_endpoint,
            refresh_interval=settings.jwks_refresh_interval_seconds,
            max_age=settings.jwks_max_age_seconds,
        )
        await keys.refresh()

        gate = await open_gate(
            stack,
            service=settings.service_name,
            audience=settings.accepted_audience,
            issuer=settings.realm_url,
            algorithms=settings.allowed_algorithms,
            accept_bearer=settings.accept_bearer_tokens,
            policy=policy,
            keys=keys,
            store=store,
            listen=partial(connect, settings, secrets),
        )

        yield Runtime(
            settings=settings,
            http=http,
            aws=aws,
            secrets=secrets,
            database=database,
            security=store,
            keys=keys,
            gate=gate,
            policy=policy,
            revocations=gate.revocations,
            dpop_key=DpopKey(),
        )


async def open_gate(
    stack: AsyncExitStack,
    *,
    service: str,
    audience: str,
    issuer: str,
    algorithms: Iterable[str],
    accept_bearer: bool,
    policy: SecurityPolicy,
    keys: JwksCache,
    store: PostgresSecurityStore,
    listen: Connect,
) -> SecurityGate:
    """The security gate as every service runs it, its background work (the
    audit writer, the revocation listener, the clean-up of used proofs) tied
    to ``stack``. The benchmark builds it here too, to measure the real one."""
    audit = Audit(service, store)
    revocations = RevocationList(store)
    await revocations.reload()
    gate = SecurityGate(
        service=service,
        verifier=TokenVerifier(
            keys,
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            leeway_seconds=policy.tokens.leeway_seconds,
            max_lifetime_seconds=policy.tokens.max_lifetime_seconds,
        ),
        proofs=ProofVerifier(max_age_seconds=policy.tokens.proof_max_age_seconds),
        replay=ReplayGuard(store, audience),
        revocations=revocations,
        policy=policy,
        audit=audit,
        accept_bearer=accept_bearer,
    )

    background(stack, audit.run())
    background(stack, revocations.follow(listen))
    background(stack, _every(_PROOF_CLEANUP_SECONDS, store.forget_expired_proofs))
    return gate


def background(stack: AsyncExitStack, work: Awaitable[object]) -> None:
    """Run ``work`` until ``stack`` closes; a crash on the way is logged."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_report_crash)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


def _report_crash(task: asyncio.Future[object]) -> None:
    # These loops run for the service's life; ending early is a fault to see.
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log_event(
            logger,
            "service.background_task_failed",
            level=logging.CRITICAL,
            exc_info=error,
        )


async def _every(seconds: float, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        with contextlib.suppress(DependencyUnavailable):
            await job()
