"""The orchestrator's API as a caller meets it: tasks, failures, bad input."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.launcher.caller import MeshCaller
from services.launcher.mesh import LocalMesh
from tests.helpers.corpus import corpus_file

pytestmark = pytest.mark.integration


async def test_missing_object_ends_failed_with_a_reason(
    processor: MeshCaller, database: asyncpg.Connection
) -> None:
    key = f"uploads/missing/{uuid.uuid4().hex}.pdf"

    accepted = await processor.result("process_document", {"s3_key": key})
    task = await processor.wait(accepted["task_id"])

    assert accepted["status"] == "pending"
    assert task["status"] == "failed"
    assert task["stage"] == "extracting"
    assert task["reason_code"] == "missing_object"
    assert key in task["reason"]
    row = await database.fetchrow(
        "SELECT status, reason_code FROM tasks WHERE id = $1",
        uuid.UUID(accepted["task_id"]),
    )
    assert row is not None
    assert (row["status"], row["reason_code"]) == ("failed", "missing_object")


async def test_processing_the_same_object_twice_leaves_one_document(
    processor: MeshCaller, database: asyncpg.Connection
) -> None:
    uploaded = (await processor.upload(corpus_file("txt/report-01.txt"))).json()
    first = await processor.wait(uploaded["task_id"])

    # Asked to run again: without reprocess the same object finds its task.
    again = await processor.result(
        "process_document", {"s3_key": uploaded["s3_key"], "reprocess": True}
    )
    second = await processor.wait(again["task_id"])

    assert again["task_id"] != uploaded["task_id"]
    assert (first["status"], second["status"]) == ("completed", "completed")
    assert first["document_id"] == second["document_id"]
    rows = await database.fetchval(
        "SELECT count(*) FROM documents WHERE s3_key = $1", uploaded["s3_key"]
    )
    assert rows == 1
    log_rows = await database.fetchval(
        "SELECT count(*) FROM processing_log WHERE document_id = $1",
        uuid.UUID(first["document_id"]),
    )
    assert log_rows == 6


async def test_batch_starts_one_task_per_key(processor: MeshCaller) -> None:
    keys = [f"uploads/missing/{uuid.uuid4().hex}.txt" for _ in range(3)]

    batch = await processor.result("process_batch", {"s3_keys": keys})

    assert [t["s3_key"] for t in batch["tasks"]] == keys
    for accepted in batch["tasks"]:
        assert (await processor.wait(accepted["task_id"]))["status"] == "failed"


async def test_task_status_reports_stage_timings_and_result(
    processor: MeshCaller,
) -> None:
    uploaded = (await processor.upload(corpus_file("pdf/sample_invoice.pdf"))).json()

    task = await processor.wait(uploaded["task_id"])

    assert task["status"] == "completed"
    assert task["stage"] == "archiving"
    assert task["result"]["document_type"] == "invoice"
    assert task["result"]["key_fields"]["invoice_number"] == "INV-2025-001"
    assert task["timings"]["total_ms"] >= task["timings"]["extracting_ms"]
    assert task["started_at"] <= task["finished_at"]


async def test_unknown_task_is_32012(processor: MeshCaller) -> None:
    reply = await processor.rpc("get_task_status", {"task_id": str(uuid.uuid4())})
    assert reply["error"]["code"] == -32012


@pytest.mark.parametrize(
    "params",
    [
        {"s3_key": "../etc/passwd"},
        {"s3_key": "/absolute/key.pdf"},
        {"s3_key": "a" * 1025},
        {"s3_key": 42},
        {"s3_key": "uploads/x.pdf", "unexpected": True},
        {},
    ],
)
async def test_bad_params_are_32602_and_start_nothing(
    processor: MeshCaller, database: asyncpg.Connection, params: dict[str, object]
) -> None:
    before = await database.fetchval("SELECT count(*) FROM tasks")

    reply = await processor.rpc("process_document", params)

    assert reply["error"]["code"] == -32602
    assert await database.fetchval("SELECT count(*) FROM tasks") == before


async def test_pending_documents_lists_only_unfinished_tasks(
    processor: MeshCaller,
) -> None:
    listed = await processor.result("list_pending_documents", {"limit": 10})
    assert all(t["status"] not in ("completed", "failed") for t in listed["tasks"])


async def test_discover_agents_lists_the_three_agents(mesh: LocalMesh) -> None:
    async with mesh.caller("mesh-admin") as admin:
        found = await admin.result("discover_agents")
    by_name = {agent["name"]: agent for agent in found["agents"]}

    assert set(by_name) == {"extractor", "validator", "archivist"}
    assert all(agent["status"] == "available" for agent in by_name.values())
    assert "extract_document" in by_name["extractor"]["skills"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, -32700),
        (b"[]", 400, -32600),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "discover_agents"}]', 400, -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "discover_agents"}', 400, -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "drop_tables"}', 200, -32601),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "get_task_status", "params": [1]}',
            200,
            -32602,
        ),
    ],
)
async def test_malformed_requests_get_precise_errors(
    mesh: LocalMesh, processor: MeshCaller, body: bytes, status: int, code: int
) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/a2a",
            content=body,
            headers={
                "Authorization": f"Bearer {await processor.token()}",
                "Content-Type": "application/json",
            },
        )

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_huge_body_is_413(mesh: LocalMesh, processor: MeshCaller) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/a2a",
            content=b"[" * (2 * 1024 * 1024),
            headers={"Authorization": f"Bearer {await processor.token()}"},
        )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == -32600


async def test_upload_of_an_unsupported_type_is_415_and_stores_nothing(
    mesh: LocalMesh, processor: MeshCaller, database: asyncpg.Connection
) -> None:
    before = await database.fetchval("SELECT count(*) FROM tasks")
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/documents",
            files={"file": ("payload.exe", b"MZ\x90\x00", "application/x-msdownload")},
            headers={"Authorization": f"Bearer {await processor.token()}"},
        )

    assert response.status_code == 415
    assert response.json()["error"]["data"]["reason"] == "unsupported_type"
    assert await database.fetchval("SELECT count(*) FROM tasks") == before


async def test_upload_without_a_file_field_is_400(
    mesh: LocalMesh, processor: MeshCaller
) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/documents",
            data={"not_file": "x"},
            headers={"Authorization": f"Bearer {await processor.token()}"},
        )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32602


async def test_viewer_may_not_upload(
    mesh: LocalMesh, database: asyncpg.Connection
) -> None:
    before = await database.fetchval("SELECT count(*) FROM tasks")
    async with mesh.caller("viewer") as viewer:
        response = await viewer.upload(corpus_file("txt/report-02.txt"))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == -32002
    assert await database.fetchval("SELECT count(*) FROM tasks") == before


async def test_upload_needs_a_token(mesh: LocalMesh) -> None:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/documents",
            files={"file": ("a.txt", b"hello", "text/plain")},
        )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == -32001


async def test_a_large_text_document_is_cut_and_completes(
    processor: MeshCaller, database: asyncpg.Connection, tmp_path: Path
) -> None:
    large = tmp_path / "large-report.txt"
    await asyncio.to_thread(
        large.write_text, "Company: Big Corp\nRevenue: 1000\n" * 300_000
    )

    uploaded = (await processor.upload(large)).json()
    task = await processor.wait(uploaded["task_id"])

    assert task["status"] == "completed", task
    warnings = await database.fetchval(
        "SELECT extracted_data->'warnings' FROM documents WHERE s3_key = $1",
        uploaded["s3_key"],
    )
    assert "cut to its first" in warnings


async def test_upload_over_the_size_limit_is_413(
    mesh: LocalMesh, processor: MeshCaller
) -> None:
    too_big = b"a" * (25 * 1024 * 1024 + 1)
    async with httpx.AsyncClient(verify=mesh.tls_context(), timeout=60) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/documents",
            files={"file": ("big.txt", too_big, "text/plain")},
            headers={"Authorization": f"Bearer {await processor.token()}"},
        )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == -32600


async def test_viewer_reads_the_archive_through_the_orchestrator(
    mesh: LocalMesh, processor: MeshCaller
) -> None:
    uploaded = (await processor.upload(corpus_file("pdf/sample_contract.pdf"))).json()
    task = await processor.wait(uploaded["task_id"])

    async with mesh.caller("viewer") as viewer:
        document = await viewer.result(
            "get_document", {"document_id": task["document_id"]}
        )
        found = await viewer.result(
            "search_documents", {"document_type": "contract", "text": "AGREEMENT"}
        )
        stats = await viewer.result("get_document_stats")
        refused = await viewer.rpc("process_document", {"s3_key": uploaded["s3_key"]})

    assert document["s3_key"] == uploaded["s3_key"]
    assert document["processing_log"][-1]["step"] == "archive_document"
    assert "pages" not in document["extracted_data"]
    assert task["document_id"] in [d["document_id"] for d in found["documents"]]
    assert stats["by_type"]["contract"]["documents"] >= 1
    assert refused["error"]["code"] == -32002


async def test_unknown_document_is_32010_through_the_orchestrator(
    processor: MeshCaller, mesh: LocalMesh
) -> None:
    async with mesh.caller("viewer") as viewer:
        reply = await viewer.rpc("get_document", {"document_id": str(uuid.uuid4())})

    assert reply["error"]["code"] == -32010
    assert reply["error"]["data"]["reason"] == "missing_document"


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("list_pending_documents", {"limit": "10"}),
        ("list_pending_documents", {"limit": True}),
        ("search_documents", {"text": "\u0000"}),
        ("search_documents", {"min_score": "50"}),
        ("get_document", {"s3_key": "uploads/\u202etxt.exe"}),
        ("get_document", {"s3_key": "uploads/a\u2028b.pdf"}),
        ("get_document", {"s3_key": "\u00e9" * 600}),
        ("get_document", {"s3_key": "uploads/a\u00a0b.pdf"}),
        ("search_documents", {"text": "\u3000"}),
        ("get_document", {}),
    ],
)
async def test_wrong_types_and_unprintable_text_are_32602(
    mesh: LocalMesh, method: str, params: dict[str, object]
) -> None:
    async with mesh.caller("mesh-admin") as admin:
        reply = await admin.rpc(method, params)

    assert reply["error"]["code"] == -32602


async def test_get_document_includes_pages_only_when_asked(
    mesh: LocalMesh, processor: MeshCaller
) -> None:
    uploaded = (await processor.upload(corpus_file("pdf/sample_contract.pdf"))).json()
    task = await processor.wait(uploaded["task_id"])

    async with mesh.caller("viewer") as viewer:
        document = await viewer.result(
            "get_document", {"document_id": task["document_id"], "include_pages": True}
        )

    assert [page["number"] for page in document["extracted_data"]["pages"]] == [1, 2]


async def upload_with_key(
    mesh: LocalMesh, token: str, key: str, name: str = "retry.txt"
) -> httpx.Response:
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        return await http.post(
            f"{mesh.url('orchestrator')}/documents",
            files={"file": (name, corpus_file("txt/report-02.txt").read_bytes())},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        )


async def test_a_retried_upload_with_the_same_idempotency_key_gets_the_same_task(
    mesh: LocalMesh, processor: MeshCaller, database: asyncpg.Connection
) -> None:
    key = f"retry-{uuid.uuid4()}"
    name = f"{key}.txt"
    token = await processor.token()

    first, again, raced = await asyncio.gather(
        upload_with_key(mesh, token, key, name),
        upload_with_key(mesh, token, key, name),
        upload_with_key(mesh, token, key, name),
    )
    other = await upload_with_key(mesh, token, f"other-{uuid.uuid4()}")

    answers = [r.json() for r in (first, again, raced)]
    assert {r.status_code for r in (first, again, raced, other)} == {202}
    assert len({a["task_id"] for a in answers}) == 1
    assert sorted(bool(a.get("replayed")) for a in answers) == [False, True, True]
    assert other.json()["task_id"] != answers[0]["task_id"]
    rows = await database.fetch(
        "SELECT s3_key FROM tasks WHERE idempotency_key = $1", key
    )
    assert len(rows) == 1
    # The copies the retries stored are gone: only the task's object is left.
    pages = (
        mesh.aws.client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket="a2a-mesh-documents", Prefix="uploads/")
    )
    stored = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert [k for k in stored if k.endswith(name)] == [rows[0]["s3_key"]]


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there"])
async def test_a_malformed_idempotency_key_is_400_and_starts_nothing(
    key: str, mesh: LocalMesh, processor: MeshCaller, database: asyncpg.Connection
) -> None:
    before = await database.fetchval("SELECT count(*) FROM tasks")

    response = await upload_with_key(mesh, await processor.token(), key)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32602
    assert await database.fetchval("SELECT count(*) FROM tasks") == before


async def test_a_used_idempotency_key_with_another_document_is_refused(
    mesh: LocalMesh, processor: MeshCaller, database: asyncpg.Connection
) -> None:
    key = f"reused-{uuid.uuid4()}"
    token = await processor.token()
    first = await upload_with_key(mesh, token, key)

    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        other = await http.post(
            f"{mesh.url('orchestrator')}/documents",
            files={"file": ("other.txt", b"another document entirely")},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        )

    assert first.status_code == 202
    assert other.status_code == 400
    error = other.json()["error"]
    assert (error["code"], error["data"]["reason"]) == (
        -32602,
        "idempotency_key_reused",
    )
    assert (
        await database.fetchval(
            "SELECT count(*) FROM tasks WHERE idempotency_key = $1", key
        )
        == 1
    )
