"""Revocation through the admin API: a revoked ``jti`` is refused by every
replica within a second and after a restart; only an admin may revoke."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from services.launcher.mesh import LocalMesh
from tests.helpers.evidence import (
    assert_nothing_ran,
    assert_refused,
    executed,
    security_events,
)
from tests.helpers.forgery import ProofKey
from tests.helpers.mesh import client_token
from tests.helpers.raw import (
    BEARER_CHALLENGE,
    RawRequest,
    archive_params,
    bearer,
    http_client,
    new_correlation_id,
    rpc_body,
    send,
    unique_key,
    with_proof,
)
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

FRONT = "orchestrator"
DEADLINE_SECONDS = 1.0


def admin_request(
    token: str, path: str, body: bytes = b"", *, method: str = "POST"
) -> RawRequest:
    headers = [
        ("Authorization", f"Bearer {token}"),
        ("Content-Type", "application/json"),
        ("X-Correlation-ID", new_correlation_id()),
    ]
    return RawRequest(FRONT, body, headers, path=path, method=method)


def revoke_body(jti: str, reason: str = "security suite: token stolen") -> bytes:
    return json.dumps({"jti": jti, "reason": reason}).encode()


def new_jti() -> str:
    return f"sec-{uuid.uuid4()}"


async def revoked_rows(database: asyncpg.Connection, jti: str) -> int:
    count = await database.fetchval(
        "SELECT count(*) FROM revoked_tokens WHERE jti = $1", jti
    )
    return int(count)


def _call(
    mesh: LocalMesh, forge: TokenForge, service: str, jti: str, key: str
) -> RawRequest:
    """A state-changing call to ``service`` with a good token whose id is ``jti``."""
    if service == FRONT:
        token = forge.valid(FRONT, ["document-processor"], jti=jti)
        return bearer(FRONT, rpc_body("process_document", {"s3_key": key}), token)
    holder = ProofKey()
    token = forge.bound(service.split("-")[0], ["orchestrator"], holder.dpop, jti=jti)
    params = archive_params(key)
    method, params = {
        "extractor": ("extract_document", {"s3_key": key}),
        "validator": (
            "validate_document",
            {"document_type": "document", "extracted_data": params["extraction"]},
        ),
    }.get(service.split("-")[0], ("archive_document", params))
    return with_proof(mesh, service, rpc_body(method, params), token, holder.dpop)


async def _refused_within(
    mesh: LocalMesh, make: Any, seconds: float
) -> tuple[httpx.Response, RawRequest, float]:
    """Sends fresh requests until one is refused as revoked, for a bounded time;
    the last response, its request and when it came, from the start."""
    started = time.monotonic()
    async with http_client(mesh) as http:
        for _ in range(500):
            request: RawRequest = make()
            response = await send(mesh, request, http=http)
            elapsed = time.monotonic() - started
            revoked = response.status_code == 401 and (
                response.json()["error"]["code"] == -32005
            )
            if revoked or elapsed > seconds:
                return response, request, elapsed
            await asyncio.sleep(0.01)
    return response, request, time.monotonic() - started


async def test_revoked_token_is_refused_by_the_other_replica_within_a_second(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, admin_token: str
) -> None:
    """Revoked at the orchestrator by the real admin client; refused by
    archivist-2, a replica nobody told directly, within a second, and still
    after that replica restarts."""
    jti = new_jti()
    holder = ProofKey()
    token = forge.bound("archivist", ["orchestrator"], holder.dpop, jti=jti)

    def stats() -> RawRequest:
        body = rpc_body("get_document_stats", {})
        return with_proof(mesh, "archivist-2", body, token, holder.dpop)

    assert (await send(mesh, stats())).status_code == 200
    revoke = admin_request(admin_token, "/admin/revoke-token", revoke_body(jti))

    started = time.monotonic()
    answer = await send(mesh, revoke)
    response, last, _ = await _refused_within(mesh, stats, 3 * DEADLINE_SECONDS)
    elapsed = time.monotonic() - started

    assert answer.status_code == 200, answer.text
    assert answer.json()["revoked"] is True
    assert answer.json()["already_revoked"] is False
    assert_refused(
        response,
        status=401,
        code=-32005,
        reason="token_revoked",
        challenge=BEARER_CHALLENGE,
    )
    assert elapsed <= DEADLINE_SECONDS, f"refused only after {elapsed:.2f}s"
    assert executed(mesh, "archivist-2", str(last.correlation_id)) == 0

    await asyncio.to_thread(mesh.restart, "archivist-2")
    key = unique_key("revoked-after-restart")
    after = _call(mesh, forge, "archivist-2", jti, key)
    response = await send(mesh, after)

    assert_refused(
        response,
        status=401,
        code=-32005,
        reason="token_revoked",
        challenge=BEARER_CHALLENGE,
    )
    await assert_nothing_ran(
        mesh, database, "archivist-2", str(after.correlation_id), key=key
    )


@pytest.mark.parametrize(
    "service", ["orchestrator", "extractor", "validator", "archivist"]
)
async def test_token_revoked_by_a_forged_admin_token_is_refused_everywhere(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, service: str
) -> None:
    """Revoked with an admin token the realm's key signed (azp mesh-admin);
    each service refuses that ``jti`` within a second and runs nothing."""
    jti = new_jti()
    admin = forge.valid(FRONT, ["admin"], azp="mesh-admin")
    keys: list[str] = []

    def call() -> RawRequest:
        keys.append(unique_key("revoked"))
        return _call(mesh, forge, service, jti, keys[-1])

    started = time.monotonic()
    answer = await send(
        mesh, admin_request(admin, "/admin/revoke-token", revoke_body(jti))
    )
    response, last, _ = await _refused_within(mesh, call, 3 * DEADLINE_SECONDS)
    elapsed = time.monotonic() - started

    assert answer.status_code == 200, answer.text
    assert_refused(
        response,
        status=401,
        code=-32005,
        reason="token_revoked",
        challenge=BEARER_CHALLENGE,
    )
    assert elapsed <= DEADLINE_SECONDS, f"refused only after {elapsed:.2f}s"
    await assert_nothing_ran(
        mesh, database, service, str(last.correlation_id), key=keys[-1]
    )


@pytest.mark.parametrize(
    "client_id", ["document-processor", "viewer", "lambda-trigger", "no-roles"]
)
async def test_non_admin_cannot_revoke(
    mesh: LocalMesh, database: asyncpg.Connection, client_id: str
) -> None:
    jti = new_jti()
    token = await client_token(mesh, client_id)
    request = admin_request(token, "/admin/revoke-token", revoke_body(jti))

    response = await send(mesh, request)

    assert_refused(response, status=403, code=-32002, reason="missing_role")
    assert await revoked_rows(database, jti) == 0
    rows = await security_events(database, str(request.correlation_id))
    assert [(r["event"], r["reason"], r["client_id"]) for r in rows] == [
        ("authorization_failure", "missing_role", client_id)
    ]


BAD_BODIES: dict[str, tuple[Any, int, int]] = {
    "an unknown field": ({"reason": "r", "scope": "all"}, 400, -32602),
    "jti a number": ({"jti": 12345, "reason": "r"}, 400, -32602),
    "reason a list": ({"reason": ["r"]}, 400, -32602),
    "no reason": ({}, 400, -32602),
    "jti with a space": ({"jti": "a b", "reason": "r"}, 400, -32602),
    # As long as the longest jti a token may carry (256), and no longer.
    "jti of 257 characters": ({"jti": "j" * 257, "reason": "r"}, 400, -32602),
    "reason with a NUL": ({"jti": "j", "reason": "a\u0000b"}, 400, -32602),
    "reason with a lone surrogate": ({"jti": "j", "reason": "a\ud800"}, 400, -32602),
    "jti empty": ({"jti": "", "reason": "r"}, 400, -32602),
    "a JSON list": ([{"reason": "r"}], 400, -32602),
    "malformed JSON": (b'{"jti": "', 400, -32700),
    "a body over 16 KiB": ({"reason": "r" * 20_000}, 413, -32600),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_revoke_body_is_refused_and_nothing_is_revoked(
    mesh: LocalMesh, database: asyncpg.Connection, admin_token: str, case: str
) -> None:
    shape, status, code = BAD_BODIES[case]
    jti = new_jti()
    if isinstance(shape, bytes):
        body = shape + jti.encode()
    elif isinstance(shape, list):
        body = json.dumps([{"jti": jti, **shape[0]}]).encode()
    else:
        body = json.dumps({"jti": jti} | shape).encode()

    response = await send(mesh, admin_request(admin_token, "/admin/revoke-token", body))

    reason = "too_large" if status == 413 else None
    assert_refused(response, status=status, code=code, reason=reason)
    assert await revoked_rows(database, jti) == 0
    named = shape.get("jti") if isinstance(shape, dict) else None
    if isinstance(named, str):
        assert await revoked_rows(database, named) == 0


async def test_revoked_tokens_lists_the_revocation(
    mesh: LocalMesh, database: asyncpg.Connection, admin_token: str
) -> None:
    jti = new_jti()
    revoke = admin_request(
        admin_token, "/admin/revoke-token", revoke_body(jti, "listed")
    )

    first = await send(mesh, revoke)
    again = await send(mesh, revoke.with_correlation(new_correlation_id()))
    listing = await send(
        mesh,
        admin_request(admin_token, "/admin/revoked-tokens?limit=1000", method="GET"),
    )

    assert first.json()["already_revoked"] is False
    assert again.status_code == 200
    assert again.json()["already_revoked"] is True
    assert listing.status_code == 200, listing.text
    entries = [e for e in listing.json()["revoked_tokens"] if e["jti"] == jti]
    assert len(entries) == 1
    assert entries[0]["reason"] == "listed"
    assert entries[0]["revoked_by"] == "service-account-mesh-admin"
    assert entries[0]["active"] is True
    rows = await security_events(database, str(revoke.correlation_id))
    assert [(r["event"], r["outcome"], r["jti_prefix"]) for r in rows] == [
        ("token_revoked", "revoked", jti[:8])
    ]


async def test_revoked_tokens_listing_needs_the_admin_role(mesh: LocalMesh) -> None:
    token = await client_token(mesh, "viewer")
    for path in ("/admin/revoked-tokens", "/admin/security-stats"):
        response = await send(mesh, admin_request(token, path, method="GET"))

        assert_refused(response, status=403, code=-32002, reason="missing_role")


async def test_security_stats_count_the_refusals_made_here(
    mesh: LocalMesh, forge: TokenForge, admin_token: str
) -> None:
    """Three refusals for a wrong issuer at the orchestrator show in the
    statistics at once: by service, event and reason, and in the totals."""

    def counted(stats: dict[str, Any]) -> int:
        return sum(
            e["count"]
            for e in stats["events"]
            if (e["service"], e["event"], e["reason"])
            == (FRONT, "authentication_failure", "wrong_issuer")
        )

    async def stats() -> dict[str, Any]:
        response = await send(
            mesh,
            admin_request(
                admin_token, "/admin/security-stats?window_seconds=3600", method="GET"
            ),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    before = await stats()
    for _ in range(3):
        token = forge.wrong_issuer(FRONT, ["document-processor"])
        request = bearer(FRONT, rpc_body("list_pending_documents", {}), token)
        assert (await send(mesh, request)).status_code == 401
    after = await stats()

    assert after["window_seconds"] == 3600
    assert counted(after) - counted(before) == 3
    totals_before = before["totals"].get("authentication_failure", 0)
    assert after["totals"]["authentication_failure"] - totals_before >= 3
    assert isinstance(after["active_revocations"], int)


async def test_revoke_without_a_token_is_401_and_revokes_nothing(
    mesh: LocalMesh, database: asyncpg.Connection
) -> None:
    jti = new_jti()
    request = RawRequest(
        FRONT,
        revoke_body(jti),
        [("Content-Type", "application/json")],
        path="/admin/revoke-token",
    )

    response = await send(mesh, request)

    assert_refused(
        response,
        status=401,
        code=-32001,
        reason="missing_token",
        challenge='Bearer realm="a2a-mesh"',
    )
    assert await revoked_rows(database, jti) == 0


async def test_admin_token_minted_for_an_agent_cannot_revoke_at_the_orchestrator(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    jti = new_jti()
    token = forge.valid("archivist", ["admin"], azp="mesh-admin")

    response = await send(
        mesh, admin_request(token, "/admin/revoke-token", revoke_body(jti))
    )

    assert_refused(
        response,
        status=401,
        code=-32001,
        reason="wrong_audience",
        challenge=BEARER_CHALLENGE,
    )
    assert await revoked_rows(database, jti) == 0
