"""The identity provider's signing keys, fetched over HTTP and cached by ``kid``.

A miss refetches the set at most once per refresh interval, and concurrent
misses share that one fetch. If the provider cannot be reached, the keys
already cached keep working until they are older than ``max_age``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import jwt

from shared.logging import log_event

logger = logging.getLogger(__name__)

_SIGNING_KEY_TYPES = {"RSA", "EC"}


class JwksCache:
    """Verification keys by ``kid``; ``get`` returns None for a key it cannot find."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        refresh_interval: float = 10.0,
        max_age: float = 3600.0,
    ) -> None:
        self._http = http
        self._url = url
        self._refresh_interval = refresh_interval
        self._max_age = max_age
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return bool(self._keys) and not self._expired()

    def has(self, kid: str) -> bool:
        """Whether ``kid`` is a usable key now, without fetching anything."""
        return kid in self._keys and not self._expired()

    async def get(self, kid: str) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is not None and not self._expired():
            return key

        await self.refresh(reason="unknown_kid" if key is None else "expired")
        return None if self._expired() else self._keys.get(kid)

    async def refresh(self, *, reason: str = "startup") -> None:
        """Fetch the key set unless another caller just did."""
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted:
                return
            if self._recently_attempted():
                return
            self._attempted_at = time.monotonic()
            await self._fetch(reason)
            # Measured from the end too, so callers that waited on a slow
            # fetch take its result instead of starting another.
            self._attempted_at = time.monotonic()

    def _recently_attempted(self) -> bool:
        if self._attempted_at is None:
            return False
        return time.monotonic() - self._attempted_at < self._refresh_interval

    def _expired(self) -> bool:
        if self._fetched_at is None:
            return True
        return time.monotonic() - self._fetched_at > self._max_age

    async def _fetch(self, reason: str) -> None:
        try:
            response = await self._http.get(self._url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log_event(
                logger,
                "jwks.fetch_failed",
                level=logging.WARNING,
                reason=reason,
                error=type(exc).__name__,
                cached_keys=len(self._keys),
            )
            return

        keys = _signing_keys(document)
        if keys is None:
            log_event(
                logger,
                "jwks.malformed",
                level=logging.WARNING,
                reason=reason,
                cached_keys=len(self._keys),
            )
            return

        self._keys = keys
        self._fetched_at = time.monotonic()
        log_event(logger, "jwks.fetched", reason=reason, keys=len(self._keys))


def _signing_keys(document: object) -> dict[str, jwt.PyJWK] | None:
    """The usable signing keys of a JWKS, or None when it is not a JWKS at all.

    Encryption keys and keys of other types are skipped, not fatal.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return None

    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        # Keycloak also publishes an RSA-OAEP key for encryption: not ours to use.
        if entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in _SIGNING_KEY_TYPES:
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            log_event(
                logger, "jwks.key_skipped", level=logging.WARNING, kid=entry["kid"]
            )
    return keys
