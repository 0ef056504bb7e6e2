"""Where the security layers keep what all replicas must share: used DPoP
proofs, revoked tokens and security events, in PostgreSQL.

Revocations are also announced on a notification channel, so that every
replica of every service hears of one within a second of the call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.database import Database

REVOCATION_CHANNEL = "mesh_token_revoked"


@dataclass(frozen=True)
class Revocation:
    jti: str
    expires_at: float


@dataclass(frozen=True)
class SecurityEvent:
    """One security decision, as kept for the admin API."""

    service: str
    event: str
    outcome: str
    reason: str | None = None
    principal: str | None = None
    client_id: str | None = None
    method: str | None = None
    path: str | None = None
    client_address: str | None = None
    jti_prefix: str | None = None
    correlation_id: str | None = None


class SecurityStore(Protocol):
    async def claim_proof(self, audience: str, jti: str, expires_at: float) -> bool:
        """True the first time a proof's ``jti`` is seen by ``audience``."""
        ...

    async def revocations(self) -> list[Revocation]:
        """Every revoked token that has not expired yet."""
        ...

    async def record(self, events: Sequence[SecurityEvent]) -> None: ...


class PostgresSecurityStore:
    """The shared store on the mesh's database."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def claim_proof(self, audience: str, jti: str, expires_at: float) -> bool:
        inserted = await self._database.fetchval(
            "INSERT INTO dpop_proofs (audience, jti, expires_at) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            audience,
            jti,
            _timestamp(expires_at),
        )
        return inserted is True

    async def forget_expired_proofs(self) -> None:
        await self._database.execute("DELETE FROM dpop_proofs WHERE expires_at < now()")

    async def revocations(self) -> list[Revocation]:
        rows = await self._database.fetch(
            "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > now()"
        )
        return [Revocation(r["jti"], r["expires_at"].timestamp()) for r in rows]

    async def revoke(
        self, jti: str, *, reason: str, revoked_by: str, expires_at: float
    ) -> bool:
        """Store and announce a revocation; False if ``jti`` was revoked before."""
        payload = json.dumps({"jti": jti, "expires_at": expires_at})
        async with self._database.transaction() as connection:
            inserted = await connection.fetchval(
                "INSERT INTO revoked_tokens (jti, reason, revoked_by, expires_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
                jti,
                reason,
                revoked_by,
                _timestamp(expires_at),
            )
            # Announced either way: a replica that missed the first notice
            # hears it again.
            await connection.execute(
                "SELECT pg_notify($1, $2)", REVOCATION_CHANNEL, payload
            )
        return inserted is True

    async def revoked_tokens(self, limit: int) -> list[dict[str, object]]:
        rows = await self._database.fetch(
            "SELECT jti, reason, revoked_by, revoked_at, expires_at"
            " FROM revoked_tokens ORDER BY revoked_at DESC LIMIT $1",
            limit,
        )
        return [
            {
                "jti": r["jti"],
                "reason": r["reason"],
                "revoked_by": r["revoked_by"],
                "revoked_at": r["revoked_at"].isoformat(),
                "expires_at": r["expires_at"].isoformat(),
                "active": r["expires_at"] > datetime.now(UTC),
            }
            for r in rows
        ]

    async def record(self, events: Sequence[SecurityEvent]) -> None:
        async with self._database.transaction() as connection:
            await connection.executemany(
                "INSERT INTO security_events (service, event, outcome, reason,"
                " principal, client_id, method, path, client_address, jti_prefix,"
                " correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                " $10, $11)",
                [
                    (
                        e.service,
                        e.event,
                        e.outcome,
                        e.reason,
                        e.principal,
                        e.client_id,
                        e.method,
                        e.path,
                        e.client_address,
                        e.jti_prefix,
                        e.correlation_id,
                    )
                    for e in events
                ],
            )

    async def statistics(self, since_seconds: int) -> dict[str, object]:
        """Security events of the last ``since_seconds``, summarised."""
        window = timedelta(seconds=since_seconds)
        by_event = await self._database.fetch(
            "SELECT service, event, reason, count(*) AS n FROM security_events"
            " WHERE occurred_at > now() - $1::interval"
            " GROUP BY service, event, reason ORDER BY n DESC",
            window,
        )
        by_principal = await self._database.fetch(
            "SELECT coalesce(client_id, principal, client_address) AS who,"
            " count(*) AS n FROM security_events"
            " WHERE occurred_at > now() - $1::interval AND outcome = 'refused'"
            " GROUP BY who ORDER BY n DESC LIMIT 10",
            window,
        )
        revoked = await self._database.fetchval(
            "SELECT count(*) FROM revoked_tokens WHERE expires_at > now()"
        )
        totals: dict[str, int] = {}
        for row in by_event:
            totals[row["event"]] = totals.get(row["event"], 0) + row["n"]
        return {
            "window_seconds": since_seconds,
            "totals": totals,
            "events": [
                {
                    "service": r["service"],
                    "event": r["event"],
                    "reason": r["reason"],
                    "count": r["n"],
                }
                for r in by_event
            ],
            "top_refused_callers": [
                {"caller": r["who"], "count": r["n"]} for r in by_principal
            ],
            "active_revocations": revoked,
        }


def _timestamp(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
