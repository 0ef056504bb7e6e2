"""Run the identity stand-in: ``python -m services.identity``."""

from __future__ import annotations

import ssl

import uvicorn

from services.identity.app import create_app
from services.identity.settings import IdentitySettings
from shared.logging import configure_logging
from shared.serve import server_tls


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
        # Asked for, not required: only certificate-bound clients need one.
        **server_tls(
            settings.tls_certfile,
            settings.tls_keyfile,
            client_ca_file=settings.tls_client_ca_file,
            client_certificate=ssl.CERT_OPTIONAL,
        ),
    )


if __name__ == "__main__":
    main()
