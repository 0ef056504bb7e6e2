"""Hostile documents through the real mesh: each task ends ``failed`` with a
precise reason, and the extractor stays healthy and serves the next document.
Also what becomes of the extractor's workers when it stops or is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.launcher.caller import MeshCaller
from services.launcher.mesh import BUCKET, LocalMesh
from services.launcher.ports import free_port
from services.launcher.processes import python_module
from shared.auth.dpop import DpopKey
from shared.tls import client_context
from tests.helpers import hostile_pdfs
from tests.helpers.corpus import CORPUS
from tests.helpers.processes import (
    all_gone,
    children_of,
    descendants_of,
    eventually,
    eventually_sync,
    gone,
)
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

INVOICE = CORPUS / "pdf" / "sample_invoice.pdf"

HOSTILE: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "nested.pdf": (
        hostile_pdfs.deeply_nested,
        "too_complex",
        "The PDF is too complex to read: its objects are nested too deeply",
    ),
    "pages.pdf": (
        hostile_pdfs.many_pages,
        "too_large",
        "The PDF has 100000 pages; at most 500 are accepted",
    ),
    "bomb.pdf": (
        hostile_pdfs.inflating,
        "too_complex",
        "The PDF is too complex to read: it goes past a safety limit of the PDF "
        "reader (such as a stream that expands to more than 75 MB)",
    ),
    "slow.pdf": (
        hostile_pdfs.slow_to_parse,
        "extraction_timeout",
        "Reading the document took longer than {timeout} seconds; it was stopped",
    ),
}


@pytest.fixture
async def admin(mesh: LocalMesh) -> AsyncIterator[MeshCaller]:
    # An admin: each test here makes some twenty calls (uploads and polls),
    # which would spend much of the document processor's budget of 300 a
    # minute, shared with the corpus and restart tests around these.
    async with mesh.caller("mesh-admin") as caller:
        yield caller


async def processed(caller: MeshCaller, path: Path) -> dict[str, Any]:
    response = await caller.upload(path)
    assert response.status_code == 202, response.text
    return await caller.wait(response.json()["task_id"])


async def readiness(url: str, mesh: LocalMesh) -> httpx.Response:
    """``/ready`` once it answers 200, or its last answer after 10 s: other
    tests cut the database, and the revocation listener takes a second or
    two to reconnect."""
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        assert (await http.get(f"{url}/health")).status_code == 200
        for _ in range(50):
            response = await http.get(f"{url}/ready")
            if response.status_code == 200:
                break
            await asyncio.sleep(0.2)
    return response


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_pdf_fails_its_task_and_the_extractor_serves_on(
    mesh: LocalMesh, admin: MeshCaller, tmp_path: Path, name: str
) -> None:
    make, reason_code, reason = HOSTILE[name]
    timeout = mesh.service_environment("extractor", 0)["MESH_EXTRACT_TIMEOUT_SECONDS"]
    hostile = tmp_path / name
    hostile.write_bytes(make())

    task = await processed(admin, hostile)
    ready = await readiness(mesh.url("extractor"), mesh)
    after = await processed(admin, INVOICE)

    assert (task["status"], task["reason_code"]) == ("failed", reason_code)
    assert task["reason"] == reason.format(timeout=timeout)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["workers"] == "ok"
    assert after["status"] == "completed"
    assert after["result"]["key_fields"]["invoice_number"] == "INV-2025-001"


def test_workers_exit_when_the_extractor_is_killed(mesh: LocalMesh) -> None:
    extractor = mesh.processes["extractor"]
    assert extractor.pid is not None
    below = descendants_of(extractor.pid)
    # The forkserver, multiprocessing's resource tracker, and the workers.
    assert len(below) >= 4

    # The extractor alone, not its process group (as an OOM kill would).
    os.kill(extractor.pid, signal.SIGKILL)
    stopped = eventually_sync(lambda: not extractor.running())
    orphans_gone = eventually_sync(lambda: all_gone(below))
    mesh.restart("extractor")

    assert stopped
    assert orphans_gone, [pid for pid in below if not gone(pid)]


async def test_extractor_restarted_after_a_kill_serves_the_pipeline(
    admin: MeshCaller,
) -> None:
    task = await processed(admin, INVOICE)

    assert task["status"] == "completed", task


# --- shutting down in the middle of a document ---------------------------


@pytest.fixture
def own_extractor(mesh: LocalMesh, tmp_path: Path) -> Iterator[_Extractor]:
    """An extractor of its own, whose documents take longer than its
    shutdown grace (1 s) and which is stopped in the test."""
    port = free_port()
    env = mesh.service_environment("extractor", port) | {
        "MESH_EXTRACT_TIMEOUT_SECONDS": "60",
        "MESH_SHUTDOWN_GRACE_SECONDS": "1",
    }
    log_path = tmp_path / "extractor.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            python_module("services.extractor"),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield _Extractor(process, f"https://127.0.0.1:{port}", log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


class _Extractor:
    def __init__(
        self, process: subprocess.Popen[bytes], url: str, log_path: Path
    ) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def log(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def text(self) -> str:
        return self.log_path.read_text()


async def test_extractor_stopped_mid_document_kills_the_worker_quietly(
    mesh: LocalMesh, forge: TokenForge, own_extractor: _Extractor
) -> None:
    key = f"uploads/tests/{uuid.uuid4()}-slow.pdf"
    # Encrypted, as the bucket requires of every object.
    mesh.aws.client("s3").put_object(
        Bucket=BUCKET,
        Key=key,
        Body=hostile_pdfs.slow_to_parse(),
        ServerSideEncryption="AES256",
    )
    up = lambda: _healthy(own_extractor, mesh)  # noqa: E731
    assert await asyncio.to_thread(eventually_sync, up, 30)
    workers = children_of(_forkserver(own_extractor))

    call = asyncio.create_task(_extract(own_extractor.url, key, mesh, forge))
    # Under way once a worker spends CPU time on it.
    assert await eventually(lambda: any(_cpu_ticks(pid) > 10 for pid in workers))
    below = descendants_of(own_extractor.process.pid)
    own_extractor.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(own_extractor.process.wait, 30)
    answer = await call

    events = [line["event"] for line in own_extractor.log()]
    assert code == 0
    # The forkserver and resource tracker end once they notice.
    assert await eventually(lambda: all_gone(below))
    assert "extraction.cancelled" in events
    assert "extraction.pool_closed" in events
    assert "CancelledError" not in own_extractor.text()
    assert "Traceback" not in own_extractor.text()
    # The caller hears "retry later", not a dropped connection.
    assert answer.status_code == 200
    assert answer.json()["error"] == {
        "code": -32013,
        "message": "the extractor is shutting down",
        "data": {"dependency": "extractor"},
    }


def _healthy(extractor: _Extractor, mesh: LocalMesh) -> bool:
    try:
        with httpx.Client(verify=mesh.tls_context(), timeout=2) as http:
            return http.get(f"{extractor.url}/health").status_code == 200
    except httpx.HTTPError:
        return False


def _forkserver(extractor: _Extractor) -> int:
    (forkserver,) = [
        pid
        for pid in children_of(extractor.process.pid)
        if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return forkserver


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])


async def _extract(
    url: str, key: str, mesh: LocalMesh, forge: TokenForge
) -> httpx.Response:
    dpop = DpopKey()
    token = forge.bound("extractor", ["orchestrator"], dpop)
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "extract_document",
            "params": {"s3_key": key},
        }
    ).encode()
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": dpop.proof("POST", f"{url}/a2a", access_token=token, body=body),
        "Content-Type": "application/json",
    }
    context = client_context(mesh.ca_file, certificate=mesh.client_certificate)
    async with httpx.AsyncClient(verify=context, timeout=60) as http:
        return await http.post(f"{url}/a2a", content=body, headers=headers)
