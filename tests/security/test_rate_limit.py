"""The rate limit: 300 requests a minute per principal at the orchestrator;
the 301st is 429 with ``Retry-After``, and other principals are unaffected."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.launcher.mesh import LocalMesh
from tests.helpers.evidence import assert_nothing_ran, assert_refused, security_events
from tests.helpers.raw import (
    RawRequest,
    bearer,
    pipelined,
    rpc_body,
    send,
    unique_key,
)
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

FRONT = "orchestrator"
LIMIT = 300  # policy.toml: rate_limit.requests_per_minute
ROLES = ["document-processor"]


def _status_call(token: str) -> RawRequest:
    return bearer(
        FRONT, rpc_body("get_task_status", {"task_id": str(uuid.uuid4())}), token
    )


async def _use_up_the_minute(mesh: LocalMesh, token: str) -> None:
    """``LIMIT`` requests at once, each admitted and run (no such task)."""
    responses = await pipelined(
        mesh, [_status_call(token) for _ in range(LIMIT)], connections=20
    )
    assert {r.status for r in responses} == {200}
    assert {r.json()["error"]["code"] for r in responses} == {-32012}


async def _refused_and_unaffected(
    mesh: LocalMesh,
    forge: TokenForge,
    database: asyncpg.Connection,
    token: str,
    subject: str,
) -> None:
    """One more request of ``subject`` is 429 and runs nothing, while another
    principal's request at the same moment runs."""
    key = unique_key("rate-limited")
    over = bearer(FRONT, rpc_body("process_document", {"s3_key": key}), token)
    other = _status_call(forge.valid(FRONT, ROLES))

    refused, unaffected = await asyncio.gather(send(mesh, over), send(mesh, other))

    body = assert_refused(refused, status=429, code=-32003, reason="rate_limited")
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 60
    assert body["error"]["data"] == {
        "reason": "rate_limited",
        "retry_after": int(retry_after),
    }
    assert unaffected.status_code == 200
    assert unaffected.json()["error"]["code"] == -32012
    await assert_nothing_ran(mesh, database, FRONT, str(over.correlation_id), key=key)
    rows = await security_events(database, str(over.correlation_id))
    assert [(r["event"], r["reason"], r["principal"]) for r in rows] == [
        ("rate_limit_exceeded", "rate_limited", subject)
    ]


async def test_301st_request_in_a_minute_is_429_and_others_are_unaffected(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    subject = f"sec-rate-{uuid.uuid4()}"
    token = forge.valid(FRONT, ROLES, sub=subject)

    await _use_up_the_minute(mesh, token)

    await _refused_and_unaffected(mesh, forge, database, token, subject)


async def test_fresh_token_of_a_limited_principal_is_still_429(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """The window belongs to the subject, not the token: a new token (new
    ``jti``) for the same subject does not reset it."""
    subject = f"sec-rate-{uuid.uuid4()}"

    await _use_up_the_minute(mesh, forge.valid(FRONT, ROLES, sub=subject))

    fresh = forge.valid(FRONT, ROLES, sub=subject)
    await _refused_and_unaffected(mesh, forge, database, fresh, subject)


async def _spend(mesh: LocalMesh, token: str, calls: int) -> None:
    responses = await pipelined(
        mesh, [_status_call(token) for _ in range(calls)], connections=20
    )
    assert {r.status for r in responses} == {200}


async def test_a_batch_counts_each_of_its_documents_against_the_limit(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """One process_batch of many keys is that many requests: a caller cannot
    queue 100 tasks for the price of one call."""
    subject = f"sec-rate-batch-{uuid.uuid4()}"
    token = forge.valid(FRONT, ROLES, sub=subject)
    # 250 spent: a batch of 60 (251 + 59) goes over, one of 40 still fits.
    await _spend(mesh, token, LIMIT - 50)

    too_many = [unique_key("batch-over") for _ in range(60)]
    over = bearer(FRONT, rpc_body("process_batch", {"s3_keys": too_many}), token)
    refused = await send(mesh, over)
    fitting = [unique_key("batch-fits") for _ in range(40)]
    admitted = await send(
        mesh, bearer(FRONT, rpc_body("process_batch", {"s3_keys": fitting}), token)
    )

    body = assert_refused(refused, status=429, code=-32003, reason="rate_limited")
    assert refused.headers["retry-after"] == str(body["error"]["data"]["retry_after"])
    for key in too_many:
        assert (
            await database.fetchval("SELECT count(*) FROM tasks WHERE s3_key = $1", key)
            == 0
        )
    assert admitted.status_code == 200
    assert len(admitted.json()["result"]["tasks"]) == 40
    rows = await security_events(database, str(over.correlation_id))
    assert [(r["event"], r["reason"]) for r in rows] == [
        ("rate_limit_exceeded", "rate_limited")
    ]
