"""The admin API: revoke a token, list revocations, read the security stats.

    POST /admin/revoke-token      {"jti": "...", "reason": "..."}
    GET  /admin/revoked-tokens    ?limit=100
    GET  /admin/security-stats    ?window_seconds=3600

Only callers whose roles grant ``admin_api`` in the policy get past the
first line. A revocation is kept until any token with that ``jti`` must have
expired anyway: the policy's maximum token lifetime from now.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from pydantic import Field, field_validator

from shared.errors import (
    DependencyUnavailable,
    Forbidden,
    InvalidParams,
    MeshError,
    ParseError,
)
from shared.jsonrpc import Params, validate_params
from shared.logging import jti_prefix
from shared.runtime import Runtime
from shared.service import MeshJSONResponse, mesh_error_response, principal_of

ADMIN_GRANT = "admin_api"
ADMIN_BODY_BYTES = 16 * 1024
_TEXT = r"^[\x21-\x7e]+$"


class RevokeParams(Params):
    jti: str = Field(min_length=1, max_length=256, pattern=_TEXT)
    reason: str = Field(min_length=1, max_length=200)

    @field_validator("reason")
    @classmethod
    def _readable(cls, reason: str) -> str:
        # Stored and shown to other admins: no control characters, no NUL,
        # no lone surrogates (none of them is printable).
        if not reason.isprintable():
            raise ValueError("must be printable text")
        return reason


@dataclass(frozen=True)
class WholeNumber:
    """A query parameter that is a whole number from ``low`` to ``high``."""

    name: str
    default: int
    low: int
    high: int

    def read(self, request: Request) -> int:
        raw = request.query_params.get(self.name)
        if raw is None:
            return self.default
        # ASCII digits only: full-width digits pass str.isdigit, not a reader.
        # No more of them than the bound has: int() refuses over 4300 digits.
        if (
            not (raw.isascii() and raw.isdigit())
            or len(raw.lstrip("0")) > len(str(self.high))
            or not self.low <= int(raw) <= self.high
        ):
            raise InvalidParams(
                f"'{self.name}' must be a whole number from {self.low} to {self.high}",
                data={"field": self.name},
            )
        return int(raw)


REVOKED_LIMIT = WholeNumber("limit", 100, 1, 1000)
STATS_WINDOW = WholeNumber("window_seconds", 3600, 1, 30 * 86400)


def add_admin_routes(app: FastAPI) -> None:
    @app.post("/admin/revoke-token")
    async def revoke_token(request: Request) -> MeshJSONResponse:
        runtime: Runtime = request.app.state.runtime
        started = time.perf_counter()
        try:
            admin = _admin(request, runtime)
            params = _revoke_params(await request.body())
        except MeshError as error:
            return _refuse(runtime, request, error, started)

        expires_at = time.time() + runtime.policy.tokens.max_lifetime_seconds
        expires_at += runtime.policy.tokens.leeway_seconds
        try:
            created = await runtime.security.revoke(
                params.jti,
                reason=params.reason,
                revoked_by=admin,
                expires_at=expires_at,
            )
        except DependencyUnavailable as error:
            # Not stored: the admin must know, and may simply try again.
            return mesh_error_response(error, 503)
        # The admin's words stay in revoked_tokens; the event's reason is fixed.
        runtime.gate.audit.record(
            "token_revoked",
            outcome="revoked",
            principal=admin,
            jti=jti_prefix(params.jti),
            reason="revoked_by_admin",
            path=request.url.path,
            client_address=request.client.host if request.client else None,
        )
        return MeshJSONResponse(
            {
                "jti": params.jti,
                "revoked": True,
                "already_revoked": not created,
                "expires_at": datetime.fromtimestamp(expires_at, UTC).isoformat(),
            }
        )

    @app.get("/admin/revoked-tokens")
    async def revoked_tokens(request: Request) -> MeshJSONResponse:
        runtime: Runtime = request.app.state.runtime
        started = time.perf_counter()
        try:
            _admin(request, runtime)
            limit = REVOKED_LIMIT.read(request)
        except MeshError as error:
            return _refuse(runtime, request, error, started)
        try:
            tokens = await runtime.security.revoked_tokens(limit)
        except DependencyUnavailable as error:
            return mesh_error_response(error, 503)
        return MeshJSONResponse({"revoked_tokens": tokens, "count": len(tokens)})

    @app.get("/admin/security-stats")
    async def security_stats(request: Request) -> MeshJSONResponse:
        runtime: Runtime = request.app.state.runtime
        started = time.perf_counter()
        try:
            _admin(request, runtime)
            window = STATS_WINDOW.read(request)
        except MeshError as error:
            return _refuse(runtime, request, error, started)
        # Rows still queued on this replica are not counted yet: written
        # first, the answer includes everything refused until now.
        await runtime.gate.audit.flush()
        try:
            stats: dict[str, Any] = await runtime.security.statistics(window)
        except DependencyUnavailable as error:
            return mesh_error_response(error, 503)
        return MeshJSONResponse(stats)


def _admin(request: Request, runtime: Runtime) -> str:
    principal = principal_of(request)
    if not runtime.policy.roles.allows(principal.roles, ADMIN_GRANT):
        raise Forbidden("missing_role", "The admin API needs the admin role")
    return principal.username or principal.client_id


def _revoke_params(body: bytes) -> RevokeParams:
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raise ParseError() from None
    return validate_params(RevokeParams, raw)


def _refuse(
    runtime: Runtime, request: Request, error: MeshError, started: float
) -> MeshJSONResponse:
    runtime.gate.audit.outcome(
        principal_of(request),
        method=None,
        path=request.url.path,
        client_address=request.client.host if request.client else None,
        started=started,
        error=error,
    )
    status = error.http_status if error.http_status != 200 else 400
    return mesh_error_response(error, status)
