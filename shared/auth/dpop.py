"""DPoP (RFC 9449): proofs that the caller holds the key its token is bound to.

A caller makes a fresh proof for every request, signed with its own key pair:
method, URL, time, a unique ``jti``, the hash of the access token (``ath``)
and, beyond the RFC, the SHA-256 of the exact request body (``body_sha256``),
so a proof cannot carry a body other than the one it was made for.

The receiver checks all of that against the request as it arrived, and
returns the key's thumbprint for comparison with the token's ``cnf.jkt``.
Single use of the ``jti`` is the replay guard's job, not this module's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from shared.auth.compact import MalformedToken, unverified_header, verified_claims
from shared.errors import Unauthenticated

PROOF_TYPE = "dpop+jwt"
PROOF_ALGORITHMS = frozenset({"ES256", "RS256", "PS256"})
BODY_CLAIM = "body_sha256"

_KEY_TYPE_OF_ALGORITHM = {"ES256": "EC", "RS256": "RSA", "PS256": "RSA"}
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_JTI = re.compile(r"[\x21-\x7e]{1,128}")
_REQUIRED_CLAIMS = frozenset({"jti", "htm", "htu", "iat"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNMATCHABLE = "invalid:"


def b64url_sha256(data: bytes) -> str:
    """SHA-256, base64url without padding: the form of ``ath`` and the body hash."""
    digest = hashlib.sha256(data).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("not an EC or RSA public key")
    canonical = json.dumps(
        {m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True
    )
    return b64url_sha256(canonical.encode())


@lru_cache(maxsize=256)
def normalize_url(url: str) -> str:
    """``htu`` as compared: scheme and host lower-case, default port dropped,
    no query or fragment (RFC 9449, section 4.3)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return _UNMATCHABLE
    if "@" in parts.netloc:
        # User info has no place in a request URL; never equal to one.
        return _UNMATCHABLE
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


