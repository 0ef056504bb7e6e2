"""SecurityGate: credentials, token, callers, revocation, DPoP binding, rate
limit and single use, in that order; a refused request spends nothing, and
every refusal is in the audit trail."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from shared.auth.dpop import DpopKey, b64url_sha256
from shared.auth.gate import Arrival, SecurityGate
from shared.auth.policy import SecurityPolicy
from shared.auth.principal import Principal
from shared.auth.revocation import RevocationList
from shared.auth.store import Revocation
from shared.auth.verifier import TokenVerifier
from shared.errors import (
    AuthError,
    DependencyUnavailable,
    Forbidden,
    RateLimited,
    ReplayDetected,
    TokenRevoked,
    Unauthenticated,
)
from tests.shared.kit import (
    A2A_URL,
    TEST_POLICY,
    MemoryStore,
    SigningKey,
    bound_claims,
    claims,
    make_gate,
    sign,
)

BODY = b'{"jsonrpc":"2.0","id":1,"method":"extract_document","params":{}}'
SUBJECT = "3f1c7a52-service-account-orchestrator"


@pytest.fixture
def key() -> DpopKey:
    return DpopKey()


@pytest.fixture
def revocations(store: MemoryStore) -> RevocationList:
    return RevocationList(store)


@pytest.fixture
def dpop_gate(
    mesh_verifier: TokenVerifier, store: MemoryStore, revocations: RevocationList
) -> SecurityGate:
    """A gate as the agents run it: bound tokens only, one request a minute."""
    return make_gate(
        mesh_verifier,
        store,
        policy=policy(requests_per_minute=1),
        accept_bearer=False,
        revocations=revocations,
    )


def policy(requests_per_minute: int, roles: str = "") -> SecurityPolicy:
    rate = f"requests_per_minute = {requests_per_minute}\n"
    if roles:
        rate += f"[rate_limit.roles]\n{roles}\n"
    return SecurityPolicy.parse(
        TEST_POLICY.replace("requests_per_minute = 1000\n", rate)
    )


def bound_token(signing_key: SigningKey, key: DpopKey, **overrides: Any) -> str:
    return sign(signing_key, bound_claims(key, sub=SUBJECT, **overrides))


def arrival(
    authorization: list[str], proofs: list[str] | None = None, body: bytes = BODY
) -> Arrival:
    return Arrival(
        method="POST",
        path="/a2a",
        url=A2A_URL,
        authorization=authorization,
        proofs=proofs or [],
        body=body,
        client_address="10.0.0.7",
    )


def dpop_arrival(
    key: DpopKey, token: str, *, signed_body: bytes = BODY, jti: str | None = None
) -> Arrival:
    """A request as the mesh's client sends it, its proof over ``signed_body``."""
    proof = key.proof("POST", A2A_URL, access_token=token, body=signed_body, jti=jti)
    return arrival([f"DPoP {token}"], [proof])


async def refusal(gate: SecurityGate, request: Arrival) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await gate.admit(request)
    return caught.value


