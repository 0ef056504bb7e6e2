"""An HTTPS proxy in front of the local S3 endpoint that fails some reads, for
fault tests: ``python -m tests.helpers.flaky_s3 UPSTREAM PORT CERT KEY CA``.

Reads of objects fail in bursts (``--burst`` reads fail, the next ``--burst``
pass, and so on, failing first), answered 503 as S3 does when it is
overloaded: long enough to outlast boto3's own retries, so the mesh's
handling is what keeps the documents. Counted in reads, not seconds, so that
the faults happen however fast the mesh reads. Everything else passes
through. ``GET /_faults`` counts them.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.tls import client_context

_UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>ServiceUnavailable</Code>"
    b"<Message>Injected by the fault test</Message></Error>"
)
# Hop-by-hop or recomputed headers that must not be copied across.
_DROPPED = frozenset({"content-length", "transfer-encoding", "connection"})


def create_app(upstream: str, ca_file: str, *, burst: int) -> Starlette:
    client = httpx.AsyncClient(
        base_url=upstream, verify=client_context(Path(ca_file)), timeout=30.0
    )
    counts: Counter[str] = Counter()

    def failing(request: Request) -> bool:
        # An object read: GET /bucket/key (not a bucket listing or head).
        if request.method != "GET" or request.url.path.count("/") < 2:
            return False
        counts["reads"] += 1
        return (counts["reads"] - 1) // burst % 2 == 0

    async def faults(request: Request) -> Response:
        return JSONResponse(dict(counts))

    async def forward(request: Request) -> Response:
        if failing(request):
            counts["failed"] += 1
            return Response(_UNAVAILABLE, status_code=503, media_type="application/xml")
        counts["passed"] += 1
        upstream_reply = await client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            headers=[
                (k, v) for k, v in request.headers.items() if k.lower() not in _DROPPED
            ],
            content=await request.body(),
        )
        headers = {
            k: v for k, v in upstream_reply.headers.items() if k.lower() not in _DROPPED
        }
        return Response(
            upstream_reply.content,
            status_code=upstream_reply.status_code,
            headers=headers,
        )

    methods = ["GET", "PUT", "POST", "HEAD", "DELETE"]
    return Starlette(
        routes=[
            Route("/_faults", faults),
            Route("/{path:path}", forward, methods=methods),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream")
    parser.add_argument("port", type=int)
    parser.add_argument("certfile")
    parser.add_argument("keyfile")
    parser.add_argument("ca_file")
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    app = create_app(args.upstream, args.ca_file, burst=args.burst)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
