"""Secrets read at run time from AWS Secrets Manager through boto3.

boto3 blocks, so every call runs in a worker thread. Values are cached for a
while; ``refresh`` forgets one so that a rotated credential is read again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import DependencyUnavailable
from shared.logging import log_event

if TYPE_CHECKING:
    from types_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)


class SecretStore(Protocol):
    async def get(self, secret_id: str) -> str: ...

    def refresh(self, secret_id: str) -> None: ...


@dataclass(frozen=True)
class AwsEndpoint:
    """Where boto3 talks to: a region, and for local runs an endpoint and CA."""

    region: str
    endpoint_url: str | None = None
    ca_bundle: str | None = None
    credentials: tuple[str, str] | None = field(default=None, repr=False)
    """Access key id and secret; without them boto3 finds its own (task role)."""

    def client(self, service: str) -> Any:
        key_id, key = self.credentials or (None, None)
        # ``verify`` is a CA bundle path or True: certificate checks stay on.
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            verify=self.ca_bundle or True,
            aws_access_key_id=key_id,
            aws_secret_access_key=key,
        )


class SecretsManagerStore:
    """A ``SecretStore`` backed by Secrets Manager, with a TTL cache."""

    def __init__(self, endpoint: AwsEndpoint, ttl_seconds: float = 300.0) -> None:
        self._client: SecretsManagerClient = endpoint.client("secretsmanager")
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, str]] = {}

    async def get(self, secret_id: str) -> str:
        cached = self._cache.get(secret_id)
        if cached and time.monotonic() - cached[0] < self._ttl:
            return cached[1]

        value = await asyncio.to_thread(self._read, secret_id)
        self._cache[secret_id] = (time.monotonic(), value)
        return value

    def refresh(self, secret_id: str) -> None:
        self._cache.pop(secret_id, None)

    def _read(self, secret_id: str) -> str:
        try:
            response = self._client.get_secret_value(SecretId=secret_id)
        except (ClientError, BotoCoreError) as exc:
            log_event(
                logger,
                "secret.read_failed",
                level=logging.ERROR,
                secret_id=secret_id,
                error=type(exc).__name__,
            )
            raise DependencyUnavailable("secrets-manager") from exc
        value: object = response.get("SecretString")
        if not isinstance(value, str):
            log_event(
                logger,
                "secret.not_text",
                level=logging.ERROR,
                secret_id=secret_id,
            )
            raise DependencyUnavailable("secrets-manager", f"{secret_id} is not text")

        log_event(logger, "secret.read", secret_id=secret_id)
        return value


class StaticSecretStore:
    """A ``SecretStore`` over a fixed mapping, for unit tests."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = dict(values)

    async def get(self, secret_id: str) -> str:
        try:
            return self._values[secret_id]
        except KeyError:
            raise DependencyUnavailable("secrets-manager") from None

    def refresh(self, secret_id: str) -> None:
        return None
