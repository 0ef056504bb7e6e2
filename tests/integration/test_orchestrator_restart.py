"""Tasks an orchestrator left unfinished are run again when it starts."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.launcher.caller import MeshCaller
from services.launcher.mesh import LocalMesh
from tests.helpers.corpus import corpus_file

pytestmark = pytest.mark.integration


async def _orphan(database: asyncpg.Connection, s3_key: str, status: str) -> str:
    """A task row as a crashed orchestrator leaves it: mid-pipeline, no owner."""
    task_id = uuid.uuid4()
    await database.execute(
        "INSERT INTO tasks (id, s3_key, status, stage, submitted_by)"
        " VALUES ($1, $2, $3, $3, 'crashed-orchestrator')",
        task_id,
        s3_key,
        status,
    )
    return str(task_id)


async def test_restarted_orchestrator_finishes_orphaned_tasks(
    mesh: LocalMesh, processor: MeshCaller, database: asyncpg.Connection
) -> None:
    uploaded = (await processor.upload(corpus_file("txt/report-03.txt"))).json()
    finished = await processor.wait(uploaded["task_id"])
    mid_pipeline = await _orphan(database, uploaded["s3_key"], "validating")
    never_started = await _orphan(database, "uploads/missing/gone.txt", "pending")

    await asyncio.to_thread(mesh.restart, "orchestrator")

    resumed = await processor.wait(mid_pipeline)
    failed = await processor.wait(never_started)
    assert resumed["status"] == "completed"
    assert resumed["document_id"] == finished["document_id"]
    assert resumed["attempts"] == 1
    assert (failed["status"], failed["reason_code"]) == ("failed", "missing_object")
    documents = await database.fetchval(
        "SELECT count(*) FROM documents WHERE s3_key = $1", uploaded["s3_key"]
    )
    assert documents == 1
