"""Builds access tokens for each way a token can be good or bad."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.identity.keys import public_jwk
from shared.auth.dpop import DpopKey

# The realm client that really calls each service, so that forged tokens pass
# the policy's ``[callers]`` check unless a test says otherwise.
CALLER_OF = {
    "orchestrator": "document-processor",
    "extractor": "orchestrator",
    "validator": "orchestrator",
    "archivist": "orchestrator",
}


class TokenForge:
    """Signs tokens with a realm's signing key, or with a stranger's."""

    def __init__(self, signing_key_file: Path, issuer: str) -> None:
        loaded = serialization.load_pem_private_key(
            signing_key_file.read_bytes(), password=None
        )
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise TypeError("the realm signs with RSA")
        self.key = loaded
        self.kid = public_jwk(loaded.public_key(), "sig", "RS256")["kid"]
        self.issuer = issuer
        self.stranger = rsa.generate_private_key(65537, 2048)

    def claims(
        self, audience: str, roles: list[str], **overrides: Any
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": self.issuer,
            "aud": audience,
            "sub": str(uuid.uuid4()),
            "typ": "Bearer",
            "azp": CALLER_OF.get(audience, "forged-client"),
            "realm_access": {"roles": roles},
            "preferred_username": "service-account-forged-client",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(
        self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None
    ) -> str:
        return jwt.encode(
            claims, key or self.key, algorithm="RS256", headers={"kid": self.kid}
        )

    def valid(self, audience: str, roles: list[str], **overrides: Any) -> str:
        return self.sign(self.claims(audience, roles, **overrides))

    def bound(
        self, audience: str, roles: list[str], key: DpopKey, **overrides: Any
    ) -> str:
        """A DPoP-bound token, as Keycloak issues it with a proof."""
        binding = {"cnf": {"jkt": key.thumbprint}, "typ": "DPoP"}
        return self.valid(audience, roles, **(binding | overrides))

    def expired(self, audience: str, roles: list[str]) -> str:
        past = int(time.time()) - 3600
        return self.valid(audience, roles, iat=past - 300, exp=past)

    def other_key(self, audience: str, roles: list[str]) -> str:
        return self.sign(self.claims(audience, roles), key=self.stranger)

    def alg_none(self, audience: str, roles: list[str]) -> str:
        header = {"alg": "none", "typ": "JWT", "kid": self.kid}
        return f"{_b64(header)}.{_b64(self.claims(audience, roles))}."

    def hmac_with_public_key(self, audience: str, roles: list[str]) -> str:
        """The classic confusion attack: HS256 keyed with the RSA public key."""
        public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{_b64(header)}.{_b64(self.claims(audience, roles))}"
        mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    def wrong_issuer(self, audience: str, roles: list[str]) -> str:
        return self.valid(audience, roles, iss="https://evil.example/realms/a2a-mesh")

    def wrong_audience(self, audience: str, roles: list[str]) -> str:
        return self.valid("some-other-service", roles)


def _b64(part: dict[str, Any]) -> str:
    raw = json.dumps(part, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
