"""Faults on the real mesh while a batch of corpus documents is in flight.

Each test submits a batch, breaks something around it, and then asserts what
a user depends on: every accepted task ended, completed, exactly once (its
end recorded once, guarded by its lease; never two ``task.completed`` events
across the orchestrators' logs), and the documents table holds exactly one
row per document.

The mesh here is this module's own, so that killing its parts disturbs no
other test, and it is tuned to recover in seconds: short leases and backoff,
and access tokens that live 12 seconds, so that an identity provider outage
of 15 seconds outlasts every token's refresh window.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.identity.realm import DEFAULT_REALM_FILE
from services.launcher.caller import MeshCaller
from services.launcher.mesh import LocalMesh
from services.launcher.ports import free_port
from services.launcher.processes import ManagedProcess, python_module
from tests.helpers.corpus import CORPUS

pytestmark = pytest.mark.integration

BATCH = [
    *sorted(p for p in (CORPUS / "txt").iterdir() if p.is_file()),
    CORPUS / "pdf" / "sample_invoice.pdf",
    CORPUS / "pdf" / "sample_contract.pdf",
    CORPUS / "pdf" / "pdflatex-4-pages.pdf",
    CORPUS / "csv" / "employee_data.csv",
    CORPUS / "csv" / "invoice_demo_20260101.csv",
]
TOKEN_LIFETIME = 12
RECOVERY = {
    "MESH_TASK_LEASE_SECONDS": "3",
    "MESH_TASK_CLAIM_INTERVAL_SECONDS": "0.5",
    "MESH_TASK_RETRY_BASE_SECONDS": "0.5",
    "MESH_TASK_RETRY_MAX_SECONDS": "2",
    "MESH_TASK_MAX_ATTEMPTS": "40",
    "MESH_AGENT_PROBE_INTERVAL_SECONDS": "1",
    # Short, so that a stopping replica has pipelines left to hand back.
    "MESH_TASK_DRAIN_SECONDS": "0.5",
}
SETTLE_SECONDS = 90.0


@pytest.fixture(scope="module")
def fault_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    realm = json.loads(DEFAULT_REALM_FILE.read_text())
    realm["accessTokenLifespan"] = TOKEN_LIFETIME
    realm_file = tmp_path_factory.mktemp("realm") / "realm.json"
    realm_file.write_text(json.dumps(realm))
    with LocalMesh(
        tmp_path_factory.mktemp("mesh"),
        service_env={
            "orchestrator": RECOVERY,
            "identity": {"MESH_IDP_REALM_FILE": str(realm_file)},
        },
        replicas={"orchestrator": 2},
    ) as running:
        yield running


@pytest.fixture
async def caller(fault_mesh: LocalMesh) -> AsyncIterator[MeshCaller]:
    async with fault_mesh.caller("document-processor") as client:
        yield client


@pytest.fixture
async def database(fault_mesh: LocalMesh) -> AsyncIterator[asyncpg.Connection]:
    assert fault_mesh.database is not None
    connection = await fault_mesh.database.connect("mesh")
    try:
        yield connection
    finally:
        await connection.close()


async def test_extractor_killed_mid_batch_and_restarted(
    fault_mesh: LocalMesh, caller: MeshCaller, database: asyncpg.Connection
) -> None:
    retried_before = len(_events(fault_mesh, "task.retry_later"))
    accepted = await _submit(caller, BATCH)
    await _until_some_are(database, accepted, "extracting")

    fault_mesh.processes["extractor"].kill()
    await asyncio.sleep(2)
    await asyncio.to_thread(fault_mesh.restart, "extractor")

    await _assert_each_completed_once(fault_mesh, accepted)
    retried = len(_events(fault_mesh, "task.retry_later")) - retried_before
    assert retried > 0, "no task met the dead extractor"


async def test_database_restarted_mid_batch(
    fault_mesh: LocalMesh, caller: MeshCaller, database: asyncpg.Connection
) -> None:
    assert fault_mesh.database is not None
    accepted = await _submit(caller, BATCH)
    await _until_some_are(database, accepted, "extracting")

    await database.close()
    fault_mesh.database.kill()
    await asyncio.sleep(2)
    await asyncio.to_thread(fault_mesh.database.restart)

    await _assert_each_completed_once(fault_mesh, accepted)


async def test_identity_provider_down_past_the_token_refresh_window(
    fault_mesh: LocalMesh, caller: MeshCaller, database: asyncpg.Connection
) -> None:
    accepted = await _submit(caller, BATCH[:4])
    await _assert_each_completed_once(fault_mesh, accepted)
    refused_before = len(_events(fault_mesh, "service_token.unreachable"))

    fault_mesh.processes["identity"].stop()
    try:
        # Past every token the services hold: each needs the provider again.
        await asyncio.sleep(TOKEN_LIFETIME + 3)
        during = await _submit_objects(database, fault_mesh, accepted)
        await asyncio.sleep(3)
    finally:
        await asyncio.to_thread(fault_mesh.restart, "identity")

    assert len(_events(fault_mesh, "service_token.unreachable")) > refused_before
    await _assert_each_completed_once(fault_mesh, during)


async def test_s3_failing_some_reads(
    fault_mesh: LocalMesh, caller: MeshCaller, tmp_path: Path
) -> None:
    port = free_port()
    proxy = _flaky_s3(fault_mesh, tmp_path, port)
    proxy.start()
    try:
        proxy.wait_healthy(
            f"https://127.0.0.1:{port}/_faults", ca_file=fault_mesh.ca_file, timeout=30
        )
        extractor = {"MESH_AWS_ENDPOINT_URL": f"https://127.0.0.1:{port}"}
        await asyncio.to_thread(fault_mesh.restart, "extractor", extractor)

        retried_before = len(_events(fault_mesh, "task.retry_later"))
        accepted = await _submit(caller, BATCH * 2)
        await _assert_each_completed_once(fault_mesh, accepted)
        faults = _fault_counts(fault_mesh, port)
        retried = len(_events(fault_mesh, "task.retry_later")) - retried_before
    finally:
        direct = {"MESH_AWS_ENDPOINT_URL": fault_mesh.url("aws")}
        await asyncio.to_thread(fault_mesh.restart, "extractor", direct)
        proxy.stop()

    assert faults["failed"] > 0 and faults["passed"] > 0, faults
    assert retried > 0, "boto3's own retries hid every failure"


async def test_orchestrator_stopped_mid_batch_exits_0_and_hands_tasks_back(
    fault_mesh: LocalMesh, caller: MeshCaller, database: asyncpg.Connection
) -> None:
    extractor = fault_mesh.processes["extractor"].pid
    assert extractor is not None
    orchestrator = fault_mesh.processes["orchestrator"]
    orchestrator_pid = orchestrator.pid
    # A frozen extractor holds every pipeline mid-call past the drain time.
    os.kill(extractor, signal.SIGSTOP)
    try:
        accepted = await _submit(caller, BATCH)
        await _until_some_are(database, accepted, "extracting")
        await asyncio.to_thread(orchestrator.stop)
        # Running when it stopped, or waiting to be tried again: not ended.
        unfinished = await database.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])"
            " AND status NOT IN ('completed', 'failed')",
            [task["task_id"] for task in accepted],
        )
    finally:
        os.kill(extractor, signal.SIGCONT)
        exit_code = orchestrator.exit_code
        await asyncio.to_thread(fault_mesh.restart, "orchestrator")

    assert exit_code == 0
    held = await database.fetchval(
        "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])"
        " AND status NOT IN ('completed', 'failed') AND lease_owner LIKE $2",
        [task["task_id"] for task in accepted],
        f"%:{orchestrator_pid}:%",
    )
    assert held == 0, "a stopped replica kept a lease"
    assert unfinished > 0, "the batch had ended before the stop"
    await _assert_each_completed_once(fault_mesh, accepted)


async def test_one_of_two_orchestrators_killed_mid_batch(
    fault_mesh: LocalMesh, caller: MeshCaller, database: asyncpg.Connection
) -> None:
    second_url = fault_mesh.addresses.replica_urls["orchestrator"][1]
    async with fault_mesh.caller("document-processor", url=second_url) as second:
        halves = await asyncio.gather(_submit(caller, BATCH), _submit(second, BATCH))
    accepted = [task for half in halves for task in half]
    await _until_some_are(database, halves[1], "extracting")

    fault_mesh.processes["orchestrator-2"].kill()
    try:
        await _assert_each_completed_once(fault_mesh, accepted)
    finally:
        await asyncio.to_thread(fault_mesh.restart, "orchestrator-2")


# --- submitting and waiting ---------------------------------------------------


async def _submit(caller: MeshCaller, paths: list[Path]) -> list[dict[str, Any]]:
    responses = await asyncio.gather(*(caller.upload(path) for path in paths))
    for response in responses:
        assert response.status_code == 202, response.text
    return [response.json() for response in responses]


async def _submit_objects(
    database: asyncpg.Connection, mesh: LocalMesh, earlier: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Tasks for objects already in the bucket, made while no token can be
    had: as a replica would find them after a restart, straight in the table."""
    made = []
    for task in earlier:
        row = await database.fetchrow(
            "INSERT INTO tasks (id, s3_key, submitted_by)"
            " VALUES (gen_random_uuid(), $1, 'fault-test') RETURNING id",
            task["s3_key"],
        )
        assert row is not None
        made.append({"task_id": str(row["id"]), "s3_key": task["s3_key"]})
    return made


