"""The audit trail: refusals kept as ``security_events`` rows with their
reason and correlation id; one correlation id across all four services; no
token, proof or client secret in any log."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import pytest

from services.launcher.mesh import LocalMesh
from tests.helpers.evidence import (
    all_logs,
    assert_nothing_ran,
    security_events,
    wait_for_log,
)
from tests.helpers.forgery import ProofKey
from tests.helpers.mesh import client_token
from tests.helpers.raw import (
    RawRequest,
    archive_params,
    bearer,
    http_client,
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
AGENT = "archivist"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


@dataclass(frozen=True)
class Refusal:
    """An attack, and the row the audit trail must keep of it."""

    status: int
    code: int
    service: str
    event: str
    reason: str
    principal_known: bool
    path: str = "/a2a"


Attack = Callable[[LocalMesh, TokenForge, str], RawRequest]


def _expired(mesh: LocalMesh, forge: TokenForge, key: str) -> RawRequest:
    token = forge.expired(FRONT, ["document-processor"])
    return bearer(FRONT, rpc_body("process_document", {"s3_key": key}), token)


def _missing_role(mesh: LocalMesh, forge: TokenForge, key: str) -> RawRequest:
    token = forge.valid(FRONT, ["viewer"])
    return bearer(FRONT, rpc_body("process_document", {"s3_key": key}), token)


def _client_not_allowed(mesh: LocalMesh, forge: TokenForge, key: str) -> RawRequest:
    holder = ProofKey()
    token = forge.bound("archivist", ["admin"], holder.dpop, azp="viewer")
    body = rpc_body("archive_document", archive_params(key))
    return with_proof(mesh, "archivist", body, token, holder.dpop)


def _thief_proof(mesh: LocalMesh, forge: TokenForge, key: str) -> RawRequest:
    token = forge.bound("archivist", ["orchestrator"], ProofKey().dpop)
    body = rpc_body("archive_document", archive_params(key))
    return with_proof(mesh, "archivist", body, token, ProofKey().dpop)


def _bad_params(mesh: LocalMesh, forge: TokenForge, key: str) -> RawRequest:
    token = forge.valid(FRONT, ["document-processor"])
    body = rpc_body("process_document", {"s3_key": key, "priority": "high"})
    return bearer(FRONT, body, token)


def _too_large(mesh: LocalMesh, forge: TokenForge, key: str) -> RawRequest:
    token = forge.valid(FRONT, ["document-processor"])
    body = rpc_body("process_document", {"s3_key": key})
    return bearer(FRONT, body + b" " * (1 << 20), token)


def _not_admin(mesh: LocalMesh, forge: TokenForge, key: str) -> RawRequest:
    token = forge.valid(FRONT, ["viewer"], azp="viewer")
    body = json.dumps({"jti": f"sec-{uuid.uuid4()}", "reason": key}).encode()
    request = bearer(FRONT, body, token)
    return RawRequest(FRONT, body, request.headers, path="/admin/revoke-token")


REFUSALS: dict[str, tuple[Attack, Refusal]] = {
    "expired token": (
        _expired,
        Refusal(401, -32001, FRONT, "authentication_failure", "expired", False),
    ),
    "caller without the role": (
        _missing_role,
        Refusal(403, -32002, FRONT, "authorization_failure", "missing_role", True),
    ),
    "client not among the callers": (
        _client_not_allowed,
        Refusal(
            403, -32002, AGENT, "authorization_failure", "client_not_allowed", True
        ),
    ),
    "stolen token with the thief's proof": (
        _thief_proof,
        Refusal(
            401, -32001, AGENT, "authentication_failure", "dpop_key_mismatch", True
        ),
    ),
    "unknown parameter": (
        _bad_params,
        Refusal(200, -32602, FRONT, "invalid_input", "InvalidParams", True),
    ),
    "body over the limit": (
        _too_large,
        Refusal(413, -32600, FRONT, "invalid_input", "too_large", False),
    ),
    "non-admin at the admin API": (
        _not_admin,
        Refusal(
            403,
            -32002,
            FRONT,
            "authorization_failure",
            "missing_role",
            True,
            "/admin/revoke-token",
        ),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refusal_is_kept_as_a_security_event(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, case: str
) -> None:
    attack, expected = REFUSALS[case]
    key = unique_key("audit")
    request = attack(mesh, forge, key)
    cid = str(request.correlation_id)

    response = await send(mesh, request)
    rows = await security_events(database, cid)

    assert response.status_code == expected.status, response.text
    assert response.json()["error"]["code"] == expected.code
    assert [(r["service"], r["event"], r["reason"], r["outcome"]) for r in rows] == [
        (expected.service, expected.event, expected.reason, "refused")
    ]
    assert rows[0]["correlation_id"] == cid
    assert (rows[0]["principal"] is not None) == expected.principal_known
    await assert_nothing_ran(mesh, database, expected.service, cid, key=key)
    # README, Logs: each audit event carries the path and the caller's address.
    assert (rows[0]["path"], rows[0]["client_address"]) == (
        expected.path,
        "127.0.0.1",
    )


async def test_correlation_id_of_an_upload_reaches_all_four_services(
    mesh: LocalMesh, forge: TokenForge
) -> None:
    cid = new_correlation_id()
    token = forge.valid(FRONT, ["document-processor"])
    text = f"Report {uuid.uuid4().hex}\nQuarterly summary of the security suite.\n"

    async with http_client(mesh) as http:
        accepted = await http.post(
            f"{mesh.url(FRONT)}/documents",
            files={"file": ("correlated.txt", text.encode(), "text/plain")},
            headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": cid},
        )
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["x-correlation-id"] == cid
        task_id = accepted.json()["task_id"]
    status = await _finished(mesh, token, task_id)

    assert status == "completed"
    for service in ("orchestrator", "extractor", "validator", "archivist"):
        lines = await wait_for_log(mesh, service, cid)
        assert lines, f"no line with the correlation id in {service}.log"


async def _finished(mesh: LocalMesh, token: str, task_id: str) -> str:
    """The task's status once finished, or after 30 seconds."""
    deadline = time.monotonic() + 30
    status = "pending"
    for _ in range(300):
        body = rpc_body("get_task_status", {"task_id": task_id})
        reply = (await send(mesh, bearer(FRONT, body, token))).json()
        status = reply["result"]["status"]
        if status in ("completed", "failed") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return str(status)


