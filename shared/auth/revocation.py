"""Revoked tokens, known to every replica within a second of the revocation.

Each replica loads the unexpired revocations at start-up and listens on the
database's notification channel for new ones. When that connection is lost,
it reconnects and loads the whole list again, so nothing announced while it
was away is missed; until it is back, it re-reads the table every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from shared.auth.store import REVOCATION_CHANNEL, Revocation, SecurityStore
from shared.errors import DependencyUnavailable
from shared.logging import jti_prefix, log_event

logger = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]

_RETRY_SECONDS = 1.0
_PROBE_SECONDS = 5.0
_PROBE_TIMEOUT_SECONDS = 3.0


class RevocationList:
    def __init__(self, store: SecurityStore) -> None:
        self._store = store
        self._revoked: dict[str, float] = {}
        self._listening = asyncio.Event()

    def is_revoked(self, jti: str | None) -> bool:
        if jti is None:
            return False
        expires_at = self._revoked.get(jti)
        return expires_at is not None and expires_at > time.time()

    def add(self, revocation: Revocation) -> None:
        self._revoked[revocation.jti] = revocation.expires_at

    async def reload(self) -> None:
        revocations = await self._store.revocations()
        # Merged, not replaced: a notice heard while the query ran may be
        # newer than what it read. Nothing is un-revoked; the expired go.
        now = time.time()
        revoked = {jti: at for jti, at in self._revoked.items() if at > now}
        revoked.update((r.jti, r.expires_at) for r in revocations)
        self._revoked = revoked

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def follow(self, connect: Connect) -> None:
        """Listen for revocations until cancelled, reconnecting when cut off."""
        while True:
            try:
                await self._listen(connect)
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                DependencyUnavailable,
            ) as exc:
                log_event(
                    logger,
                    "revocations.listener_lost",
                    level=logging.WARNING,
                    error=type(exc).__name__,
                )
            self._listening.clear()
            await self._poll_once()
            await asyncio.sleep(_RETRY_SECONDS)

    async def _listen(self, connect: Connect) -> None:
        connection = await connect()
        try:
            await connection.add_listener(REVOCATION_CHANNEL, self._on_notice)
            # Loaded after LISTEN, so a revocation in between is not missed.
            await self.reload()
            self._listening.set()
            log_event(logger, "revocations.listening", revoked=len(self._revoked))
            while not connection.is_closed():
                await asyncio.sleep(_PROBE_SECONDS)
                # A stalled server closes nothing: ask it something.
                await connection.fetchval("SELECT 1", timeout=_PROBE_TIMEOUT_SECONDS)
        finally:
            connection.terminate()

    async def _poll_once(self) -> None:
        with contextlib.suppress(DependencyUnavailable):
            await self.reload()

    def _on_notice(self, _c: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            notice = json.loads(str(payload))
            revocation = Revocation(str(notice["jti"]), float(notice["expires_at"]))
        except (ValueError, KeyError, TypeError):
            log_event(logger, "revocations.bad_notice", level=logging.WARNING)
            return
        self.add(revocation)
        log_event(logger, "token_revoked.received", jti=jti_prefix(revocation.jti))
