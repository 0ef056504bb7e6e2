"""Exact requests to the running mesh, for attack tests: the bytes and headers
given, repeated headers included, sent to any service or replica."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.launcher.mesh import LocalMesh
from shared.auth.dpop import DpopKey

Headers = list[tuple[str, str]]

BEARER_CHALLENGE = 'Bearer realm="a2a-mesh", error="invalid_token"'
DPOP_CHALLENGE = 'DPoP algs="ES256 PS256 RS256", error="invalid_dpop_proof"'


def new_correlation_id() -> str:
    """A correlation id no other request of the session carries."""
    return f"sec-{uuid.uuid4().hex}"


def unique_key(tag: str) -> str:
    """An S3 key no other request of the session names."""
    return f"uploads/security/{tag}/{uuid.uuid4().hex}.txt"


def rpc_body(method: str, params: Any, *, request_id: int | str = 1) -> bytes:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(request).encode()


def public_url(mesh: LocalMesh, service: str) -> str:
    """The ``/a2a`` URL callers address: a replica answers under its first
    process's URL, so that is what a DPoP proof names."""
    return f"{mesh.url(service.split('-')[0])}/a2a"


def http_client(mesh: LocalMesh, *, connections: int = 10) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections
    )
    return httpx.AsyncClient(verify=mesh.tls_context(), timeout=30.0, limits=limits)


@dataclass(frozen=True)
class RawRequest:
    """One request exactly as it goes on the wire, to a process by name."""

    service: str
    body: bytes
    headers: Headers = field(default_factory=list)
    path: str = "/a2a"
    method: str = "POST"

    def with_correlation(self, correlation_id: str) -> RawRequest:
        headers = [(k, v) for k, v in self.headers if k.lower() != "x-correlation-id"]
        headers.append(("X-Correlation-ID", correlation_id))
        return RawRequest(self.service, self.body, headers, self.path, self.method)

    @property
    def correlation_id(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "x-correlation-id":
                return value
        return None


async def send(
    mesh: LocalMesh, request: RawRequest, *, http: httpx.AsyncClient | None = None
) -> httpx.Response:
    """Send ``request`` as is; a fresh connection unless ``http`` is given."""
    if http is None:
        async with http_client(mesh) as fresh:
            return await send(mesh, request, http=fresh)
    url = f"{mesh.url(request.service)}{request.path}"
    return await http.request(
        request.method, url, content=request.body, headers=request.headers
    )


def bearer(
    service: str, body: bytes, token: str, *, correlation_id: str | None = None
) -> RawRequest:
    """``body`` to ``service`` with ``token`` as a plain bearer token."""
    headers = [
        ("Content-Type", "application/json"),
        ("Authorization", f"Bearer {token}"),
        ("X-Correlation-ID", correlation_id or new_correlation_id()),
    ]
    return RawRequest(service, body, headers)


def with_proof(
    mesh: LocalMesh,
    service: str,
    body: bytes,
    token: str,
    key: DpopKey,
    *,
    correlation_id: str | None = None,
) -> RawRequest:
    """``body`` to ``service`` with a DPoP-bound ``token`` and a good fresh proof
    by ``key`` for exactly this request."""
    proof = key.proof("POST", public_url(mesh, service), access_token=token, body=body)
    return dpop(service, body, token, proof, correlation_id=correlation_id)


def dpop(
    service: str,
    body: bytes,
    token: str,
    proof: str | Iterable[str] | None,
    *,
    scheme: str = "DPoP",
    correlation_id: str | None = None,
) -> RawRequest:
    """``body`` to ``service`` with the ``DPoP`` scheme and the proof(s) given."""
    proofs = [proof] if isinstance(proof, str) else list(proof or [])
    headers = [
        ("Content-Type", "application/json"),
        ("Authorization", f"{scheme} {token}"),
        *(("DPoP", p) for p in proofs),
        ("X-Correlation-ID", correlation_id or new_correlation_id()),
    ]
    return RawRequest(service, body, headers)


@dataclass(frozen=True)
class RawResponse:
    """A response read off the wire by ``pipelined``."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def encode(request: RawRequest, host: str) -> bytes:
    """``request`` as HTTP/1.1 bytes, its headers in order, repeats included."""
    lines = [
        f"{request.method} {request.path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {len(request.body)}",
        *(f"{name}: {value}" for name, value in request.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


async def pipelined(
    mesh: LocalMesh, requests: Sequence[RawRequest], *, connections: int = 50
) -> list[RawResponse]:
    """Every request on the wire at once: spread over ``connections`` TLS
    connections, each written in one go (HTTP/1.1 pipelining), so the service
    has them all before it answers the first. Answers in request order."""
    services = {request.service for request in requests}
    if len(services) != 1:
        raise ValueError("pipelined requests go to one service")
    address = httpx.URL(mesh.url(services.pop()))
    host, port = str(address.host), int(address.port or 443)
    context = mesh.tls_context()
    shares = [list(range(i, len(requests), connections)) for i in range(connections)]

    async def one_connection(indexes: list[int]) -> list[tuple[int, RawResponse]]:
        if not indexes:
            return []
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host
        )
        try:
            writer.write(
                b"".join(encode(requests[i], f"{host}:{port}") for i in indexes)
            )
            await writer.drain()
            return [(i, await _read_response(reader)) for i in indexes]
        finally:
            writer.close()

    async with asyncio.timeout(60):
        answered = await asyncio.gather(*(one_connection(s) for s in shares))
    ordered = sorted(pair for share in answered for pair in share)
    return [response for _, response in ordered]


async def _read_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    status = int(status_line.split(" ", 2)[1])
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in header_lines)
    ]
    response = RawResponse(status, headers, b"")
    length = response.header("content-length")
    if length is not None:
        return RawResponse(status, headers, await reader.readexactly(int(length)))
    if (response.header("transfer-encoding") or "").lower() != "chunked":
        raise ValueError("a response without a length")
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return RawResponse(status, headers, b"".join(chunks))
        chunks.append(chunk[:-2])


def archive_params(key: str) -> dict[str, Any]:
    """The archivist's ``archive_document`` for ``key``: a call that leaves a
    ``documents`` row when it runs."""
    extraction = {
        "s3_key": key,
        "content_hash": "0" * 64,
        "size_bytes": 5,
        "content_type": "text/plain",
        "format": "text",
        "document_type": "document",
        "text": "hello",
    }
    validation = {"document_type": "document", "score": 10, "passed": False}
    return {
        "task_id": str(uuid.uuid4()),
        "extraction": extraction,
        "validation": validation | {"rules": []},
    }