async def test_no_token_proof_or_client_secret_appears_in_any_log(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """Real and forged tokens, good and refused, with proofs, some replayed and
    one revoked, go through the mesh; then not one of those strings, no full
    ``jti`` and no client secret is in any log or security event."""
    admin = await client_token(mesh, "mesh-admin")
    processor = await client_token(mesh, "document-processor")
    holder = ProofKey()
    revoked_jti = f"sec-{uuid.uuid4()}"
    bound = forge.bound("archivist", ["orchestrator"], holder.dpop, jti=revoked_jti)
    refused = [
        forge.expired(FRONT, ["admin"]),
        forge.other_key(FRONT, ["admin"]),
        forge.alg_none(FRONT, ["admin"]),
        forge.wrong_issuer(FRONT, ["admin"]),
    ]
    stats = rpc_body("get_document_stats", {})
    good = with_proof(mesh, "archivist", stats, bound, holder.dpop)
    requests = [
        good,
        good,  # replayed
        RawRequest("archivist-2", good.body, good.headers),  # replayed elsewhere
        bearer(FRONT, rpc_body("list_pending_documents", {}), processor),
        *(bearer(FRONT, rpc_body("list_pending_documents", {}), t) for t in refused),
        RawRequest(
            FRONT,
            json.dumps({"jti": revoked_jti, "reason": "log test"}).encode(),
            [("Authorization", f"Bearer {admin}")],
            path="/admin/revoke-token",
        ),
    ]
    for request in requests:
        await send(mesh, request)
    # The revocation reaches the archivist within a second (LISTEN/NOTIFY).
    afterwards = []
    for _ in range(20):
        after = with_proof(mesh, "archivist", stats, bound, holder.dpop)
        afterwards.append(after)
        status = (await send(mesh, after)).status_code
        if status == 401:
            break
        await asyncio.sleep(0.05)
    assert status == 401
    await asyncio.sleep(1.0)  # the audit writes its rows every half second

    sent = {admin, processor, bound, *refused}
    proofs = {v for r in (good, *afterwards) for k, v in r.headers if k == "DPoP"}
    secrets = set(mesh.client_secrets.values())
    needles = sent | proofs | secrets | {p.rsplit(".", 1)[-1] for p in sent | proofs}
    needles.add(revoked_jti)
    needles.discard("")
    for name, text in all_logs(mesh).items():
        for needle in needles:
            assert needle not in text, f"{needle[:12]}... in {name}"
        assert not JWT.search(text), f"a token in {name}"
    for needle in needles:
        rows = await database.fetchval(
            "SELECT count(*) FROM security_events WHERE strpos(concat_ws(' ',"
            " principal, client_id, reason, method, path, jti_prefix), $1) > 0",
            needle,
        )
        assert rows == 0


async def test_refusal_with_a_nul_in_its_path_does_not_stop_the_audit_trail(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """One unauthenticated request to ``/a2a/%00`` (PostgreSQL text cannot hold
    NUL): that refusal, and every one after it, are still kept as rows.
    Aimed at the second archivist replica, restarted afterwards whatever
    happened, so that no other test meets a replica this attack broke."""
    service = "archivist-2"
    nul = RawRequest(
        service,
        rpc_body("get_document_stats", {}),
        [
            ("Content-Type", "application/json"),
            ("X-Correlation-ID", new_correlation_id()),
        ],
        path="/a2a/%00",
    )
    token = forge.expired("archivist", ["orchestrator"])
    later = bearer(service, rpc_body("get_document_stats", {}), token)
    try:
        refused = await pipelined(mesh, [nul], connections=1)
        await asyncio.sleep(0.6)  # one flush of the audit's writer
        after = await send(mesh, later)

        later_rows = await security_events(database, str(later.correlation_id))
        # Written in the same batch or before: no need to wait again.
        nul_rows = await security_events(database, str(nul.correlation_id), seconds=0)
    finally:
        await asyncio.to_thread(mesh.restart, service)

    assert refused[0].status == 401
    assert after.status_code == 401
    assert [(r["event"], r["reason"]) for r in later_rows] == [
        ("authentication_failure", "expired")
    ]
    assert [(r["event"], r["reason"]) for r in nul_rows] == [
        ("authentication_failure", "missing_token")
    ]


@pytest.mark.parametrize(
    "offered",
    [
        'x"} {"event": "method_executed", "outcome": "ok',
        "a" * 65,
        "id with spaces",
        "",
    ],
    ids=["a forged log line", "65 characters", "spaces", "empty"],
)
async def test_forged_correlation_id_is_not_adopted(
    mesh: LocalMesh, forge: TokenForge, offered: str
) -> None:
    """A correlation id that could forge or break a log line is replaced by
    one the service makes, and never written anywhere."""
    token = forge.expired(FRONT, ["document-processor"])
    request = bearer(FRONT, rpc_body("list_pending_documents", {}), token)
    request = request.with_correlation(offered)

    response = await send(mesh, request)

    made = response.headers["x-correlation-id"]
    assert made != offered
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert await wait_for_log(mesh, FRONT, made)
    if offered:
        assert offered not in all_logs(mesh)[f"{FRONT}.log"]
