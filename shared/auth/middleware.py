"""ASGI middleware: a correlation id on every request, the security gate in
front of every protected one.

A refused request never reaches a route: it gets the JSON-RPC error of the
refusal with its HTTP status (401 with ``WWW-Authenticate``, 403, 413, 429
with ``Retry-After``). An accepted one carries its ``Principal`` in
``request.state.principal``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth.dpop import PROOF_ALGORITHMS
from shared.auth.gate import Arrival, SecurityGate
from shared.errors import (
    AuthError,
    DependencyUnavailable,
    InvalidRequest,
    MeshError,
    PayloadTooLarge,
    RateLimited,
    ReplayDetected,
)
from shared.jsonrpc import error_reply
from shared.logging import correlation_id
from shared.peer_certificate import peer_certificate

CORRELATION_HEADER = "x-correlation-id"
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PROOF_ALGS = " ".join(sorted(PROOF_ALGORITHMS))


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
    """Puts the security gate in front of the protected paths.

    The token is checked first; then the body is read, up to the path's
    limit, because a DPoP proof covers it; the route then reads the same
    bytes as if nothing happened.
    Without an explicit gate, the app's runtime provides it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_limits: Mapping[str, int],
        gate: SecurityGate | None = None,
        base_url: str | None = None,
        realm: str = "a2a-mesh",
        body_timeout_seconds: float = 60.0,
    ) -> None:
        self.app = app
        self._limits = dict(body_limits)
        self._body_timeout = body_timeout_seconds
        self._gate = gate
        self._base_url = base_url
        self._realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = None if scope["type"] == "lifespan" else self._limit(scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # Nothing under a protected path speaks WebSocket; refuse, never pass.
            await send({"type": "websocket.close", "code": 1008})
            return

        gate, base_url = self._gate_of(scope)
        arrival = Arrival(
            method=scope["method"],
            path=scope["path"],
            url=base_url + scope["path"],
            authorization=_headers(scope, "authorization"),
            proofs=_headers(scope, "dpop"),
            client_address=_client_address(scope),
            client_certificate=peer_certificate(scope),
        )
        try:
            caller = await gate.identify(arrival)
            # A body trickled in a byte at a time would hold a worker forever.
            async with asyncio.timeout(self._body_timeout):
                body = await _read_body(scope, receive, limit)
            principal = await gate.confirm(caller, body)
        except TimeoutError:
            _refused_input(gate, scope, "body_timeout")
            slow = InvalidRequest(
                "Request body not received in time", data={"reason": "body_timeout"}
            )
            await send_error(send, slow, [(b"connection", b"close")], status=408)
            return
        except PayloadTooLarge as refusal:
            _refused_input(gate, scope, "too_large")
            await send_error(send, refusal, [])
            return
        except AuthError as refusal:
            await send_error(send, refusal, self._challenge(refusal))
            return
        except DependencyUnavailable as error:
            # The replay store is the database: without it no proof can be
            # shown unused, so the request is refused, and said to be retryable.
            await send_error(send, error, [(b"retry-after", b"1")], status=503)
            return

        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, _replay(body, receive), send)

    def _limit(self, path: str) -> int | None:
        # The longest protected prefix decides: /a2a/v1 has its own limit.
        for prefix in sorted(self._limits, key=len, reverse=True):
            if path == prefix or path.startswith(prefix + "/"):
                return self._limits[prefix]
        return None

    def _gate_of(self, scope: Scope) -> tuple[SecurityGate, str]:
        if self._gate is not None and self._base_url is not None:
            return self._gate, self._base_url
        runtime = scope["app"].state.runtime
        return runtime.gate, runtime.settings.public_base_url

    def _challenge(self, refusal: AuthError) -> list[tuple[bytes, bytes]]:
        if isinstance(refusal, RateLimited):
            return [(b"retry-after", str(refusal.retry_after).encode())]
        if refusal.http_status != 401:
            return []
        if refusal.reason.startswith("dpop_") or isinstance(refusal, ReplayDetected):
            challenge = f'DPoP algs="{_PROOF_ALGS}", error="invalid_dpop_proof"'
        else:
            challenge = f'Bearer realm="{self._realm}"'
            if refusal.reason != "missing_token":
                challenge += ', error="invalid_token"'
        return [(b"www-authenticate", challenge.encode())]


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = _header(scope, "content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes")

    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the rest."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def send_error(
    send: Send,
    refusal: MeshError,
    extra: list[tuple[bytes, bytes]],
    *,
    status: int | None = None,
) -> None:
    """Answer with the JSON-RPC error body of ``refusal``, never cached."""
    reply = error_reply(refusal)
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send(
        {
            "type": "http.response.start",
            "status": status or reply.status,
            "headers": headers,
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(reply.body).encode()})


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


def _refused_input(gate: SecurityGate, scope: Scope, reason: str) -> None:
    """Audit a body refused before any method saw it."""
    gate.audit.record(
        "invalid_input",
        outcome="refused",
        reason=reason,
        path=scope["path"],
        client_address=_client_address(scope),
    )


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
