"""ASGI middleware: a correlation id on every request, a verified token on
every protected one.

A refused request never reaches a route: it gets the JSON-RPC error of the
refusal with HTTP 401 and ``WWW-Authenticate``. An accepted one carries its
``Principal`` in ``request.state.principal``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth.verifier import TokenVerifier
from shared.errors import AuthError, Unauthenticated
from shared.jsonrpc import error_reply
from shared.logging import correlation_id, jti_prefix, log_event

logger = logging.getLogger(__name__)

CORRELATION_HEADER = "x-correlation-id"
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CorrelationMiddleware:
    """Adopts a well-formed ``X-Correlation-ID`` or makes one, and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        offered = _header(scope, CORRELATION_HEADER)
        cid = offered if offered and _CORRELATION_ID.fullmatch(offered) else None
        cid = cid or uuid.uuid4().hex
        token = correlation_id.set(cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.encode(), cid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


class AuthMiddleware:
    """Refuses requests under the protected paths that lack a valid token."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier | None = None,
        protected: Sequence[str] = ("/a2a",),
        realm: str = "a2a-mesh",
    ) -> None:
        self.app = app
        self._verifier = verifier
        self._protected = tuple(protected)
        self._realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or not self._is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # Nothing under a protected path speaks WebSocket; refuse, never pass.
            await send({"type": "websocket.close", "code": 1008})
            return

        verifier = self._verifier or scope["app"].state.runtime.verifier
        try:
            principal = await verifier.verify(_bearer_token(scope))
        except AuthError as refusal:
            log_event(
                logger,
                "auth.refused",
                level=logging.WARNING,
                reason=refusal.reason,
                path=scope["path"],
                client_address=_client_address(scope),
            )
            await self._refuse(refusal, send)
            return

        log_event(
            logger,
            "auth.authenticated",
            client_id=principal.client_id,
            jti=jti_prefix(principal.jti),
            path=scope["path"],
        )
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    def _is_protected(self, path: str) -> bool:
        return any(
            path == prefix or path.startswith(prefix + "/")
            for prefix in self._protected
        )

    async def _refuse(self, refusal: AuthError, send: Send) -> None:
        reply = error_reply(refusal)
        challenge = f'Bearer realm="{self._realm}"'
        if refusal.reason != "missing_token":
            challenge += ', error="invalid_token"'
        headers = [
            (b"content-type", b"application/json"),
            (b"www-authenticate", challenge.encode()),
            (b"cache-control", b"no-store"),
        ]
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": headers}
        )
        await send(
            {"type": "http.response.body", "body": json.dumps(reply.body).encode()}
        )


def _bearer_token(scope: Scope) -> str:
    values = _headers(scope, "authorization")
    if not values:
        raise Unauthenticated("missing_token")
    if len(values) > 1:
        # Two credentials leave it to chance which one a proxy and we each read.
        raise Unauthenticated("malformed_token")

    value = values[0]
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("malformed_token")
    return token.strip()


def _header(scope: Scope, name: str) -> str | None:
    values = _headers(scope, name)
    return values[0] if values else None


def _headers(scope: Scope, name: str) -> list[str]:
    wanted = name.encode()
    return [
        value.decode("latin-1")
        for key, value in scope.get("headers", [])
        if key.lower() == wanted
    ]


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
