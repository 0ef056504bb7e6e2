"""ProxyMiddleware: forwarded headers believed only from trusted proxies, and
the ALB's client-certificate headers refused unless the ALB is trusted."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from starlette.types import Message, Receive, Scope, Send

from certs.authority import create_ca, issue_client_cert
from shared.auth.proxy import ProxyMiddleware
from shared.peer_certificate import peer_certificate

ALB = "10.0.1.7"
CERT = b"-----BEGIN%20CERTIFICATE-----"


async def call(
    peer: str, headers: list[tuple[bytes, bytes]], **options: Any
) -> tuple[int, Scope | None]:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": "/a2a",
        "scheme": "http",
        "headers": headers,
        "client": (peer, 40000),
    }
    await ProxyMiddleware(app, **options)(scope, receive, send)
    return sent[0]["status"], seen[0] if seen else None


async def test_forwarded_for_from_a_trusted_proxy_names_the_client() -> None:
    status, scope = await call(
        ALB,
        [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")],
        trusted=["10.0.0.0/16"],
    )

    assert status == 200 and scope is not None
    assert scope["client"][0] == "203.0.113.9"
    assert scope["scheme"] == "https"


async def test_forwarded_for_from_anyone_else_is_ignored() -> None:
    _, scope = await call(
        "198.51.100.4",
        [(b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-proto", b"https")],
        trusted=["10.0.0.0/16"],
    )

    assert scope is not None
    assert scope["client"][0] == "198.51.100.4"
    assert scope["scheme"] == "http"


async def test_client_written_entries_left_of_the_proxy_prove_nothing() -> None:
    # The client wrote "1.2.3.4"; the ALB appended what it saw.
    _, scope = await call(
        ALB,
        [(b"x-forwarded-for", b"1.2.3.4, 203.0.113.9")],
        trusted=["10.0.0.0/16"],
    )

    assert scope is not None and scope["client"][0] == "203.0.113.9"


@pytest.mark.parametrize(
    "header", [b"x-amzn-mtls-clientcert", b"x-amzn-mtls-clientcert-leaf"]
)
async def test_alb_certificate_header_from_an_untrusted_peer_is_refused(
    header: bytes,
) -> None:
    status, scope = await call(
        "198.51.100.4",
        [(header, CERT)],
        trusted=["10.0.0.0/16"],
        trust_alb_certificates=True,
    )

    assert status == 401
    assert scope is None


async def test_alb_certificate_header_is_refused_when_the_alb_is_not_trusted() -> None:
    status, scope = await call(
        ALB, [(b"x-amzn-mtls-clientcert-leaf", CERT)], trusted=["10.0.0.0/16"]
    )

    assert status == 401
    assert scope is None


async def test_certificate_from_the_trusted_alb_becomes_the_peer_certificate(
    tmp_path: Path,
) -> None:
    pair = issue_client_cert(create_ca(tmp_path), tmp_path, "caller")
    certificate = pair.load_certificate()
    forwarded = quote(certificate.public_bytes(serialization.Encoding.PEM).decode())

    status, scope = await call(
        ALB,
        [(b"x-amzn-mtls-clientcert-leaf", forwarded.encode())],
        trusted=["10.0.0.0/16"],
        trust_alb_certificates=True,
    )

    assert status == 200 and scope is not None
    assert peer_certificate(scope) == certificate.public_bytes(
        serialization.Encoding.DER
    )


async def test_garbled_certificate_from_the_trusted_alb_is_refused() -> None:
    status, scope = await call(
        ALB,
        [(b"x-amzn-mtls-clientcert-leaf", CERT)],
        trusted=["10.0.0.0/16"],
        trust_alb_certificates=True,
    )

    assert status == 401
    assert scope is None