async def test_bound_request_is_admitted_and_its_proof_claimed(
    dpop_gate: SecurityGate,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    token = bound_token(rsa_signing_key, key)

    principal = await dpop_gate.admit(dpop_arrival(key, token, jti="proof-1"))

    assert isinstance(principal, Principal)
    assert (principal.subject, principal.key_thumbprint) == (SUBJECT, key.thumbprint)
    assert list(store.claimed) == [("extractor", "proof-1")]


async def test_bearer_token_is_admitted_where_bearer_tokens_are_accepted(
    mesh_verifier: TokenVerifier, store: MemoryStore, rsa_signing_key: SigningKey
) -> None:
    gate = make_gate(mesh_verifier, store, accept_bearer=True)

    principal = await gate.admit(arrival([f"Bearer {sign(rsa_signing_key)}"]))

    assert principal.key_thumbprint is None
    assert store.claimed == {}


async def test_bearer_token_is_refused_where_dpop_is_required(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey
) -> None:
    refused = await refusal(dpop_gate, arrival([f"Bearer {sign(rsa_signing_key)}"]))

    assert isinstance(refused, Unauthenticated)
    assert refused.reason == "dpop_required"


async def test_bound_token_sent_as_bearer_is_refused_even_with_a_proof(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey, key: DpopKey
) -> None:
    token = bound_token(rsa_signing_key, key)
    proof = key.proof("POST", A2A_URL, access_token=token, body=BODY)

    refused = await refusal(dpop_gate, arrival([f"Bearer {token}"], [proof]))

    assert isinstance(refused, Unauthenticated)
    assert refused.reason == "dpop_proof_missing"


async def test_bound_token_without_a_proof_is_refused(
    mesh_verifier: TokenVerifier,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    # Even where bearer tokens pass: a bound token alone is a stolen token.
    gate = make_gate(mesh_verifier, store, accept_bearer=True)
    token = bound_token(rsa_signing_key, key)

    refused = await refusal(gate, arrival([f"DPoP {token}"]))

    assert isinstance(refused, Unauthenticated)
    assert refused.reason == "dpop_proof_missing"


async def test_unbound_token_sent_with_the_dpop_scheme_is_refused(
    mesh_verifier: TokenVerifier,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    gate = make_gate(mesh_verifier, store, accept_bearer=True)
    token = sign(rsa_signing_key, claims(sub=SUBJECT))

    refused = await refusal(gate, dpop_arrival(key, token))

    assert isinstance(refused, Unauthenticated)
    assert refused.reason == "dpop_token_not_bound"


async def test_proof_by_another_key_than_the_token_is_bound_to_is_refused(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey, key: DpopKey
) -> None:
    token = bound_token(rsa_signing_key, key)

    refused = await refusal(dpop_gate, dpop_arrival(DpopKey(), token))

    assert isinstance(refused, Unauthenticated)
    assert refused.reason == "dpop_key_mismatch"


async def test_proof_over_another_body_is_refused(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey, key: DpopKey
) -> None:
    token = bound_token(rsa_signing_key, key)

    refused = await refusal(
        dpop_gate, dpop_arrival(key, token, signed_body=b'{"method":"ping"}')
    )

    assert isinstance(refused, Unauthenticated)
    assert refused.reason == "dpop_body_mismatch"


async def test_proof_used_twice_on_the_same_replica_is_a_replay(
    mesh_verifier: TokenVerifier,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    gate = make_gate(mesh_verifier, store, accept_bearer=False)
    request = dpop_arrival(key, bound_token(rsa_signing_key, key))
    await gate.admit(request)

    refused = await refusal(gate, request)

    assert isinstance(refused, ReplayDetected)
    assert (refused.code, refused.reason) == (-32004, "proof_replayed")
    # Known on this replica: refused without asking the database again.
    assert store.claim_attempts == 1


async def test_proof_used_on_another_replica_is_a_replay(
    mesh_verifier: TokenVerifier,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    # Two replicas of one service: separate memories, one shared store.
    first = make_gate(mesh_verifier, store, accept_bearer=False)
    second = make_gate(mesh_verifier, store, accept_bearer=False)
    request = dpop_arrival(key, bound_token(rsa_signing_key, key))
    await first.admit(request)

    refused = await refusal(second, request)

    assert isinstance(refused, ReplayDetected)
    assert refused.reason == "proof_replayed"
    assert store.claim_attempts == 2


async def test_revoked_token_is_refused(
    dpop_gate: SecurityGate,
    store: MemoryStore,
    revocations: RevocationList,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    token = bound_token(rsa_signing_key, key, jti="revoked-jti")
    store.revoke("revoked-jti")
    await revocations.reload()

    refused = await refusal(dpop_gate, dpop_arrival(key, token))

    assert isinstance(refused, TokenRevoked)
    assert (refused.code, refused.reason) == (-32005, "token_revoked")


async def test_revocation_is_reported_before_the_rate_limit(
    dpop_gate: SecurityGate,
    revocations: RevocationList,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    # The budget is spent, and the next token of the same caller is revoked:
    # the caller must learn that a new token is needed, not to wait a minute.
    await dpop_gate.admit(dpop_arrival(key, bound_token(rsa_signing_key, key)))
    revoked = bound_token(rsa_signing_key, key, jti="revoked-jti")
    revocations.add(Revocation("revoked-jti", expires_at=4_000_000_000))

    refused = await refusal(dpop_gate, dpop_arrival(key, revoked))

    assert isinstance(refused, TokenRevoked)


async def test_client_not_among_the_callers_is_forbidden(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey, key: DpopKey
) -> None:
    token = bound_token(rsa_signing_key, key, azp="viewer")

    refused = await refusal(dpop_gate, dpop_arrival(key, token))

    assert isinstance(refused, Forbidden)
    assert (refused.code, refused.reason) == (-32002, "client_not_allowed")


async def test_service_without_a_callers_entry_admits_any_client(
    mesh_verifier: TokenVerifier, store: MemoryStore, rsa_signing_key: SigningKey
) -> None:
    gate = make_gate(mesh_verifier, store, service="validator")
    token = sign(rsa_signing_key, claims(azp="viewer"))

    principal = await gate.admit(arrival([f"Bearer {token}"]))

    assert principal.client_id == "viewer"


async def test_caller_over_the_rate_limit_is_told_when_to_come_back(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey, key: DpopKey
) -> None:
    token = bound_token(rsa_signing_key, key)
    await dpop_gate.admit(dpop_arrival(key, token))

    refused = await refusal(dpop_gate, dpop_arrival(key, token))

    assert isinstance(refused, RateLimited)
    assert (refused.code, refused.reason) == (-32003, "rate_limited")
    assert refused.retry_after in (59, 60)


async def test_rate_limit_counts_per_subject_across_tokens(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey, key: DpopKey
) -> None:
    # A new token does not buy a new budget.
    await dpop_gate.admit(dpop_arrival(key, bound_token(rsa_signing_key, key)))

    refused = await refusal(
        dpop_gate, dpop_arrival(key, bound_token(rsa_signing_key, key))
    )

    assert isinstance(refused, RateLimited)


async def test_rate_limit_of_the_callers_role_applies(
    mesh_verifier: TokenVerifier,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    gate = make_gate(
        mesh_verifier,
        store,
        policy=policy(requests_per_minute=1, roles="orchestrator = 3"),
        accept_bearer=False,
    )
    token = bound_token(rsa_signing_key, key)  # realm role "orchestrator"
    for _ in range(3):
        await gate.admit(dpop_arrival(key, token))

    refused = await refusal(gate, dpop_arrival(key, token))

    assert isinstance(refused, RateLimited)


def other_key_proof(signing_key: SigningKey, key: DpopKey) -> Arrival:
    return dpop_arrival(DpopKey(), bound_token(signing_key, key))


def tampered_body(signing_key: SigningKey, key: DpopKey) -> Arrival:
    return dpop_arrival(key, bound_token(signing_key, key), signed_body=b"{}")


def revoked_token(signing_key: SigningKey, key: DpopKey) -> Arrival:
    return dpop_arrival(key, bound_token(signing_key, key, jti="revoked-jti"))


def foreign_client(signing_key: SigningKey, key: DpopKey) -> Arrival:
    return dpop_arrival(key, bound_token(signing_key, key, azp="viewer"))


@pytest.mark.parametrize(
    "refused_request", [other_key_proof, tampered_body, revoked_token, foreign_client]
)
async def test_refused_request_spends_neither_budget_nor_proof(
    dpop_gate: SecurityGate,
    store: MemoryStore,
    revocations: RevocationList,
    rsa_signing_key: SigningKey,
    key: DpopKey,
    refused_request: Any,
) -> None:
    revocations.add(Revocation("revoked-jti", expires_at=4_000_000_000))
    await refusal(dpop_gate, refused_request(rsa_signing_key, key))

    assert store.claimed == {}
    # The one request of the minute is still there for the real caller.
    await dpop_gate.admit(dpop_arrival(key, bound_token(rsa_signing_key, key)))


async def test_rate_limited_request_does_not_claim_its_proof(
    dpop_gate: SecurityGate,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    token = bound_token(rsa_signing_key, key)
    await dpop_gate.admit(dpop_arrival(key, token, jti="admitted"))

    await refusal(dpop_gate, dpop_arrival(key, token, jti="over-the-limit"))

    assert list(store.claimed) == [("extractor", "admitted")]


async def test_replayed_request_does_not_spend_the_callers_budget(
    mesh_verifier: TokenVerifier,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    # Whoever replays a captured request must not lock its owner out.
    gate = make_gate(
        mesh_verifier, store, policy=policy(requests_per_minute=2), accept_bearer=False
    )
    token = bound_token(rsa_signing_key, key)
    captured = dpop_arrival(key, token)
    await gate.admit(captured)
    for _ in range(3):
        assert isinstance(await refusal(gate, captured), ReplayDetected)

    assert (await gate.admit(dpop_arrival(key, token))).subject == SUBJECT


async def test_request_the_store_could_not_check_spends_no_budget(
    dpop_gate: SecurityGate,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    token = bound_token(rsa_signing_key, key)
    store.down = True
    with pytest.raises(DependencyUnavailable):
        await dpop_gate.admit(dpop_arrival(key, token))
    store.down = False

    # The caller's retry, with a fresh proof, is the minute's one request.
    assert (await dpop_gate.admit(dpop_arrival(key, token))).subject == SUBJECT


@pytest.mark.parametrize(
    ("authorization", "proofs", "reason"),
    [
        ([], [], "missing_token"),
        (["Bearer a.b.c", "Bearer d.e.f"], [], "malformed_token"),
        (["DPoP a.b.c"], ["proof-1", "proof-2"], "malformed_token"),
        (["Basic b3JjaGVzdHJhdG9yOnMzY3JldA=="], [], "malformed_token"),
        (["DPoP "], [], "malformed_token"),
    ],
    ids=[
        "none",
        "two-authorization",
        "two-proofs",
        "basic",
        "dpop-without-token",
    ],
)
async def test_ambiguous_or_missing_credentials_are_refused(
    dpop_gate: SecurityGate, authorization: list[str], proofs: list[str], reason: str
) -> None:
    refused = await refusal(dpop_gate, arrival(authorization, proofs))

    assert isinstance(refused, Unauthenticated)
    assert refused.reason == reason


async def test_dpop_scheme_is_case_insensitive(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey, key: DpopKey
) -> None:
    token = bound_token(rsa_signing_key, key)
    proof = key.proof("POST", A2A_URL, access_token=token, body=BODY)

    principal = await dpop_gate.admit(arrival([f"dpop {token}"], [proof]))

    assert principal.key_thumbprint == key.thumbprint


@pytest.mark.parametrize(
    ("refused_request", "event", "reason"),
    [
        (other_key_proof, "authentication_failure", "dpop_key_mismatch"),
        (revoked_token, "token_revoked", "token_revoked"),
        (foreign_client, "authorization_failure", "client_not_allowed"),
    ],
)
async def test_refusal_of_a_verified_token_is_audited_with_its_caller(
    dpop_gate: SecurityGate,
    store: MemoryStore,
    revocations: RevocationList,
    rsa_signing_key: SigningKey,
    key: DpopKey,
    refused_request: Any,
    event: str,
    reason: str,
) -> None:
    revocations.add(Revocation("revoked-jti", expires_at=4_000_000_000))
    request = refused_request(rsa_signing_key, key)
    await refusal(dpop_gate, request)
    await dpop_gate.audit.flush()

    [recorded] = store.events
    assert (recorded.event, recorded.outcome, recorded.reason) == (
        event,
        "refused",
        reason,
    )
    assert recorded.service == "extractor"
    assert recorded.principal == SUBJECT
    assert recorded.path == "/a2a"
    assert recorded.client_address == "10.0.0.7"
    assert recorded.jti_prefix is not None and len(recorded.jti_prefix) == 8


async def test_rate_limit_and_replay_refusals_are_audited(
    mesh_verifier: TokenVerifier,
    store: MemoryStore,
    rsa_signing_key: SigningKey,
    key: DpopKey,
) -> None:
    gate = make_gate(
        mesh_verifier, store, policy=policy(requests_per_minute=2), accept_bearer=False
    )
    token = bound_token(rsa_signing_key, key)
    request = dpop_arrival(key, token)
    await gate.admit(request)
    await refusal(gate, request)
    await gate.admit(dpop_arrival(key, token))
    await refusal(gate, dpop_arrival(key, token))
    await gate.audit.flush()

    assert [(e.event, e.reason) for e in store.events] == [
        ("replay_detected", "proof_replayed"),
        ("rate_limit_exceeded", "rate_limited"),
    ]


async def test_refusal_before_the_token_is_verified_names_no_caller(
    dpop_gate: SecurityGate, store: MemoryStore, stranger_key: SigningKey
) -> None:
    # The claims of a token that failed verification are an attacker's words.
    token = sign(stranger_key, claims(sub="someone-else", azp="mesh-admin"))
    await refusal(dpop_gate, arrival([f"Bearer {token}"]))
    await dpop_gate.audit.flush()

    [recorded] = store.events
    assert (recorded.event, recorded.reason) == (
        "authentication_failure",
        "bad_signature",
    )
    assert (recorded.principal, recorded.client_id, recorded.jti_prefix) == (
        None,
        None,
        None,
    )


# RFC 8705: tokens bound to a client certificate (cnf.x5t#S256).
CERTIFICATE_A = b"der bytes of certificate A"
CERTIFICATE_B = b"der bytes of certificate B"


def certificate_bound_token(signing_key: SigningKey, certificate: bytes) -> str:
    confirmation = {"x5t#S256": b64url_sha256(certificate)}
    return sign(signing_key, claims(sub=SUBJECT, cnf=confirmation))


def over_connection(token: str, certificate: bytes | None) -> Arrival:
    return dataclasses.replace(
        arrival([f"Bearer {token}"]), client_certificate=certificate
    )


async def test_certificate_bound_token_over_its_own_certificate_is_admitted(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey
) -> None:
    # Sender-constrained by the certificate: no DPoP proof is needed.
    token = certificate_bound_token(rsa_signing_key, CERTIFICATE_A)

    principal = await dpop_gate.admit(over_connection(token, CERTIFICATE_A))

    assert principal.certificate_thumbprint == b64url_sha256(CERTIFICATE_A)


async def test_token_bound_to_certificate_a_over_certificate_b_is_refused(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey
) -> None:
    token = certificate_bound_token(rsa_signing_key, CERTIFICATE_A)

    refused = await refusal(dpop_gate, over_connection(token, CERTIFICATE_B))

    assert (refused.code, refused.reason) == (-32001, "certificate_mismatch")


async def test_certificate_bound_token_without_a_client_certificate_is_refused(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey
) -> None:
    token = certificate_bound_token(rsa_signing_key, CERTIFICATE_A)

    refused = await refusal(dpop_gate, over_connection(token, None))

    assert (refused.code, refused.reason) == (-32001, "certificate_required")


@pytest.mark.parametrize(
    "confirmation", [{}, {"x5t#S256": ""}, {"x5t#S256": 7}, "thumbprint"]
)
async def test_confirmation_that_cannot_be_honoured_is_refused(
    dpop_gate: SecurityGate, rsa_signing_key: SigningKey, confirmation: object
) -> None:
    # Never read an unusable cnf as "not bound".
    token = sign(rsa_signing_key, claims(sub=SUBJECT, cnf=confirmation))

    refused = await refusal(dpop_gate, over_connection(token, CERTIFICATE_A))

    assert refused.reason == "invalid_token"
