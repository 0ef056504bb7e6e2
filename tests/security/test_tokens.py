"""Attacks on the access token: every one is refused by the verifier or the
gate with its exact reason, before any method runs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.launcher.mesh import LocalMesh
from tests.helpers.evidence import (
    assert_nothing_ran,
    assert_refused,
    events,
    executed,
    task_and_document_rows,
)
from tests.helpers.forgery import Attacker, ProofKey, public_jwk, sign, unsigned
from tests.helpers.mesh import client_token
from tests.helpers.raw import (
    BEARER_CHALLENGE,
    RawRequest,
    archive_params,
    bearer,
    new_correlation_id,
    pipelined,
    rpc_body,
    send,
    unique_key,
    with_proof,
)
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

FRONT = "orchestrator"
ROLES = ["document-processor"]


def _now() -> int:
    return int(time.time())


def _es256_on_the_realm_kid(forge: TokenForge) -> str:
    """RS/ES confusion: an ES256 signature naming the realm's RSA key."""
    stranger = ec.generate_private_key(ec.SECP256R1())
    claims = forge.claims(FRONT, ROLES)
    return sign(claims, stranger, algorithm="ES256", headers={"kid": forge.kid})


def _claims_swapped(forge: TokenForge) -> str:
    """A real signature over a viewer's claims, with an admin's claims pasted in."""
    header, _, signature = forge.valid(FRONT, ["viewer"]).split(".")
    _, admin, _ = forge.valid(FRONT, ["admin"]).split(".")
    return f"{header}.{admin}.{signature}"


def _no_kid(forge: TokenForge) -> str:
    return unsigned({"alg": "RS256", "typ": "JWT"}, forge.claims(FRONT, ROLES))


# One attack each: how the token is forged, and the reason it must be refused.
FORGED: dict[str, tuple[Callable[[TokenForge], str], str]] = {
    "signed by a stranger's key under the realm's kid": (
        lambda f: f.other_key(FRONT, ROLES),
        "bad_signature",
    ),
    "expired an hour ago": (lambda f: f.expired(FRONT, ROLES), "expired"),
    "nbf two minutes ahead (leeway 30 s)": (
        lambda f: f.valid(FRONT, ROLES, nbf=_now() + 120),
        "not_yet_valid",
    ),
    "iat two minutes ahead (leeway 30 s)": (
        lambda f: f.valid(FRONT, ROLES, iat=_now() + 120, exp=_now() + 400),
        "not_yet_valid",
    ),
    "lifetime of two hours (policy maximum one)": (
        lambda f: f.valid(FRONT, ROLES, iat=_now(), exp=_now() + 7200),
        "lifetime_too_long",
    ),
    "wrong issuer": (lambda f: f.wrong_issuer(FRONT, ROLES), "wrong_issuer"),
    "aud a list without the orchestrator": (
        lambda f: f.valid(FRONT, ROLES, aud=["extractor", "archivist"]),
        "wrong_audience",
    ),
    "alg none": (lambda f: f.alg_none(FRONT, ROLES), "algorithm_not_allowed"),
    "HS256 keyed with the realm's public key": (
        lambda f: f.hmac_with_public_key(FRONT, ROLES),
        "algorithm_not_allowed",
    ),
    "ES256 naming the realm's RSA key": (
        _es256_on_the_realm_kid,
        "algorithm_not_allowed",
    ),
    "no kid in the header": (_no_kid, "unknown_key"),
    "an ID token (typ ID)": (
        lambda f: f.valid(FRONT, ROLES, typ="ID"),
        "invalid_token",
    ),
    "a refresh token (typ Refresh)": (
        lambda f: f.valid(FRONT, ROLES, typ="Refresh"),
        "invalid_token",
    ),
    "exp a numeric string": (
        lambda f: f.valid(FRONT, ROLES, exp=str(_now() + 300)),
        "invalid_token",
    ),
    "no subject": (lambda f: f.valid(FRONT, ROLES, sub=None), "missing_claim"),
    "no jti, so it could never be revoked": (
        lambda f: f.valid(FRONT, ROLES, jti=None),
        "missing_claim",
    ),
    "jti of 257 characters": (
        lambda f: f.valid(FRONT, ROLES, jti="j" * 257),
        "invalid_token",
    ),
    "kid a number": (
        lambda f: unsigned({"alg": "RS256", "kid": 7}, f.claims(FRONT, ROLES)),
        "malformed_token",
    ),
    "kid of the realm, claims swapped after signing": (
        _claims_swapped,
        "bad_signature",
    ),
    "typ DPoP without a cnf key": (
        lambda f: f.valid(FRONT, ROLES, typ="DPoP"),
        "invalid_token",
    ),
}


