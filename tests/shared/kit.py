"""Keys, key sets, tokens, a fake clock, an in-memory security store and a tiny
protected app behind the real security gate, for shared/ tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.auth.audit import Audit
from shared.auth.dpop import DpopKey, ProofVerifier
from shared.auth.gate import SecurityGate
from shared.auth.jwks import JwksCache
from shared.auth.middleware import AuthMiddleware, CorrelationMiddleware
from shared.auth.policy import SecurityPolicy
from shared.auth.principal import Principal
from shared.auth.replay import ReplayGuard
from shared.auth.revocation import RevocationList
from shared.auth.store import Revocation, SecurityEvent
from shared.auth.verifier import TokenVerifier
from shared.errors import DependencyUnavailable
from shared.logging import correlation_id

ISSUER = "https://idp.test/realms/a2a-mesh"
AUDIENCE = "extractor"
JWKS_URL = f"{ISSUER}/protocol/openid-connect/certs"
TOKEN_URL = f"{ISSUER}/protocol/openid-connect/token"
ALGORITHMS = ("RS256", "PS256", "ES256")
BASE_URL = "https://extractor.test:8443"
"""The public URL of the tiny app: what DPoP proofs must name, whatever the
``Host`` header says."""
A2A_URL = f"{BASE_URL}/a2a"
BODY_LIMIT = 1024

# The tiny app plays the extractor. "lambda" is among its callers so that a
# second, differently-roled client can be admitted; "viewer" is not.
TEST_POLICY = """
[roles]
orchestrator = ["extract_document"]
lambda = ["upload"]

[callers]
extractor = ["orchestrator", "lambda"]

[rate_limit]
requests_per_minute = 1000
"""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private key with the ``kid`` and ``alg`` its public JWK announces."""

    kid: str
    algorithm: str
    private: PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )


def rsa_key(kid: str = "rsa-1", algorithm: str = "RS256") -> SigningKey:
    return SigningKey(kid, algorithm, rsa.generate_private_key(65537, 2048))


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


def claims(**overrides: Any) -> dict[str, Any]:
    """Keycloak-like access-token claims; an override of None drops the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "typ": "Bearer",
        "azp": "orchestrator",
        "realm_access": {"roles": ["orchestrator"]},
        "preferred_username": "service-account-orchestrator",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(
    key: SigningKey,
    payload: dict[str, Any] | None = None,
    *,
    algorithm: str | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """A token signed by ``key``; ``headers`` replaces the default ``{"kid": ...}``."""
    return jwt.encode(
        payload if payload is not None else claims(),
        key.private,
        algorithm=algorithm or key.algorithm,
        headers={"kid": key.kid} if headers is None else headers,
    )


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """The ``alg: none`` shape: header and payload, empty signature."""
    return f"{b64_json(header)}.{b64_json(payload)}."


def hmac_signed(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A token MACed with ``secret``, e.g. an RSA public key PEM."""
    signing_input = f"{b64_json(header)}.{b64_json(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64_json(part: object) -> str:
    return b64(json.dumps(part, separators=(",", ":")).encode())


def bound_claims(key: DpopKey, **overrides: Any) -> dict[str, Any]:
    """Claims of a token bound to ``key`` (``cnf.jkt``), as the realm issues them."""
    return claims(cnf={"jkt": key.thumbprint}, **overrides)


class Clock:
    """Stands in for the ``time`` module of the unit under test."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def mock_client(router: respx.MockRouter) -> httpx.AsyncClient:
    """An HTTP client whose every request goes to ``router`` and nowhere else."""
    return httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler))


def make_verifier(
    keys: JwksCache, *, algorithms: tuple[str, ...] = ALGORITHMS
) -> TokenVerifier:
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms)


@dataclass
class MemoryStore:
    """A ``SecurityStore`` in memory, for unit tests only: stands in for the
    PostgreSQL tables that every replica shares."""

    claimed: dict[tuple[str, str], float] = field(default_factory=dict)
    revoked: list[Revocation] = field(default_factory=list)
    batches: list[list[SecurityEvent]] = field(default_factory=list)
    claim_attempts: int = 0
    down: bool = False
    """While True, every call fails as a lost database does."""

    async def claim_proof(self, audience: str, jti: str, expires_at: float) -> bool:
        self._answer()
        self.claim_attempts += 1
        if (audience, jti) in self.claimed:
            return False
        self.claimed[(audience, jti)] = expires_at
        return True

    async def revocations(self) -> list[Revocation]:
        self._answer()
        now = time.time()
        return [r for r in self.revoked if r.expires_at > now]

    async def record(self, events: Sequence[SecurityEvent]) -> None:
        self._answer()
        self.batches.append(list(events))

    def revoke(self, jti: str, expires_at: float | None = None) -> None:
        """Store a revocation, as the admin API does (without the notice)."""
        if expires_at is None:
            expires_at = time.time() + 300
        self.revoked.append(Revocation(jti, expires_at))

    @property
    def events(self) -> list[SecurityEvent]:
        return [event for batch in self.batches for event in batch]

    def _answer(self) -> None:
        if self.down:
            raise DependencyUnavailable("database")


def make_gate(
    verifier: TokenVerifier,
    store: MemoryStore,
    *,
    policy: SecurityPolicy | None = None,
    accept_bearer: bool = True,
    revocations: RevocationList | None = None,
    service: str = AUDIENCE,
) -> SecurityGate:
    """The gate as a service's runtime builds it, over ``store``.

    Bearer tokens are accepted unless said otherwise, so the tests of plain
    token handling need no DPoP key; the DPoP-only mesh is tested explicitly.
    """
    policy = policy or SecurityPolicy.parse(TEST_POLICY)
    return SecurityGate(
        service=service,
        verifier=verifier,
        proofs=ProofVerifier(max_age_seconds=policy.tokens.proof_max_age_seconds),
        replay=ReplayGuard(store, service),
        revocations=revocations or RevocationList(store),
        policy=policy,
        audit=Audit(service, store),
        accept_bearer=accept_bearer,
    )


def protected_app(gate: SecurityGate) -> Starlette:
    """``POST /a2a`` behind both middlewares and ``gate``; ``GET /health`` open.

    ``/a2a`` answers with the caller it was given and the body it read.
    """

    async def a2a(request: Request) -> JSONResponse:
        principal: Principal = request.state.principal
        body = await request.body()
        return JSONResponse(
            {
                "subject": principal.subject,
                "client_id": principal.client_id,
                "roles": sorted(principal.roles),
                "correlation_id": correlation_id.get(),
                "body": body.decode(),
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "correlation_id": correlation_id.get()})

    return Starlette(
        routes=[
            Route("/a2a", a2a, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        middleware=[
            Middleware(CorrelationMiddleware),
            Middleware(
                AuthMiddleware,
                body_limits={"/a2a": BODY_LIMIT},
                gate=gate,
                base_url=BASE_URL,
            ),
        ],
    )


def asgi_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    )
