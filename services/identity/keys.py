"""The realm's keys: an RS256 signing key and, as Keycloak publishes, an RSA-OAEP one.

Keys are generated when the app is built and live only in memory, so every
restart is a key rotation: receivers meet an unknown ``kid`` and refetch the
JWKS. With a signing-key file the signing key survives restarts, as a real
Keycloak's does; the file is created (owner-only) when it does not exist.

The encryption key is published only because Keycloak's JWKS has one;
receivers must pick keys by ``use`` and ``alg`` and skip it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SIGNING_ALGORITHM = "RS256"
ENCRYPTION_ALGORITHM = "RSA-OAEP"
_KEY_SIZE = 2048
_PUBLIC_EXPONENT = 65537


@dataclass(frozen=True)
class RealmKeys:
    """The private signing key with its ``kid``, and the public JWKS."""

    signing_key: rsa.RSAPrivateKey
    kid: str
    jwks: dict[str, Any]


def generate_keys(signing_key_file: Path | None = None) -> RealmKeys:
    """A signing key (from ``signing_key_file`` if given), an encryption key,
    and their JWKS."""
    if signing_key_file is None:
        signing_key = rsa.generate_private_key(_PUBLIC_EXPONENT, _KEY_SIZE)
    else:
        signing_key = _stored_signing_key(signing_key_file)
    encryption_key = rsa.generate_private_key(_PUBLIC_EXPONENT, _KEY_SIZE)

    signing_jwk = public_jwk(signing_key.public_key(), "sig", SIGNING_ALGORITHM)
    encryption_jwk = public_jwk(
        encryption_key.public_key(), "enc", ENCRYPTION_ALGORITHM
    )
    return RealmKeys(
        signing_key=signing_key,
        kid=signing_jwk["kid"],
        jwks={"keys": [signing_jwk, encryption_jwk]},
    )


def _stored_signing_key(path: Path) -> rsa.RSAPrivateKey:
    if not path.exists():
        key = rsa.generate_private_key(_PUBLIC_EXPONENT, _KEY_SIZE)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        return key

    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return loaded


def public_jwk(key: rsa.RSAPublicKey, use: str, alg: str) -> dict[str, str]:
    """The JWK of an RSA public key, its ``kid`` being its RFC 7638 thumbprint."""
    numbers = key.public_numbers()
    n = _b64url_uint(numbers.n)
    e = _b64url_uint(numbers.e)
    return {
        "kid": jwk_thumbprint(n=n, e=e),
        "kty": "RSA",
        "alg": alg,
        "use": use,
        "n": n,
        "e": e,
    }


def jwk_thumbprint(*, n: str, e: str) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    canonical = json.dumps(
        {"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return _b64url(digest)


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