@pytest.mark.parametrize("attack", list(FORGED))
async def test_forged_token_is_refused_with_401_and_nothing_runs(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, attack: str
) -> None:
    make, reason = FORGED[attack]
    key = unique_key("forged")
    request = bearer(FRONT, rpc_body("process_document", {"s3_key": key}), make(forge))

    response = await send(mesh, request)

    body = assert_refused(
        response,
        status=401,
        code=-32001,
        reason=reason,
        challenge=BEARER_CHALLENGE,
        correlation_id=request.correlation_id,
    )
    assert body["id"] is None
    assert body["error"]["data"] == {"reason": reason}
    await assert_nothing_ran(
        mesh, database, FRONT, str(request.correlation_id), key=key
    )


async def test_token_minted_for_the_extractor_is_refused_by_the_archivist(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    holder = ProofKey()
    token = forge.bound("extractor", ["orchestrator"], holder.dpop, azp="orchestrator")
    key = unique_key("audience")
    body = rpc_body("archive_document", archive_params(key))
    request = with_proof(mesh, "archivist", body, token, holder.dpop)

    response = await send(mesh, request)

    assert_refused(
        response,
        status=401,
        code=-32001,
        reason="wrong_audience",
        challenge=BEARER_CHALLENGE,
    )
    await assert_nothing_ran(
        mesh, database, "archivist", str(request.correlation_id), key=key
    )


async def test_aud_list_naming_the_service_is_accepted(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """The control for the refusals: the same kind of call, well made, runs
    and leaves the evidence the other tests look for."""
    holder = ProofKey()
    token = forge.bound(
        "archivist", ["orchestrator"], holder.dpop, aud=["extractor", "archivist"]
    )
    key = unique_key("aud-list")
    body = rpc_body("archive_document", archive_params(key))
    request = with_proof(mesh, "archivist", body, token, holder.dpop)

    response = await send(mesh, request)

    assert response.status_code == 200, response.text
    assert response.json()["result"]["created"] is True
    assert await task_and_document_rows(database, key) == 1
    assert executed(mesh, "archivist", str(request.correlation_id)) == 1


@pytest.mark.parametrize(
    ("service", "client_id"),
    [
        ("orchestrator", "orchestrator"),
        ("archivist", "document-processor"),
        ("extractor", "forged-client"),
    ],
)
async def test_client_not_among_the_service_callers_gets_403(
    mesh: LocalMesh,
    forge: TokenForge,
    database: asyncpg.Connection,
    service: str,
    client_id: str,
) -> None:
    """An admin role is no way in for a client the policy's ``[callers]`` omits."""
    key = unique_key("azp")
    if service == FRONT:
        token = forge.valid(service, ["admin"], azp=client_id)
        body = rpc_body("process_document", {"s3_key": key})
        request = bearer(service, body, token)
    else:
        holder = ProofKey()
        token = forge.bound(service, ["admin"], holder.dpop, azp=client_id)
        params = archive_params(key) if service == "archivist" else {"s3_key": key}
        method = "archive_document" if service == "archivist" else "extract_document"
        request = with_proof(
            mesh, service, rpc_body(method, params), token, holder.dpop
        )

    response = await send(mesh, request)

    assert_refused(response, status=403, code=-32002, reason="client_not_allowed")
    await assert_nothing_ran(
        mesh, database, service, str(request.correlation_id), key=key
    )


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk", "jku with the attacker's kid"])
async def test_key_named_by_the_token_is_never_fetched_nor_used(
    mesh: LocalMesh,
    forge: TokenForge,
    database: asyncpg.Connection,
    attacker: Attacker,
    header: str,
) -> None:
    """Signed with the attacker's key, which the header points at or carries:
    the service verifies with the realm's keys only and fetches nothing."""
    headers: dict[str, Any] = {"kid": forge.kid}
    reason = "bad_signature"
    if header == "jwk":
        headers["jwk"] = public_jwk(attacker.key)
    elif header == "x5u":
        headers["x5u"] = f"{attacker.server.url}/chain.pem"
    else:
        headers["jku"] = attacker.jwks_url
    if header == "jku with the attacker's kid":
        headers["kid"] = attacker.kid
        reason = "unknown_key"
    key = unique_key("jku")
    claims = forge.claims(FRONT, ROLES)
    token = sign(claims, attacker.key, algorithm="RS256", headers=headers)
    request = bearer(FRONT, rpc_body("process_document", {"s3_key": key}), token)

    response = await send(mesh, request)

    assert_refused(
        response, status=401, code=-32001, reason=reason, challenge=BEARER_CHALLENGE
    )
    await assert_nothing_ran(
        mesh, database, FRONT, str(request.correlation_id), key=key
    )
    assert attacker.server.requests == []
    # The control: the server is up and counts what reaches it.
    async with httpx.AsyncClient() as http:
        assert (await http.get(attacker.jwks_url)).status_code == 200
    assert attacker.server.requests == ["/jwks.json"]


async def test_unknown_kid_storm_costs_at_most_one_jwks_fetch(
    mesh: LocalMesh, forge: TokenForge
) -> None:
    """1,000 concurrent requests, each naming a key the realm never had: the
    JWKS is fetched at most once for all of them, and each is refused."""

    def fetches() -> int:
        return sum(
            len(events(mesh, FRONT, event, reason="unknown_kid"))
            for event in ("jwks.fetched", "jwks.fetch_failed", "jwks.malformed")
        )

    before = fetches()
    requests = [
        bearer(
            FRONT,
            rpc_body("get_task_status", {"task_id": str(uuid.uuid4())}),
            unsigned(
                {"alg": "RS256", "typ": "JWT", "kid": uuid.uuid4().hex},
                forge.claims(FRONT, ROLES),
            ),
        )
        for _ in range(1000)
    ]

    started = time.monotonic()
    responses = await pipelined(mesh, requests, connections=100)
    elapsed = time.monotonic() - started

    reasons = {r.json()["error"]["data"]["reason"] for r in responses}
    assert {r.status for r in responses} == {401}
    assert reasons == {"unknown_key"}
    assert fetches() - before <= 1, f"{fetches() - before} fetches in {elapsed:.1f}s"
    # The events counted are the ones the cache writes: its start-up fetch is one.
    assert events(mesh, FRONT, "jwks.fetched", reason="startup")


async def test_two_authorization_headers_are_refused(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """Two good tokens: which one a proxy and the service would each read is
    left to chance, so neither is taken."""
    key = unique_key("two-headers")
    cid = new_correlation_id()
    request = RawRequest(
        FRONT,
        rpc_body("process_document", {"s3_key": key}),
        [
            ("Content-Type", "application/json"),
            ("Authorization", f"Bearer {forge.valid(FRONT, ['viewer'])}"),
            ("Authorization", f"Bearer {forge.valid(FRONT, ROLES)}"),
            ("X-Correlation-ID", cid),
        ],
    )

    response = await send(mesh, request)

    assert_refused(
        response,
        status=401,
        code=-32001,
        reason="malformed_token",
        challenge=BEARER_CHALLENGE,
    )
    await assert_nothing_ran(mesh, database, FRONT, cid, key=key)


async def test_identity_provider_outage_keeps_cached_keys_working(
    mesh: LocalMesh, forge: TokenForge
) -> None:
    """With the identity provider stopped, a valid token is still verified
    against the cached keys, and a token for an unknown key still refused."""
    token = await client_token(mesh, "document-processor")
    identity = mesh.processes["identity"]
    # SIGTERM, then SIGKILL after 2 s: the stand-in waits for its callers'
    # idle keep-alive connections to close, so a plain stop() takes 30 s.
    await asyncio.to_thread(identity.stop, 2.0)
    try:
        assert not identity.running()
        good = bearer(
            FRONT, rpc_body("get_task_status", {"task_id": str(uuid.uuid4())}), token
        )
        unknown = bearer(
            FRONT,
            rpc_body("get_task_status", {"task_id": str(uuid.uuid4())}),
            unsigned(
                {"alg": "RS256", "typ": "JWT", "kid": uuid.uuid4().hex},
                forge.claims(FRONT, ROLES),
            ),
        )
        holder = ProofKey()
        bound = forge.bound("archivist", ["orchestrator"], holder.dpop)
        agent = with_proof(
            mesh, "archivist", rpc_body("get_document_stats", {}), bound, holder.dpop
        )

        accepted = await send(mesh, good)
        refused = await send(mesh, unknown)
        at_agent = await send(mesh, agent)
    finally:
        await asyncio.to_thread(mesh.restart, "identity")

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["error"]["code"] == -32012  # ran: no such task
    assert executed(mesh, FRONT, str(good.correlation_id)) == 1
    assert at_agent.status_code == 200, at_agent.text
    assert "result" in at_agent.json()
    assert_refused(
        refused,
        status=401,
        code=-32001,
        reason="unknown_key",
        challenge=BEARER_CHALLENGE,
    )
    assert await client_token(mesh, "document-processor")
