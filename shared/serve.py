"""Running one service as a process: settings from the environment, uvicorn."""

from __future__ import annotations

import logging
import signal
import ssl
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

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
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again
    # under the handler it found. ECS and compose stop services this way, and
    # a stop that went as planned is no failure: with this handler in place
    # the process exits 0 once the shutdown is done.
    signal.signal(signal.SIGTERM, _stopped_as_asked)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        # Idle keep-alive TLS connections would otherwise hold the shutdown
        # until their clients close them; in-flight requests get this long.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        # Mutual TLS: without a certificate from the mesh CA, no handshake.
        **server_tls(
            settings.tls_certfile,
            settings.tls_keyfile,
            client_ca_file=settings.tls_client_ca_file,
            client_certificate=ssl.CERT_REQUIRED,
        ),
    )
    _Server(config).run()


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app the moment a stop is asked for: work
    it takes on its own (claiming tasks) stops then, not only once the open
    connections have closed and the lifespan ends."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app = self.config.app
        for stopping in getattr(getattr(app, "state", None), "on_stopping", ()):
            stopping()
        super().handle_exit(sig, frame)


def _stopped_as_asked(signum: int, frame: FrameType | None) -> None:
    # Also when SIGTERM comes before uvicorn listens: the service stops.
    raise SystemExit(0)


def server_tls(
    certfile: str | None,
    keyfile: str | None,
    *,
    client_ca_file: str | None,
    client_certificate: ssl.VerifyMode,
) -> dict[str, Any]:
    """uvicorn's options for a mesh listener: HTTPS when a certificate is
    given, client certificates from ``client_ca_file`` asked for (required or
    optional) when it is set, and the client certificate put into each
    request for RFC 8705 checks."""
    options: dict[str, Any] = {
        "ssl_certfile": certfile,
        "ssl_keyfile": keyfile,
        "http": PeerCertificateProtocol,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 (or
        # FORWARDED_ALLOW_IPS); only our ProxyMiddleware decides that.
        "proxy_headers": False,
    }
    if client_ca_file:
        options["ssl_cert_reqs"] = client_certificate
        options["ssl_ca_certs"] = client_ca_file
    return options
