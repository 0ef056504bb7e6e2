"""Two orchestrator replicas: each its own process and port, sharing the
database and the bucket, and each accepting documents as the edge."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.launcher.mesh import LocalMesh
from tests.helpers.corpus import corpus_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_orchestrators() -> Iterator[LocalMesh]:
    with LocalMesh(replicas={"orchestrator": 2}) as running:
        yield running


async def _upload_and_wait(mesh: LocalMesh, url: str) -> dict[str, object]:
    async with mesh.caller("document-processor", url=url) as caller:
        response = await caller.upload(corpus_file("pdf/sample_invoice.pdf"))
        assert response.status_code == 202
        return await caller.wait(response.json()["task_id"])


async def test_two_orchestrator_replicas_each_complete_a_document(
    two_orchestrators: LocalMesh,
) -> None:
    urls = two_orchestrators.addresses.replica_urls["orchestrator"]
    assert len(set(urls)) == 2
    assert urls[0] == two_orchestrators.url("orchestrator")
    assert two_orchestrators.processes["orchestrator-2"].running()

    tasks = await asyncio.gather(
        *(_upload_and_wait(two_orchestrators, url) for url in urls)
    )

    assert [task["status"] for task in tasks] == ["completed", "completed"]
    assert [task["attempts"] for task in tasks] == [1, 1]
    assert tasks[0]["task_id"] != tasks[1]["task_id"]


async def test_a_task_accepted_by_one_replica_is_read_by_the_other(
    two_orchestrators: LocalMesh,
) -> None:
    first, second = two_orchestrators.addresses.replica_urls["orchestrator"]
    async with two_orchestrators.caller("document-processor", url=first) as caller:
        accepted = (await caller.upload(corpus_file("txt/report-03.txt"))).json()
    async with two_orchestrators.caller("document-processor", url=second) as other:
        task = await other.wait(accepted["task_id"])

    assert task["status"] == "completed"
