"""The same object submitted again, through the running mesh: S3 notifies at
least once, so one version of an object is one task, found again by every
later submission until a reprocess is asked for; a key repeated in one batch
is one task too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.launcher.caller import MeshCaller
from services.launcher.mesh import BUCKET, LocalMesh
from tests.helpers.corpus import corpus_file

pytestmark = pytest.mark.integration


@pytest.fixture
async def admin(mesh: LocalMesh) -> AsyncIterator[MeshCaller]:
    # Not the document-processor: its minute's budget is the busiest.
    async with mesh.caller("mesh-admin") as caller:
        yield caller


def stored_key(mesh: LocalMesh, name: str) -> str:
    """A corpus file put in the bucket by someone else than the mesh (as a
    client whose upload triggers an S3 event), encrypted as the bucket
    requires."""
    key = f"incoming/{uuid.uuid4().hex}-{corpus_file(name).name}"
    mesh.aws.client("s3").put_object(
        Bucket=BUCKET,
        Key=key,
        Body=corpus_file(name).read_bytes(),
        ServerSideEncryption="AES256",
    )
    return key


async def current_tasks(database: asyncpg.Connection, key: str) -> list[uuid.UUID]:
    """The tasks that stand for the object's version: at most one."""
    rows = await database.fetch(
        "SELECT id FROM tasks WHERE s3_key = $1 AND object_version IS NOT NULL",
        key,
    )
    return [row["id"] for row in rows]


async def test_same_object_is_one_task_until_a_reprocess_replaces_it(
    mesh: LocalMesh, admin: MeshCaller, database: asyncpg.Connection
) -> None:
    key = stored_key(mesh, "txt/report-01.txt")

    first = await admin.result("process_document", {"s3_key": key})
    again = await admin.result("process_document", {"s3_key": key})

    assert (first["s3_key"], first["status"]) == (key, "pending")
    assert "replayed" not in first
    assert again["task_id"] == first["task_id"]
    assert again["replayed"] is True
    done = await admin.wait(first["task_id"])
    assert done["status"] == "completed"
    after = await admin.result("process_document", {"s3_key": key})
    assert (after["task_id"], after["status"], after["replayed"]) == (
        first["task_id"],
        "completed",
        True,
    )

    redo = await admin.result("process_document", {"s3_key": key, "reprocess": True})

    assert redo["task_id"] != first["task_id"]
    assert "replayed" not in redo
    redone = await admin.wait(redo["task_id"])
    assert redone["status"] == "completed"
    assert redone["document_id"] == done["document_id"]
    latest = await admin.result("process_document", {"s3_key": key})
    assert (latest["task_id"], latest["replayed"]) == (redo["task_id"], True)
    assert await current_tasks(database, key) == [uuid.UUID(redo["task_id"])]


async def test_key_repeated_in_a_batch_is_one_task_for_every_position(
    mesh: LocalMesh, admin: MeshCaller, database: asyncpg.Connection
) -> None:
    key = stored_key(mesh, "txt/report-02.txt")
    missing = f"uploads/missing/{uuid.uuid4().hex}.txt"

    batch = await admin.result("process_batch", {"s3_keys": [key, missing, key]})

    first, other, repeated = batch["tasks"]
    assert repeated == first
    assert "replayed" not in first
    assert other["task_id"] != first["task_id"]
    assert await current_tasks(database, key) == [uuid.UUID(first["task_id"])]
    assert (await admin.wait(first["task_id"]))["status"] == "completed"

    redo = await admin.result(
        "process_batch", {"s3_keys": [key, key], "reprocess": True}
    )

    assert redo["tasks"][0] == redo["tasks"][1]
    assert redo["tasks"][0]["task_id"] != first["task_id"]
    assert await current_tasks(database, key) == [
        uuid.UUID(redo["tasks"][0]["task_id"])
    ]


async def test_an_uploaded_object_submitted_again_finds_its_upload_task(
    admin: MeshCaller, database: asyncpg.Connection
) -> None:
    response = await admin.upload(corpus_file("txt/report-03.txt"))
    assert response.status_code == 202, response.text
    uploaded = response.json()
    await admin.wait(uploaded["task_id"])

    again = await admin.result("process_document", {"s3_key": uploaded["s3_key"]})

    assert (again["task_id"], again["replayed"]) == (uploaded["task_id"], True)
    assert await current_tasks(database, uploaded["s3_key"]) == [
        uuid.UUID(uploaded["task_id"])
    ]
