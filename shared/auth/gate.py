"""The security stack a request passes before any route sees it.

In order: credentials read from exactly one ``Authorization`` header, the
token verified, the calling client checked against the service's callers,
revocation, the DPoP proof (sender constraint, method, URL, freshness); then,
once the body has been read, the proof's body hash, the rate limit, and last
the proof's single use, so that a refused request spends no shared state.
Every refusal is recorded in the audit trail with the reason, and raised as
the ``AuthError`` the caller will see.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from shared.auth.audit import AUDIT_EVENTS, Audit
from shared.auth.dpop import ProofVerifier, VerifiedProof, b64url_sha256
from shared.auth.policy import SecurityPolicy
from shared.auth.principal import Principal
from shared.auth.ratelimit import RateLimiter
from shared.auth.replay import ReplayGuard
from shared.auth.revocation import RevocationList
from shared.auth.verifier import TokenVerifier
from shared.errors import (
    AuthError,
    Forbidden,
    TokenRevoked,
    Unauthenticated,
)
from shared.logging import jti_prefix


@dataclass(frozen=True)
class Credentials:
    scheme: str
    """``bearer`` or ``dpop``, lower-case."""
    token: str
    proof: str | None


@dataclass(frozen=True)
class Arrival:
    """A request as the gate sees it; ``body`` is empty until it has been read."""

    method: str
    path: str
    url: str
    """The URL as the caller addressed it: the configured public URL + path."""
    authorization: Sequence[str]
    proofs: Sequence[str]
    body: bytes = b""
    client_address: str | None = None
    client_certificate: bytes | None = None
    """The DER client certificate of the connection (mutual TLS), or the one
    a trusted ALB forwarded."""


@dataclass(frozen=True)
class Caller:
    """A request whose token (and proof) held, waiting for its body."""

    principal: Principal
    credentials: Credentials
    arrival: Arrival
    proof: VerifiedProof | None = None


class SecurityGate:
    def __init__(
        self,
        *,
        service: str,
        verifier: TokenVerifier,
        proofs: ProofVerifier,
        replay: ReplayGuard,
        revocations: RevocationList,
        policy: SecurityPolicy,
        audit: Audit,
        accept_bearer: bool,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._service = service
        self.verifier = verifier
        self.proofs = proofs
        self.replay = replay
        self.revocations = revocations
        self._policy = policy
        self.audit = audit
        self._accept_bearer = accept_bearer
        self._limiter = limiter or RateLimiter()
        self._callers = policy.allowed_callers(service)

    async def admit(self, arrival: Arrival) -> Principal:
        """The verified caller, or the ``AuthError`` that refuses it."""
        caller = await self.identify(arrival)
        return await self.confirm(caller, arrival.body)

    async def identify(self, arrival: Arrival) -> Caller:
        """The checks that need no body: credentials, token, caller,
        revocation and the DPoP proof but for its body hash.

        The middleware runs these before it reads the body, so neither a
        stranger nor the thief of a token without its key can make a service
        hold a large body.
        """
        principal: Principal | None = None
        try:
            credentials = read_credentials(arrival.authorization, arrival.proofs)
            principal = await self.verifier.verify(credentials.token)
            if self._callers is not None and principal.client_id not in self._callers:
                raise Forbidden(
                    "client_not_allowed", f"Client may not call the {self._service}"
                )
            if self.revocations.is_revoked(principal.jti):
                raise TokenRevoked("token_revoked", "Token has been revoked")
            _check_certificate(principal, arrival.client_certificate)
            proof = self._check_binding(principal, credentials, arrival)
        except AuthError as refusal:
            self._record(refusal, arrival, principal)
            raise
        return Caller(principal, credentials, arrival, proof)

    async def confirm(self, caller: Caller, body: bytes) -> Principal:
        """The checks on the request itself: DPoP, rate limit, single use."""
        try:
            await self._check(caller, body)
        except AuthError as refusal:
            self._record(refusal, caller.arrival, caller.principal)
            raise
        return caller.principal

    def _record(
        self, refusal: AuthError, arrival: Arrival, principal: Principal | None
    ) -> None:
        self.audit.record(
            AUDIT_EVENTS.get(type(refusal), "authentication_failure"),
            outcome="refused",
            reason=refusal.reason,
            principal=principal.subject if principal else None,
            client_id=principal.client_id if principal else None,
            jti=jti_prefix(principal.jti) if principal else None,
            path=arrival.path,
            client_address=arrival.client_address,
        )

    def charge(self, principal: Principal, items: int) -> None:
        """Count ``items`` more requests against the principal's rate limit:
        one call that starts many tasks spends as much as that many calls."""
        if items > 0:
            limit = self._policy.rate_limit.limit_for(principal.roles)
            self._limiter.admit(principal.subject, limit, cost=items)

    async def _check(self, caller: Caller, body: bytes) -> None:
        principal, proof = caller.principal, caller.proof
        if proof is not None:
            self.proofs.check_body(proof, body)

        self.charge(principal, 1)

        if proof is not None:
            try:
                await self.replay.claim(proof.jti, self.proofs.expiry_of(proof))
            except Exception:
                # Counted, then refused as a replay (someone else's request)
                # or left undecided by a store outage: neither may spend the
                # budget of the caller whose proof it is.
                self._limiter.release(principal.subject)
                raise

    def _check_binding(
        self, principal: Principal, credentials: Credentials, arrival: Arrival
    ) -> VerifiedProof | None:
        if principal.key_thumbprint is None:
            if credentials.scheme == "dpop":
                # RFC 9449 7.1: the DPoP scheme promises a bound token.
                raise Unauthenticated("dpop_token_not_bound")
            # A certificate-bound token is sender-constrained already.
            if not self._accept_bearer and principal.certificate_thumbprint is None:
                raise Unauthenticated("dpop_required")
            return None

        if credentials.scheme != "dpop" or credentials.proof is None:
            # A bound token without its proof is a stolen token until shown
            # otherwise.
            raise Unauthenticated("dpop_proof_missing")
        proof = self.proofs.verify(
            credentials.proof,
            method=arrival.method,
            url=arrival.url,
            access_token=credentials.token,
        )
        if proof.thumbprint != principal.key_thumbprint:
            raise Unauthenticated("dpop_key_mismatch")
        return proof


def _check_certificate(principal: Principal, certificate: bytes | None) -> None:
    """RFC 8705: a certificate-bound token only over a connection that
    presented that very certificate."""
    expected = principal.certificate_thumbprint
    if expected is None:
        return
    if certificate is None:
        raise Unauthenticated("certificate_required")
    if not hmac.compare_digest(b64url_sha256(certificate), expected):
        raise Unauthenticated("certificate_mismatch")


def read_credentials(
    authorization: Sequence[str], proofs: Sequence[str]
) -> Credentials:
    """The token and proof of a request; anything ambiguous is refused."""
    if not authorization:
        raise Unauthenticated("missing_token")
    if len(authorization) > 1 or len(proofs) > 1:
        # Two credentials leave it to chance which one a proxy and we each read.
        raise Unauthenticated("malformed_token")

    scheme, _, token = authorization[0].partition(" ")
    scheme = scheme.lower()
    token = token.strip()
    if scheme not in ("bearer", "dpop") or not token:
        raise Unauthenticated("malformed_token")
    return Credentials(scheme, token, proofs[0] if proofs else None)