class DpopKey:
    """A caller's proof-of-possession key (ES256) and the proofs it signs."""

    def __init__(self, private: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._private = private or ec.generate_private_key(ec.SECP256R1())
        public = ECAlgorithm.to_jwk(self._private.public_key(), as_dict=True)
        self.public_jwk: dict[str, str] = {
            m: public[m] for m in _THUMBPRINT_MEMBERS["EC"]
        }
        self.thumbprint = jwk_thumbprint(self.public_jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        body: bytes | None = None,
        issued_at: int | None = None,
        jti: str | None = None,
    ) -> str:
        """A proof for one request; ``body`` None leaves the body hash out."""
        claims: dict[str, Any] = {
            "jti": jti or uuid.uuid4().hex,
            "htm": method.upper(),
            "htu": normalize_url(url),
            "iat": int(time.time()) if issued_at is None else issued_at,
        }
        if access_token is not None:
            claims["ath"] = b64url_sha256(access_token.encode())
        if body is not None:
            claims[BODY_CLAIM] = b64url_sha256(body)
        headers = {"typ": PROOF_TYPE, "jwk": self.public_jwk}
        return jwt.encode(claims, self._private, algorithm="ES256", headers=headers)


@dataclass(frozen=True)
class VerifiedProof:
    """What a receiver learns from a good proof."""

    jti: str
    issued_at: int
    thumbprint: str
    body_hash: str | None = None
    """The proof's ``body_sha256``, for ``check_body`` once the body is read."""


class ProofVerifier:
    """Checks proofs against the request they arrived with."""

    def __init__(
        self,
        *,
        max_age_seconds: float = 60.0,
        leeway_seconds: float = 5.0,
        algorithms: frozenset[str] = PROOF_ALGORITHMS,
    ) -> None:
        self.max_age_seconds = max_age_seconds
        self.leeway_seconds = leeway_seconds
        self._algorithms = algorithms & PROOF_ALGORITHMS

    def verify(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        body: bytes | None = None,
    ) -> VerifiedProof:
        """Raises ``Unauthenticated`` with a ``dpop_*`` reason unless all holds.

        ``access_token`` None skips ``ath`` (a token request has no token
        yet); ``body`` None skips the body hash.
        """
        header = _header(proof)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise Unauthenticated("dpop_algorithm_not_allowed")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & jwk.keys():
            raise Unauthenticated("dpop_invalid_key")
        if jwk.get("kty") != _KEY_TYPE_OF_ALGORITHM[algorithm]:
            raise Unauthenticated("dpop_algorithm_not_allowed")
        if algorithm == "ES256" and jwk.get("crv") != "P-256":
            # ES256 is P-256 with SHA-256 (RFC 7518 3.4); no other curve.
            raise Unauthenticated("dpop_invalid_key")

        try:
            thumbprint = jwk_thumbprint(jwk)
            key = _public_key(json.dumps(jwk, sort_keys=True), algorithm)
        except (ValueError, jwt.PyJWTError):
            raise Unauthenticated("dpop_invalid_key") from None

        claims = _claims(proof, key)
        self._check_request(claims, method, url)
        self._check_time(claims)
        _check_hash(claims, "ath", access_token, "dpop_token_mismatch")
        _check_hash(claims, BODY_CLAIM, body, "dpop_body_mismatch")
        body_hash = claims.get(BODY_CLAIM)
        return VerifiedProof(
            claims["jti"],
            claims["iat"],
            thumbprint,
            body_hash if isinstance(body_hash, str) else None,
        )

    def check_body(self, proof: VerifiedProof, body: bytes) -> None:
        """The body that arrived is the one the proof was made for."""
        if proof.body_hash != b64url_sha256(body):
            raise Unauthenticated("dpop_body_mismatch")

    def expiry_of(self, proof: VerifiedProof) -> float:
        """When a proof's ``jti`` can be forgotten: it would be stale by then."""
        return proof.issued_at + self.max_age_seconds + self.leeway_seconds

    def _check_request(self, claims: dict[str, Any], method: str, url: str) -> None:
        if claims.get("htm") != method.upper():
            raise Unauthenticated("dpop_wrong_method")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalize_url(htu) != normalize_url(url):
            raise Unauthenticated("dpop_wrong_url")

    def _check_time(self, claims: dict[str, Any]) -> None:
        issued_at = claims.get("iat")
        if isinstance(issued_at, bool) or not isinstance(issued_at, int):
            raise Unauthenticated("dpop_invalid_proof")
        now = time.time()
        if issued_at > now + self.leeway_seconds:
            raise Unauthenticated("dpop_not_yet_valid")
        if issued_at < now - self.max_age_seconds - self.leeway_seconds:
            raise Unauthenticated("dpop_stale_proof")


def _header(proof: str) -> dict[str, Any]:
    try:
        header = unverified_header(proof)
    except MalformedToken:
        raise Unauthenticated("dpop_invalid_proof") from None
    # RFC 7515 4.1.11: extensions we do not know, marked critical, mean no.
    if header.get("typ") != PROOF_TYPE or "crit" in header:
        raise Unauthenticated("dpop_invalid_proof")
    return header


@lru_cache(maxsize=1024)
def _public_key(jwk_json: str, algorithm: str) -> jwt.PyJWK:
    # Callers keep one key per process: building it once saves the parse.
    return jwt.PyJWK(json.loads(jwk_json), algorithm)


def _claims(proof: str, key: jwt.PyJWK) -> dict[str, Any]:
    # The header was read with unverified_header, so the proof has three
    # well-formed parts; the key is of the header's allowed algorithm.
    try:
        claims = verified_claims(proof, key)
    except MalformedToken:
        raise Unauthenticated("dpop_invalid_proof") from None
    if not claims.keys() >= _REQUIRED_CLAIMS:
        raise Unauthenticated("dpop_invalid_proof")

    # Printable ASCII: the jti is stored and logged, and PostgreSQL text
    # takes no NUL.
    jti = claims.get("jti")
    if not isinstance(jti, str) or not _JTI.fullmatch(jti):
        raise Unauthenticated("dpop_invalid_proof")
    return claims


def _check_hash(
    claims: dict[str, Any], claim: str, data: str | bytes | None, reason: str
) -> None:
    if data is None:
        return
    raw = data.encode() if isinstance(data, str) else data
    if claims.get(claim) != b64url_sha256(raw):
        raise Unauthenticated(reason)
