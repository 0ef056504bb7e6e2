"""The audit trail: every security decision as a JSON log line, and the
refusals and revocations also as rows for the admin API.

Rows are written in batches by a background task, so an attack costs the
database one insert per batch, not one per request; if the database cannot
keep up, the oldest unwritten rows are dropped (and counted) rather than
holding requests or memory. The log line is written either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from shared.auth.principal import Principal
from shared.auth.store import SecurityEvent, SecurityStore
from shared.errors import (
    AuthError,
    DependencyUnavailable,
    Forbidden,
    InvalidParams,
    InvalidRequest,
    MeshError,
    MethodNotFound,
    ParseError,
    PayloadTooLarge,
    RateLimited,
    ReplayDetected,
    TokenRevoked,
    Unauthenticated,
)
from shared.logging import correlation_id, jti_prefix, log_event

logger = logging.getLogger("shared.audit")

# The event of each refusal by the security layer.
AUDIT_EVENTS: dict[type[AuthError], str] = {
    Unauthenticated: "authentication_failure",
    Forbidden: "authorization_failure",
    RateLimited: "rate_limit_exceeded",
    ReplayDetected: "replay_detected",
    TokenRevoked: "token_revoked",
}
# Events about a refusal are warnings in the log; the rest is information.
REFUSALS = frozenset(
    {
        "authentication_failure",
        "authorization_failure",
        "rate_limit_exceeded",
        "replay_detected",
        "token_revoked",
        "invalid_input",
    }
)
# What the caller sent was wrong: refused input, worth an administrator's look.
_INPUT_ERRORS = (
    ParseError,
    InvalidRequest,
    InvalidParams,
    MethodNotFound,
    PayloadTooLarge,
)
_FLUSH_SECONDS = 0.5
_MAX_PENDING = 10_000
_BATCH = 500


class Audit:
    def __init__(self, service: str, store: SecurityStore | None = None) -> None:
        self._service = service
        self._store = store
        self._pending: deque[SecurityEvent] = deque(maxlen=_MAX_PENDING)
        self.dropped = 0

    def record(
        self,
        event: str,
        *,
        outcome: str,
        persist: bool = True,
        **fields: Any,
    ) -> None:
        """Log ``event``; keep it for the admin API too unless ``persist`` is off."""
        level = logging.WARNING if event in REFUSALS else logging.INFO
        log_event(logger, event, level=level, outcome=outcome, **fields)
        if not persist or self._store is None:
            return

        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(
            SecurityEvent(
                service=self._service,
                event=event,
                outcome=outcome,
                reason=_text(fields.get("reason")),
                principal=_text(fields.get("principal")),
                client_id=_text(fields.get("client_id")),
                method=_text(fields.get("method")),
                path=_text(fields.get("path")),
                client_address=_text(fields.get("client_address")),
                jti_prefix=_text(fields.get("jti")),
                correlation_id=correlation_id.get(),
            )
        )

    def outcome(
        self,
        principal: Principal,
        *,
        method: str | None,
        path: str,
        client_address: str | None,
        started: float,
        error: MeshError | None,
    ) -> None:
        """Record how an admitted request ended: ``method_executed`` (logged
        only), or the refusal of its role or input (also kept)."""
        fields: dict[str, Any] = {
            "principal": principal.subject,
            "client_id": principal.client_id,
            "jti": jti_prefix(principal.jti),
            "method": method,
            "path": path,
            "client_address": client_address,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if error is None:
            self.record("method_executed", outcome="ok", persist=False, **fields)
        elif isinstance(error, AuthError):
            # A role that does not grant the method; a batch bigger than what
            # is left of the caller's minute.
            event = AUDIT_EVENTS.get(type(error), "authorization_failure")
            self.record(event, outcome="refused", reason=error.reason, **fields)
        elif isinstance(error, _INPUT_ERRORS):
            reason = type(error).__name__
            self.record("invalid_input", outcome="refused", reason=reason, **fields)
        else:
            # The method ran and failed: a fact about the work, not an attack.
            code = error.to_jsonrpc()["code"]
            self.record(
                "method_executed",
                outcome="error",
                persist=False,
                error_code=code,
                **fields,
            )

    async def run(self) -> None:
        """Write pending rows until cancelled; the last ones on the way out."""
        try:
            while True:
                await asyncio.sleep(_FLUSH_SECONDS)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    async def flush(self) -> None:
        if self._store is None:
            return
        while self._pending:
            batch = [
                self._pending.popleft() for _ in range(min(_BATCH, len(self._pending)))
            ]
            try:
                await self._store.record(batch)
            except DependencyUnavailable:
                # Put them back in front; the log lines already exist. What
                # no longer fits falls off the new end, and is counted.
                room = (self._pending.maxlen or 0) - len(self._pending)
                self.dropped += max(0, len(batch) - room)
                self._pending.extendleft(reversed(batch))
                log_event(
                    logger,
                    "audit.write_deferred",
                    level=logging.WARNING,
                    pending=len(self._pending),
                    dropped=self.dropped,
                )
                return
            except Exception as exc:
                # A row the database will never take must not stop the writer
                # for the rows after it: this batch is dropped, and counted.
                self.dropped += len(batch)
                log_event(
                    logger,
                    "audit.write_failed",
                    level=logging.ERROR,
                    error=type(exc).__name__,
                    dropped=self.dropped,
                )


def _text(value: object) -> str | None:
    """At most 200 printable characters: PostgreSQL text cannot hold a NUL,
    and a caller chooses the path."""
    if value is None:
        return None
    text = str(value)[:200]
    return (
        text
        if text.isprintable()
        else "".join(c if c.isprintable() else "\ufffd" for c in text)
    )
