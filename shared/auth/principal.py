"""The verified caller of a request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Claims of a token whose signature, issuer, audience and expiry held."""

    subject: str
    client_id: str
    roles: frozenset[str]
    jti: str | None
    expires_at: int
    issued_at: int
    username: str | None = None
    key_thumbprint: str | None = None
    """``cnf.jkt`` of a DPoP-bound token: requests must prove this key."""
    certificate_thumbprint: str | None = None
    """``cnf.x5t#S256`` of a certificate-bound token: the connection's client
    certificate must have this SHA-256 thumbprint."""
