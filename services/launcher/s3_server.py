"""moto as the local S3 and Secrets Manager endpoint, keeping connections
open: ``python -m services.launcher.s3_server -H HOST -p PORT -c CERT -k KEY``.

moto's own command runs werkzeug's development server, which closes the
connection after every response: each S3 call of a service then paid a new
TLS handshake on both sides, which real S3 never asks for (about 40 ms a
call here, against 3.5 ms on a kept connection). uvicorn serves the same
WSGI application over connections that stay open.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from typing import Any

import uvicorn
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    create_backend_app,
)

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def whole_bodies(app: Wsgi) -> Wsgi:
    """``app`` told that each request body ends where its stream ends.

    uvicorn hands a WSGI application the whole body at once, but a chunked
    upload (boto3 sends checksummed puts that way) has no Content-Length, and
    werkzeug, under moto, then reads nothing unless the server says the
    stream is terminated.
    """

    def terminated(
        environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return terminated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("-c", "--ssl-cert", required=True)
    parser.add_argument("-k", "--ssl-key", required=True)
    args = parser.parse_args()
    # moto builds some URLs (presigned ones) from it.
    os.environ.setdefault("MOTO_PORT", str(args.port))

    uvicorn.run(
        whole_bodies(DomainDispatcherApplication(create_backend_app)),
        interface="wsgi",
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_cert,
        ssl_keyfile=args.ssl_key,
        log_level="warning",
        # Kept connections must not hold a stop: clients reconnect.
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
