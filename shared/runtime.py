"""What every service holds while it runs: HTTP client, secrets, keys, tokens.

Built in the app's lifespan, never at import time, and closed with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from shared.auth.jwks import JwksCache
from shared.auth.policy import Policy
from shared.auth.service_token import ServiceTokenProvider
from shared.auth.verifier import TokenVerifier
from shared.client import AgentClient
from shared.secrets import AwsEndpoint, SecretsManagerStore, SecretStore
from shared.settings import ServiceSettings
from shared.tls import client_context


@dataclass(frozen=True)
class Runtime:
    settings: ServiceSettings
    http: httpx.AsyncClient
    aws: AwsEndpoint
    secrets: SecretStore
    keys: JwksCache
    verifier: TokenVerifier
    tokens: ServiceTokenProvider
    policy: Policy

    def agent(self, name: str, base_url: str) -> AgentClient:
        """A client for another service, authenticated as this one."""
        return AgentClient(name, base_url, http=self.http, tokens=self.tokens)


@asynccontextmanager
async def open_runtime(
    settings: ServiceSettings, secrets: SecretStore | None = None
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

    verify = client_context(settings.ca_file)
    async with httpx.AsyncClient(timeout=timeout, verify=verify) as http:
        keys = JwksCache(
            http,
            settings.jwks_endpoint,
            refresh_interval=settings.jwks_refresh_interval_seconds,
            max_age=settings.jwks_max_age_seconds,
        )
        await keys.refresh()
        yield Runtime(
            settings=settings,
            http=http,
            aws=aws,
            secrets=secrets,
            keys=keys,
            verifier=TokenVerifier(
                keys,
                issuer=settings.realm_url,
                audience=settings.accepted_audience,
                algorithms=settings.allowed_algorithms,
                leeway_seconds=settings.leeway_seconds,
            ),
            tokens=ServiceTokenProvider(
                http,
                token_url=settings.token_endpoint,
                client_id=settings.own_client_id,
                secret_id=settings.own_secret_id,
                secrets=secrets,
                renew_margin_seconds=settings.token_renew_margin_seconds,
            ),
            policy=Policy.load(settings.policy_file),
        )
