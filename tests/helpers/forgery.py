"""Tokens and DPoP proofs as an attacker makes them: any header, any algorithm,
any key; and a web server on 127.0.0.1 that counts who comes to fetch keys."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared.auth.dpop import (
    BODY_CLAIM,
    PROOF_TYPE,
    DpopKey,
    b64url_sha256,
    normalize_url,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def b64_json(part: dict[str, Any]) -> str:
    raw = json.dumps(part, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(
    claims: dict[str, Any],
    key: PrivateKey | str | bytes,
    *,
    algorithm: str,
    headers: dict[str, Any],
) -> str:
    """A JWT with exactly ``headers`` (plus ``alg`` and ``typ``), signed by ``key``."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT whose signature is junk: enough when a check fails before it."""
    return f"{b64_json(header)}.{b64_json(claims)}.{'A' * 342}"


def public_jwk(key: PrivateKey, kid: str | None = None) -> dict[str, Any]:
    public = key.public_key()
    jwk: dict[str, Any]
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        jwk |= {"kid": kid, "use": "sig"}
    return jwk


def private_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return ECAlgorithm.to_jwk(key, as_dict=True)


@dataclass
class ProofKey:
    """A caller's DPoP key pair, kept whole so that proofs can be bent."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def dpop(self) -> DpopKey:
        return DpopKey(self.private)

    @property
    def thumbprint(self) -> str:
        return self.dpop.thumbprint

    def claims(
        self,
        method: str,
        url: str,
        *,
        token: str | None,
        body: bytes | None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Good proof claims for a request, then ``overrides`` (None removes)."""
        claims: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method,
            "htu": normalize_url(url),
            "iat": int(time.time()),
        }
        if token is not None:
            claims["ath"] = b64url_sha256(token.encode())
        if body is not None:
            claims[BODY_CLAIM] = b64url_sha256(body)
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def proof(
        self,
        claims: dict[str, Any],
        *,
        algorithm: str = "ES256",
        key: PrivateKey | str | None = None,
        **header: Any,
    ) -> str:
        """A proof of ``claims``; the header's ``jwk`` is this public key unless
        ``header`` says otherwise."""
        headers: dict[str, Any] = {"typ": PROOF_TYPE, "jwk": self.dpop.public_jwk}
        headers.update(header)
        headers = {k: v for k, v in headers.items() if v is not None}
        return sign(claims, key or self.private, algorithm=algorithm, headers=headers)


class KeyServer:
    """An attacker's key server on 127.0.0.1: serves a JWKS (or a certificate
    chain) at any path and counts every request that reaches it."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.requests: list[str] = []
        self._lock = threading.Lock()
        body = json.dumps(jwks).encode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.record(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}
        )

    def record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)

    @contextmanager
    def running(self) -> Iterator[KeyServer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._http.shutdown()
            self._http.server_close()
            self._thread.join(timeout=5)


@dataclass(frozen=True)
class Attacker:
    """A key pair of the attacker's, published on a server the attacker runs."""

    key: rsa.RSAPrivateKey
    kid: str
    server: KeyServer

    @property
    def jwks_url(self) -> str:
        return f"{self.server.url}/jwks.json"
