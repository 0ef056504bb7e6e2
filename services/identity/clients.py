"""Client secrets: read from a secret store, compared in constant time."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from shared.secrets import SecretStore


class ClientSecrets:
    """Client secrets read lazily from a ``SecretStore``, re-read on mismatch.

    A presented secret that does not match makes the secret be read again
    (it may have been rotated), but at most once per ``min_refresh_interval``
    per client, so that wrong guesses cannot drive calls to Secrets Manager.
    """

    def __init__(
        self,
        store: SecretStore,
        prefix: str,
        *,
        min_refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._cache: dict[str, str] = {}
        self._read_at: dict[str, float] = {}

    async def verify(self, client_id: str, presented: str) -> bool:
        """Whether ``presented`` is the client's secret, tolerating a rotation."""
        if not presented:
            return False

        expected = self._cache.get(client_id)
        if expected is None:
            expected = await self._read(client_id)
        if _same_secret(presented, expected):
            return True

        last_read = self._read_at.get(client_id, float("-inf"))
        if self._clock() - last_read < self._min_refresh_interval:
            return False

        self._store.refresh(self._secret_id(client_id))
        return _same_secret(presented, await self._read(client_id))

    async def _read(self, client_id: str) -> str:
        value = await self._store.get(self._secret_id(client_id))
        self._cache[client_id] = value
        self._read_at[client_id] = self._clock()
        return value

    def _secret_id(self, client_id: str) -> str:
        return f"{self._prefix}{client_id}"


def _same_secret(presented: str, expected: str) -> bool:
    # compare_digest refuses non-ASCII str, so compare the encoded bytes.
    if not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
