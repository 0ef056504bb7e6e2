"""Who is really calling, behind a load balancer: ``X-Forwarded-For`` and
``X-Forwarded-Proto`` are believed only when the connection comes from a
configured proxy address, and the ALB's mutual-TLS headers only when the
service is also told to trust the ALB with client certificates.

A request that carries ``X-Amzn-Mtls-Clientcert`` or
``X-Amzn-Mtls-Clientcert-Leaf`` from anywhere else is refused: whoever sent
it is trying to pass off a certificate they did not present.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.auth.middleware import send_error
from shared.errors import Unauthenticated
from shared.logging import log_event
from shared.peer_certificate import PEER_CERTIFICATE

logger = logging.getLogger(__name__)

ALB_CERTIFICATE_HEADERS = (b"x-amzn-mtls-clientcert", b"x-amzn-mtls-clientcert-leaf")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks; a ValueError names the one that is not."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


class ProxyMiddleware:
    """Rewrites ``client`` and ``scheme`` from a trusted proxy's headers, and
    refuses forwarded client certificates that are not to be trusted."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted: Sequence[str] = (),
        trust_alb_certificates: bool = False,
    ) -> None:
        self.app = app
        self._trusted = parse_networks(trusted)
        self._alb_certificates = trust_alb_certificates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        peer = scope.get("client")
        from_proxy = peer is not None and self._is_trusted(peer[0])

        if any(name in headers for name in ALB_CERTIFICATE_HEADERS) and not (
            from_proxy and self._alb_certificates
        ):
            _record(scope, "untrusted_certificate_header")
            await _refuse(send, "untrusted_certificate_header")
            return

        if from_proxy:
            scope = dict(scope)
            if self._alb_certificates:
                try:
                    _adopt_forwarded_certificate(scope, headers)
                except ValueError:
                    _record(scope, "malformed_certificate_header")
                    await _refuse(send, "malformed_certificate_header")
                    return
            forwarded = headers.get(b"x-forwarded-for")
            if forwarded:
                address = self._original_client(forwarded.decode("latin-1"))
                if address is not None:
                    scope["client"] = (address, 0)
            proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
        await self.app(scope, receive, send)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def _original_client(self, forwarded: str) -> str | None:
        # Each proxy appends the address it saw; the first one from the right
        # that is not one of ours is the client. Anything left of it was
        # written by the client and proves nothing.
        for entry in reversed([part.strip() for part in forwarded.split(",")]):
            try:
                ipaddress.ip_address(entry)
            except ValueError:
                return None
            if not self._is_trusted(entry):
                return entry
        return None


def _adopt_forwarded_certificate(scope: Scope, headers: dict[bytes, bytes]) -> None:
    """The ALB's client certificate becomes the request's peer certificate.

    Verify mode forwards the leaf, passthrough mode the chain (leaf first),
    both as URL-encoded PEM; the ALB has checked it in verify mode.
    """
    raw = headers.get(ALB_CERTIFICATE_HEADERS[1]) or headers.get(
        ALB_CERTIFICATE_HEADERS[0]
    )
    if raw is None:
        return
    pem = unquote(raw.decode("latin-1")).encode()
    certificate = x509.load_pem_x509_certificate(pem)
    state = dict(scope.get("state") or {})
    state[PEER_CERTIFICATE] = certificate.public_bytes(serialization.Encoding.DER)
    scope["state"] = state


def _record(scope: Scope, reason: str) -> None:
    """Into the service's audit trail (log and table) when it has one."""
    peer = scope.get("client")
    fields: dict[str, Any] = {
        "reason": reason,
        "client_address": peer[0] if peer else None,
        "path": scope.get("path"),
    }
    app = scope.get("app")
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    audit = getattr(getattr(runtime, "gate", None), "audit", None)
    if audit is not None:
        audit.record("authentication_failure", outcome="refused", **fields)
    else:
        log_event(
            logger,
            "authentication_failure",
            level=logging.WARNING,
            outcome="refused",
            **fields,
        )


async def _refuse(send: Send, reason: str) -> None:
    refusal = Unauthenticated(
        reason, "Client certificate headers are accepted only from the trusted ALB"
    )
    await send_error(send, refusal, [])
