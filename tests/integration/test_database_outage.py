"""PostgreSQL killed while documents are in flight: callers get -32013, and once
it is back every accepted task ends exactly once, with one row per document."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.launcher.caller import MeshCaller
from services.launcher.mesh import LocalMesh
from tests.helpers.corpus import CORPUS, corpus_file

pytestmark = pytest.mark.integration

BATCH = [
    *sorted(p for p in (CORPUS / "txt").iterdir() if p.is_file()),
    CORPUS / "pdf" / "sample_invoice.pdf",
    CORPUS / "pdf" / "sample_contract.pdf",
    CORPUS / "csv" / "employee_data.csv",
]


async def test_tasks_survive_a_database_crash(
    mesh: LocalMesh, processor: MeshCaller
) -> None:
    assert mesh.database is not None
    responses = await asyncio.gather(*(processor.upload(path) for path in BATCH))
    accepted = [response.json() for response in responses]

    mesh.database.kill()
    try:
        during = await processor.rpc(
            "get_task_status", {"task_id": accepted[0]["task_id"]}
        )
        upload = await processor.upload(corpus_file("txt/report-01.txt"))
    finally:
        await asyncio.to_thread(mesh.database.restart)

    assert during["error"]["code"] == -32013
    assert during["error"]["data"] == {"dependency": "database"}
    assert upload.status_code == 503
    assert upload.json()["error"]["code"] == -32013

    tasks = [await _settled(processor, a["task_id"]) for a in accepted]
    assert [t["status"] for t in tasks] == ["completed"] * len(BATCH)
    connection = await mesh.database.connect("mesh")
    try:
        for task in tasks:
            rows = await connection.fetchval(
                "SELECT count(*) FROM documents WHERE s3_key = $1", task["s3_key"]
            )
            assert rows == 1, task
    finally:
        await connection.close()


async def _settled(caller: MeshCaller, task_id: str) -> dict[str, object]:
    """The task once it ended; the database may still be coming back."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = await caller.rpc("get_task_status", {"task_id": task_id})
        if "result" in reply and reply["result"]["status"] in ("completed", "failed"):
            return dict(reply["result"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"task {task_id} did not end within 60 s")