async def _until_some_are(
    database: asyncpg.Connection, accepted: list[dict[str, Any]], status: str
) -> None:
    ids = [task["task_id"] for task in accepted]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        count = await database.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = $2",
            ids,
            status,
        )
        if count:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"no task reached {status}")


async def _ended(mesh: LocalMesh, task_ids: list[str]) -> list[asyncpg.Record]:
    """The tasks once every one has ended, read straight from the table (the
    database itself may still be coming back)."""
    assert mesh.database is not None
    deadline = time.monotonic() + SETTLE_SECONDS
    rows: list[asyncpg.Record] = []
    while time.monotonic() < deadline:
        try:
            connection = await mesh.database.connect("mesh")
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.5)
            continue
        try:
            rows = await connection.fetch(
                "SELECT id, s3_key, status, reason_code, reason, attempts FROM tasks"
                " WHERE id = ANY($1::uuid[]) ORDER BY s3_key",
                task_ids,
            )
        finally:
            await connection.close()
        if len(rows) == len(task_ids) and all(
            row["status"] in ("completed", "failed", "canceled") for row in rows
        ):
            return rows
        await asyncio.sleep(0.5)
    pytest.fail(f"tasks still unfinished: {[dict(r) for r in rows]}")


async def _assert_each_completed_once(
    mesh: LocalMesh, accepted: list[dict[str, Any]]
) -> None:
    task_ids = [task["task_id"] for task in accepted]
    rows = await _ended(mesh, task_ids)

    assert [(r["status"], r["reason"]) for r in rows] == [("completed", None)] * len(
        rows
    )
    ends = Counter(
        line["task_id"]
        for line in _events(mesh, "task.completed", "task.failed")
        if line.get("task_id") in task_ids
    )
    # A replica SIGKILLed between recording a task's end and logging it
    # leaves the end unlogged: the table is the record, the logs must never
    # show an end twice.
    assert max(ends.values(), default=0) <= 1, "a task ended twice"

    assert mesh.database is not None
    connection = await mesh.database.connect("mesh")
    try:
        per_key = await connection.fetch(
            "SELECT s3_key, count(*) AS n FROM documents"
            " WHERE s3_key = ANY($1::text[]) GROUP BY s3_key",
            [task["s3_key"] for task in accepted],
        )
    finally:
        await connection.close()
    assert {r["s3_key"]: r["n"] for r in per_key} == {
        task["s3_key"]: 1 for task in accepted
    }


# --- logs and the S3 proxy ------------------------------------------------------


def _events(mesh: LocalMesh, *names: str) -> list[dict[str, Any]]:
    """Events of these names in every orchestrator log of the mesh."""
    found = []
    for log in mesh.log_dir.glob("orchestrator*.log"):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("event") in names:
                found.append(event)
    return found


def _flaky_s3(mesh: LocalMesh, tmp_path: Path, port: int) -> ManagedProcess:
    certs = mesh.certs_dir
    return ManagedProcess(
        "flaky-s3",
        python_module(
            "tests.helpers.flaky_s3",
            mesh.url("aws"),
            str(port),
            str(certs / "s3.pem"),
            str(certs / "s3.key"),
            str(mesh.ca_file),
        ),
        env={"PYTHONPATH": str(Path(__file__).parents[2]), "PYTHONUNBUFFERED": "1"},
        log_dir=tmp_path,
    )


def _fault_counts(mesh: LocalMesh, port: int) -> dict[str, int]:
    with httpx.Client(verify=mesh.tls_context()) as client:
        counts: dict[str, int] = client.get(f"https://127.0.0.1:{port}/_faults").json()
    return {"failed": counts.get("failed", 0), "passed": counts.get("passed", 0)}
