"""Access-token verification: every rule comes from settings, none from the token.

The header is read only to pick the key and to check the algorithm against
the allow-list; claims are read only after the signature has been verified.

Services reuse one token for many calls, so a verified token is remembered
(by its exact text, until it expires) and the next request with it skips the
signature check, as long as the key that signed it is still in the key set.
Revocation is not cached here: the gate checks it on every request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import jwt

from shared.auth.compact import MalformedToken, unverified_header
from shared.auth.jwks import JwksCache
from shared.auth.principal import Principal
from shared.errors import Unauthenticated

_KEY_TYPE_OF_ALGORITHM = {"RS": "RSA", "PS": "RSA", "ES": "EC"}

# Library exceptions mapped to the short, fixed reasons a caller may see.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "bad_signature"),
)

# ``jti`` too: a token that cannot be named cannot be revoked.
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]
_MAX_JTI_LENGTH = 256
# Each caller holds one token per audience for minutes: a few thousand
# entries cover a busy mesh, and the oldest go first.
_REMEMBERED_TOKENS = 4096


class TokenVerifier:
    """Turns a bearer token into a ``Principal`` or raises ``Unauthenticated``."""

    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str,
        audience: str,
        algorithms: Iterable[str],
        leeway_seconds: int = 30,
        max_lifetime_seconds: int = 3600,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._verified: OrderedDict[str, tuple[str, Principal]] = OrderedDict()

    def _remembered(self, token: str) -> Principal | None:
        entry = self._verified.get(token)
        if entry is None:
            return None
        kid, principal = entry
        if time.time() >= principal.expires_at + self._leeway or not self._keys.has(
            kid
        ):
            del self._verified[token]
            return None
        return principal

    def _remember(self, token: str, kid: str, principal: Principal) -> None:
        self._verified[token] = (kid, principal)
        if len(self._verified) > _REMEMBERED_TOKENS:
            self._verified.popitem(last=False)

    async def verify(self, token: str) -> Principal:
        remembered = self._remembered(token)
        if remembered is not None:
            return remembered

        try:
            header = unverified_header(token)
        except MalformedToken:
            raise Unauthenticated("malformed_token") from None

        if "crit" in header:
            # RFC 7515 4.1.11: no critical extension is understood here.
            raise Unauthenticated("malformed_token")
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise Unauthenticated("algorithm_not_allowed")

        kid = header.get("kid")
        if "kid" in header and not isinstance(kid, str):
            raise Unauthenticated("malformed_token")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("unknown_key")

        key = await self._keys.get(kid)
        if key is None:
            raise Unauthenticated("unknown_key")
        if key.key_type != _KEY_TYPE_OF_ALGORITHM[algorithm[:2]]:
            raise Unauthenticated("algorithm_not_allowed")

        claims = self._decode(token, key, algorithm)
        principal = _principal(claims)
        # A stolen long-lived token is worth more to an attacker; the realm
        # issues minutes, so hours mean a misconfigured or forged issuer.
        if principal.expires_at - principal.issued_at > self._max_lifetime:
            raise Unauthenticated("lifetime_too_long")
        self._remember(token, kid, principal)
        return principal

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_reason(exc)) from None


def _reason(exc: jwt.PyJWTError) -> str:
    for error_type, reason in _REASONS:
        if isinstance(exc, error_type):
            return reason
    return "invalid_token"


def _principal(claims: dict[str, Any]) -> Principal:
    # Keycloak marks its ID and refresh tokens with another ``typ``; only an
    # access token may call a service: ``Bearer``, or ``DPoP`` when bound.
    token_type = claims.get("typ", "Bearer")
    if token_type not in ("Bearer", "DPoP"):
        raise Unauthenticated("invalid_token")
    # RFC 7519 NumericDate: a number, not a string that happens to parse as one.
    for claim in ("exp", "iat", "nbf"):
        value = claims.get(claim)
        if claim in claims and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise Unauthenticated("invalid_token")

    realm_access = claims.get("realm_access")
    roles = realm_access.get("roles") if isinstance(realm_access, dict) else None
    if not isinstance(roles, list):
        roles = []
    client_id = claims.get("azp") or claims.get("client_id")
    if not isinstance(client_id, str):
        raise Unauthenticated("missing_claim")

    jti = claims["jti"]
    if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI_LENGTH:
        raise Unauthenticated("invalid_token")

    key_thumbprint, certificate_thumbprint = _confirmation(claims)
    if token_type == "DPoP" and key_thumbprint is None:  # noqa: S105 (a type)
        raise Unauthenticated("invalid_token")

    return Principal(
        subject=str(claims["sub"]),
        client_id=client_id,
        roles=frozenset(r for r in roles if isinstance(r, str)),
        jti=jti,
        expires_at=int(claims["exp"]),
        issued_at=int(claims["iat"]),
        username=claims.get("preferred_username"),
        key_thumbprint=key_thumbprint,
        certificate_thumbprint=certificate_thumbprint,
    )


def _confirmation(claims: dict[str, Any]) -> tuple[str | None, str | None]:
    """``cnf.jkt`` (a DPoP key, RFC 9449) and ``cnf.x5t#S256`` (a client
    certificate, RFC 8705): what the token is bound to, if anything."""
    confirmation = claims.get("cnf")
    if confirmation is None:
        return None, None
    if not isinstance(confirmation, dict):
        raise Unauthenticated("invalid_token")

    bound = [confirmation.get(member) for member in ("jkt", "x5t#S256")]
    present = [value for value in bound if value is not None]
    # A confirmation we cannot honour must not be read as "unbound".
    if not present or not all(isinstance(v, str) and v for v in present):
        raise Unauthenticated("invalid_token")
    return bound[0], bound[1]
