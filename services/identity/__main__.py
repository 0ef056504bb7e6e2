"""Run the identity stand-in: ``python -m services.identity``."""

from __future__ import annotations

import ssl

import uvicorn

from services.identity.app import create_app
from services.identity.settings import IdentitySettings
from shared.logging import configure_logging
from shared.peer_certificate import PeerCertificateProtocol


def main() -> None:
    """Serve the stand-in on the host and port of ``IdentitySettings``."""
    settings = IdentitySettings()
    configure_logging("identity", settings.log_level)

    # log_config=None keeps uvicorn from replacing our JSON logging.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        # Keep-alive connections from the services would otherwise hold a
        # SIGTERM for as long as they stay open.
        timeout_graceful_shutdown=5,
        ssl_certfile=settings.tls_certfile,
        ssl_keyfile=settings.tls_keyfile,
        # Asked for, not required: only certificate-bound clients need one.
        ssl_cert_reqs=(
            ssl.CERT_OPTIONAL if settings.tls_client_ca_file else ssl.CERT_NONE
        ),
        ssl_ca_certs=settings.tls_client_ca_file,
        http=PeerCertificateProtocol,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
