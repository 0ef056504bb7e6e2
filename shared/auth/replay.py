"""Single use of DPoP proofs across every replica of a service.

A ``jti`` this replica has already seen is refused without a round trip; any
other is claimed in the shared store, which refuses the second claim wherever
it comes from. Entries are dropped once the proof would be stale anyway.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from shared.auth.store import SecurityStore
from shared.errors import ReplayDetected

_MAX_LOCAL_ENTRIES = 100_000


class ReplayGuard:
    def __init__(self, store: SecurityStore, audience: str) -> None:
        self._store = store
        self._audience = audience
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def claim(self, jti: str, expires_at: float) -> None:
        """Raises ``ReplayDetected`` unless this is the proof's first use."""
        self._forget_expired()
        if jti in self._seen:
            raise ReplayDetected("proof_replayed", "DPoP proof already used")

        # Remember before the round trip: a copy racing in on this replica
        # meanwhile is refused here instead of by the store.
        self._seen[jti] = expires_at
        if len(self._seen) > _MAX_LOCAL_ENTRIES:
            self._seen.popitem(last=False)
        if not await self._store.claim_proof(self._audience, jti, expires_at):
            raise ReplayDetected("proof_replayed", "DPoP proof already used")

    def _forget_expired(self) -> None:
        # Proofs arrive roughly in order of expiry, so the oldest are in front.
        now = time.time()
        while self._seen:
            jti, expires_at = next(iter(self._seen.items()))
            if expires_at > now:
                break
            del self._seen[jti]
