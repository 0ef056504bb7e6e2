"""No log holds a token or a secret, and stored documents are encrypted at rest.

The logs are read after a document went through every hop here, and after
whatever the other integration tests did on the same mesh.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from services.launcher.mesh import BUCKET, LocalMesh
from tests.helpers.corpus import corpus_file

pytestmark = pytest.mark.integration

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


@pytest.fixture(scope="module")
def processed(mesh: LocalMesh) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with mesh.caller("document-processor") as caller:
            accepted = (
                await caller.upload(corpus_file("pdf/sample_invoice.pdf"))
            ).json()
            return await caller.wait(accepted["task_id"])

    task = asyncio.run(run())
    assert task["status"] == "completed"
    return task


def _logs(mesh: LocalMesh) -> dict[str, str]:
    return {
        path.name: path.read_text(encoding="utf-8", errors="replace")
        for path in mesh.log_dir.glob("*.log")
    }


def test_logs_hold_no_token(mesh: LocalMesh, processed: dict[str, Any]) -> None:
    logs = _logs(mesh)

    assert set(logs) >= {"identity.log", "orchestrator.log", "archivist.log"}
    for name, text in logs.items():
        assert not JWT.search(text), f"a token in {name}"


def test_logs_hold_no_client_secret(mesh: LocalMesh, processed: dict[str, Any]) -> None:
    for name, text in _logs(mesh).items():
        for client_id, secret in mesh.client_secrets.items():
            assert secret not in text, f"{client_id}'s secret in {name}"


def test_stored_documents_are_encrypted_at_rest(
    mesh: LocalMesh, processed: dict[str, Any]
) -> None:
    s3 = mesh.aws.client("s3")

    keys = [
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for entry in page.get("Contents", [])
    ]

    assert processed["s3_key"] in keys
    for key in keys:
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "AES256", key
