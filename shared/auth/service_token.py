"""This service's own access tokens, from the client-credentials grant.

One provider holds the token for one audience (a Keycloak client scope such
as ``extractor-audience``), so a token stolen from one hop is no use at
another. With a DPoP key, every token request carries a proof and the token
comes back bound to that key.

The token is cached and renewed shortly before it expires; concurrent callers
share one request. The client secret comes from the secret store; when the
identity provider refuses it, the secret is read again once, so a rotated
secret causes no outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

import httpx

from shared.auth.dpop import DpopKey
from shared.errors import DependencyUnavailable
from shared.logging import log_event
from shared.retry import (
    RETRYABLE_STATUS,
    Backoff,
    Retryable,
    is_connection_error,
    retrying,
)
from shared.secrets import SecretStore

logger = logging.getLogger(__name__)


# While the identity provider does not answer, a token that is still valid is
# used, and renewal is tried again this often.
_RETRY_SECONDS = 5.0
_REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class AccessToken:
    value: str
    scheme: str
    """``Bearer`` or ``DPoP``: what goes before the token in ``Authorization``."""


@dataclass(frozen=True)
class _CachedToken:
    token: AccessToken
    renew_at: float
    expires_at: float

    def usable(self, now: float) -> bool:
        return now < self.expires_at


class ServiceTokenProvider:
    """Hands out a valid access token for this service's client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token_url: str,
        proof_url: str | None = None,
        client_id: str,
        secret_id: str,
        secrets: SecretStore,
        renew_margin_seconds: float = 30.0,
        scope: str | None = None,
        dpop_key: DpopKey | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._http = http
        self._token_url = token_url
        # Keycloak compares a proof's htu with the token endpoint under its
        # public host name, even for a request sent to it directly.
        self._proof_url = proof_url or token_url
        self._client_id = client_id
        self._secret_id = secret_id
        self._secrets = secrets
        self._margin = renew_margin_seconds
        self._scope = scope
        self._dpop_key = dpop_key
        # The identity provider is tried again like any other service.
        self._backoff = backoff or Backoff()
        self._cached: _CachedToken | None = None
        self._lock = asyncio.Lock()
        self._renewal: asyncio.Task[None] | None = None

    @property
    def dpop_key(self) -> DpopKey | None:
        return self._dpop_key

    async def token(self) -> AccessToken:
        cached = self._cached
        now = time.monotonic()
        if cached and now < cached.renew_at:
            return cached.token
        if cached and cached.usable(now):
            # Time to renew, but the token in hand still works: nobody waits
            # for the identity provider while it does.
            self._renew_in_background()
            return cached.token

        async with self._lock:
            if self._cached is not None and self._cached.usable(time.monotonic()):
                return self._cached.token
            self._cached = await self._request()
            return self._cached.token

    def _renew_in_background(self) -> None:
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        async with self._lock:
            held = self._cached
            try:
                self._cached = await self._request()
            except DependencyUnavailable:
                log_event(
                    logger,
                    "service_token.renewal_deferred",
                    level=logging.WARNING,
                    client_id=self._client_id,
                )
                if held is not None and self._cached is held:
                    self._cached = replace(
                        held, renew_at=time.monotonic() + _RETRY_SECONDS
                    )

    def invalidate(self) -> None:
        """Forget the cached token, e.g. after a receiver refused it."""
        self._cached = None

    async def _request(self) -> _CachedToken:
        response = await self._post(await self._secrets.get(self._secret_id))
        if response.status_code == 401:
            self._secrets.refresh(self._secret_id)
            response = await self._post(await self._secrets.get(self._secret_id))

        if response.status_code != 200:
            log_event(
                logger,
                "service_token.refused",
                level=logging.ERROR,
                client_id=self._client_id,
                status=response.status_code,
                error=_error_code(response),
            )
            raise DependencyUnavailable("identity-provider", "token request refused")

        token, lifetime = _token_of(response)
        if self._dpop_key is not None and token.scheme != "DPoP":
            # Sending it would fail at every receiver: say why here instead.
            log_event(logger, "service_token.not_bound", level=logging.ERROR)
            raise DependencyUnavailable("identity-provider", "token was not DPoP-bound")
        # Renew early, but never so early that a short-lived token is useless;
        # stop sending it a little before it expires, for clock skew.
        margin = min(self._margin, lifetime / 2)
        now = time.monotonic()
        log_event(
            logger,
            "service_token.issued",
            client_id=self._client_id,
            scope=self._scope,
            scheme=token.scheme,
            lifetime=lifetime,
        )
        return _CachedToken(
            token, now + lifetime - margin, now + lifetime - min(5.0, lifetime / 10)
        )

    async def _post(self, secret: str) -> httpx.Response:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope

        async def attempt() -> httpx.Response:
            # A proof is good for one request: each try gets its own.
            headers = {}
            if self._dpop_key is not None:
                headers["DPoP"] = self._dpop_key.proof("POST", self._proof_url)
            try:
                response = await self._http.post(
                    self._token_url,
                    data=form,
                    headers=headers,
                    auth=(self._client_id, secret),
                    timeout=_REQUEST_TIMEOUT_SECONDS,
                )
            except httpx.HTTPError as exc:
                if is_connection_error(exc):
                    raise Retryable(type(exc).__name__) from exc
                raise self._unreachable(type(exc).__name__) from exc
            if response.status_code in RETRYABLE_STATUS:
                raise Retryable(f"HTTP {response.status_code}")
            return response

        def retrying_after(failure: Retryable, delay: float) -> None:
            log_event(
                logger,
                "service_token.retrying",
                level=logging.WARNING,
                client_id=self._client_id,
                error=failure.error,
                delay_ms=round(delay * 1000),
            )

        try:
            return await retrying(self._backoff, attempt, retrying_after)
        except Retryable as failure:
            raise self._unreachable(failure.error) from failure.__cause__

    def _unreachable(self, error: str) -> DependencyUnavailable:
        log_event(
            logger,
            "service_token.unreachable",
            level=logging.ERROR,
            client_id=self._client_id,
            error=error,
        )
        return DependencyUnavailable("identity-provider")


def _token_of(response: httpx.Response) -> tuple[AccessToken, float]:
    """The access token and its lifetime from a token response."""
    try:
        body = response.json()
    except ValueError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        log_event(logger, "service_token.malformed", level=logging.ERROR)
        raise DependencyUnavailable("identity-provider", "malformed token response")

    token_type = body.get("token_type") if isinstance(body, dict) else None
    scheme = "DPoP" if str(token_type).lower() == "dpop" else "Bearer"
    lifetime = body.get("expires_in") if isinstance(body, dict) else None
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        lifetime = 60
    return AccessToken(token, scheme), max(float(lifetime), 1.0)


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None
