"""Running one service as a process: settings from the environment, uvicorn."""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from shared.auth.policy import PolicyError
from shared.logging import configure_logging, log_event
from shared.peer_certificate import PeerCertificateProtocol
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
logger = logging.getLogger(__name__)


def serve(settings_type: type[S], create_app: Callable[[S], FastAPI]) -> None:
    """Read settings, configure logging and serve until SIGTERM or SIGINT."""
    settings = settings_type()
    configure_logging(settings.service_name, settings.log_level)
    try:
        app = create_app(settings)
    except PolicyError as error:
        # A policy half understood is worse than none: say what is wrong, stop.
        log_event(
            logger, "service.bad_policy", level=logging.CRITICAL, error=str(error)
        )
        print(f"{settings.service_name}: {error}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        # Idle keep-alive TLS connections would otherwise hold the shutdown
        # until their clients close them; in-flight requests get this long.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
        # Mutual TLS: without a certificate from the mesh CA, no handshake.
        ssl_cert_reqs=(
            ssl.CERT_REQUIRED if settings.tls_client_ca_file else ssl.CERT_NONE
        ),
        ssl_ca_certs=settings.tls_client_ca_file,
        # Puts the client certificate into each request (RFC 8705 checks).
        http=PeerCertificateProtocol,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 (or
        # FORWARDED_ALLOW_IPS); only our ProxyMiddleware decides that.
        proxy_headers=False,
    )
