"""The client certificate of a request's TLS connection, for RFC 8705.

uvicorn does not put the peer certificate into the ASGI scope. Its HTTP/1.1
protocol copies a ``state`` dict into every request's scope, so this
protocol gives each connection its own copy holding the DER certificate the
client presented in the handshake (asyncio calls ``connection_made`` only
after the handshake, so the certificate is known by then). A trusted ALB's
forwarded certificate goes to the same place (``shared.auth.proxy``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

PEER_CERTIFICATE = "tls_peer_certificate"


class PeerCertificateProtocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = (
            ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        )
        state: dict[str, Any] = dict(self.app_state)
        state[PEER_CERTIFICATE] = certificate
        self.app_state = state


def peer_certificate(scope: Scope) -> bytes | None:
    """The DER certificate of the request's client, if it presented one."""
    certificate = scope.get("state", {}).get(PEER_CERTIFICATE)
    return certificate if isinstance(certificate, bytes) else None
