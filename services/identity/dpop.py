"""DPoP at the token endpoint (RFC 9449): tokens bound to the caller's key.

A token request may carry one ``DPoP`` header: a proof, signed with the
caller's own key, made for this very request (a POST to the token endpoint).
A good proof binds the token to that key: the token gets ``cnf.jkt``, the
key's thumbprint, and the type ``DPoP``, so that whoever steals it cannot use
it without the private key. A client whose attribute
``dpop.bound.access.tokens`` is "true" must send a proof; any other client
that sends one is bound all the same, as Keycloak 26 does. Every refusal is
Keycloak's ``400 invalid_dpop_proof``.

The URL a proof must name is built from the configured issuer, never from the
request's Host header, which the caller chooses.

Single use: the ``jti`` of each accepted proof is remembered until the proof
would be stale anyway (``iat`` + maximum age + leeway), and a second use is
refused. The record lives in this process's memory: it is not shared between
replicas and is lost on restart (a proof used just before a restart could be
used once more just after it), which is enough for this single-process
stand-in; Keycloak keeps the record in its cluster-wide single-use store. The
record is bounded: when it is full of proofs that are still fresh, further
proofs are refused with a 503 rather than a fresh entry being dropped early,
which would let that proof be replayed. Proofs are checked only once the
client has authenticated, so only a holder of valid credentials can fill it.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable

from fastapi import Request

from services.identity.errors import OAuthError
from services.identity.realm import Client
from shared.auth.dpop import ProofVerifier, VerifiedProof
from shared.errors import Unauthenticated

DPOP_HEADER = "DPoP"
PROOF_MAX_AGE_SECONDS = 60.0
PROOF_LEEWAY_SECONDS = 5.0
# What discovery advertises: the algorithms ``ProofVerifier`` accepts.
PROOF_SIGNING_ALGORITHMS = ("ES256", "RS256", "PS256")

_DEFAULT_CAPACITY = 10_000

# The verifier's reasons, worded as Keycloak words them.
_DESCRIPTIONS = {
    "dpop_wrong_method": "DPoP HTTP method mismatch",
    "dpop_wrong_url": "DPoP HTTP URL mismatch",
    "dpop_stale_proof": "DPoP proof is not active",
    "dpop_not_yet_valid": "DPoP proof is not active",
    "dpop_algorithm_not_allowed": "Unsupported DPoP algorithm",
    "dpop_invalid_key": "Invalid key in DPoP header",
}
_INVALID_PROOF = "DPoP verification failure"


class UsedProofsFull(Exception):
    """Every place in the record holds a proof that is still fresh."""


class UsedProofs:
    """The ``jti`` of every accepted proof that is not yet stale."""

    def __init__(
        self,
        capacity: int = _DEFAULT_CAPACITY,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._capacity = capacity
        self._clock = clock
        self._expiry_of: dict[str, float] = {}
        self._by_expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry_of)

    def first_use(self, jti: str, expires_at: float) -> bool:
        """Record ``jti`` until ``expires_at``; False if it is recorded already.

        Raises ``UsedProofsFull`` instead of forgetting a fresh proof.
        """
        self._forget_expired()
        if jti in self._expiry_of:
            return False
        if len(self._expiry_of) >= self._capacity:
            raise UsedProofsFull
        self._expiry_of[jti] = expires_at
        heapq.heappush(self._by_expiry, (expires_at, jti))
        return True

    def _forget_expired(self) -> None:
        now = self._clock()
        # Each turn removes one entry, so this ends within the capacity.
        while self._by_expiry and self._by_expiry[0][0] <= now:
            _, jti = heapq.heappop(self._by_expiry)
            del self._expiry_of[jti]


class TokenRequestProofs:
    """Checks the DPoP proof of a token request, and that it is used once."""

    def __init__(self, used: UsedProofs | None = None) -> None:
        self._verifier = ProofVerifier(
            max_age_seconds=PROOF_MAX_AGE_SECONDS,
            leeway_seconds=PROOF_LEEWAY_SECONDS,
        )
        self._used = UsedProofs() if used is None else used

    def thumbprint(
        self, request: Request, client: Client, token_url: str
    ) -> str | None:
        """The thumbprint of the key to bind the token to; None for a Bearer token."""
        proofs = request.headers.getlist(DPOP_HEADER)
        if not proofs:
            if client.dpop_bound:
                raise _refusal("dpop_missing", "DPoP proof is missing", client)
            return None
        if len(proofs) > 1:
            raise _refusal("dpop_multiple_proofs", "Multiple DPoP proofs", client)

        try:
            # A token request has no access token yet, and its body is not
            # covered: RFC 9449 proofs do not hash it.
            proof = self._verifier.verify(
                proofs[0], method="POST", url=token_url, access_token=None, body=None
            )
        except Unauthenticated as exc:
            description = _DESCRIPTIONS.get(exc.reason, _INVALID_PROOF)
            raise _refusal(exc.reason, description, client) from None

        self._use_once(proof, client)
        return proof.thumbprint

    def _use_once(self, proof: VerifiedProof, client: Client) -> None:
        try:
            first = self._used.first_use(proof.jti, self._verifier.expiry_of(proof))
        except UsedProofsFull:
            raise OAuthError(
                503,
                "temporarily_unavailable",
                "DPoP proofs cannot be checked now",
                reason="dpop_record_full",
                client_id=client.client_id,
                level=logging.ERROR,
            ) from None
        if not first:
            raise _refusal("dpop_replayed", "DPoP proof has already been used", client)


def _refusal(reason: str, description: str, client: Client) -> OAuthError:
    return OAuthError(
        400,
        "invalid_dpop_proof",
        description,
        reason=reason,
        client_id=client.client_id,
    )
