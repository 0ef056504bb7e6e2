"""The extraction pool: time and memory limits, crashes, cancellation,
concurrency and shutdown, with real worker processes and small limits."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.extractor.extraction import extract
from services.extractor.pool import ExtractionPool, NoLiveWorker, open_pool
from services.extractor.worker import Job, run_extraction
from services.orchestrator.settings import OrchestratorSettings
from shared.errors import DependencyUnavailable, DocumentRejected, InternalError
from tests.helpers import hostile_pdfs
from tests.helpers.corpus import CORPUS
from tests.helpers.extraction_jobs import misbehave
from tests.helpers.extractor import extractor_settings as settings
from tests.helpers.processes import (
    all_gone,
    children_of,
    descendants_of,
    eventually,
    eventually_sync,
    gone,
    parent_of,
)

ROOT = Path(__file__).resolve().parents[2]
INVOICE = CORPUS / "pdf" / "sample_invoice.pdf"

Pools = Callable[..., AbstractAsyncContextManager[ExtractionPool]]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MESH_"):
            monkeypatch.delenv(name)


@pytest.fixture
def pools() -> Pools:
    """Opens a pool with small limits; ``job`` replaces the real extraction."""

    def make(
        job: Job = misbehave, **overrides: Any
    ) -> AbstractAsyncContextManager[ExtractionPool]:
        limits = {
            "extract_workers": 2,
            "extract_timeout_seconds": 5.0,
            "extract_queue_seconds": 5.0,
        }
        return open_pool(settings(**(limits | overrides)), job=job)

    return make


async def run(pool: ExtractionPool, document: bytes | str) -> dict[str, Any]:
    data = document.encode() if isinstance(document, str) else document
    return await pool.extract(data, s3_key="uploads/doc.pdf", content_type=None)


async def rejection(pool: ExtractionPool, document: bytes | str) -> DocumentRejected:
    with pytest.raises(DocumentRejected) as refused:
        await run(pool, document)
    assert refused.value.message
    return refused.value


async def hang(pool: ExtractionPool, tmp_path: Path) -> tuple[asyncio.Task[Any], int]:
    """Start a job that never finishes; its worker's pid once it runs."""
    started = tmp_path / f"hanging-{uuid.uuid4().hex}"
    job = asyncio.create_task(run(pool, f"hang {started}"))
    assert await eventually(started.exists)
    return job, int(started.read_text())


@pytest.fixture
async def impatient_pool(pools: Pools) -> AsyncIterator[ExtractionPool]:
    async with pools(extract_timeout_seconds=0.5) as pool:
        yield pool


# --- the real extraction -------------------------------------------------


async def test_pool_returns_the_extraction_as_plain_data(pools: Pools) -> None:
    data = INVOICE.read_bytes()

    async with pools(job=run_extraction) as pool:
        result = await pool.extract(
            data, s3_key="uploads/invoice.pdf", content_type="application/pdf"
        )

    expected = extract(data, s3_key="uploads/invoice.pdf")
    assert result == expected.model_dump(mode="json")
    assert result["key_fields"]["invoice_number"] == "INV-2025-001"


async def test_extraction_rejection_keeps_its_reason_and_its_worker(
    pools: Pools,
) -> None:
    async with pools(job=run_extraction, extract_workers=1) as pool:
        (before,) = pool.pids
        refused = await rejection(pool, b"%PDF-1.4")

        assert refused.reason == "unreadable_pdf"
        assert pool.pids == [before]


async def test_slow_pdf_is_stopped_at_the_time_limit(pools: Pools) -> None:
    async with pools(job=run_extraction, extract_timeout_seconds=0.5) as pool:
        refused = await rejection(pool, hostile_pdfs.slow_to_parse())

    assert refused.reason == "extraction_timeout"
    assert refused.message == (
        "Reading the document took longer than 0.5 seconds; it was stopped"
    )


async def test_decompression_bomb_over_the_memory_limit_is_too_complex(
    pools: Pools,
) -> None:
    # pypdf would stop inflating at 75 MB; 160 MiB of address space is less
    # than that needs, so the worker's MemoryError decides.
    async with pools(job=run_extraction, extract_memory_mib=160) as pool:
        refused = await rejection(pool, hostile_pdfs.inflating())

    assert refused.reason == "too_complex"
    assert refused.message == (
        "The document needs more memory than the extractor allows (160 MiB) to be read"
    )


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (hostile_pdfs.deeply_nested(), "too_complex"),
        (hostile_pdfs.inflating(), "too_complex"),
        (hostile_pdfs.many_pages(), "too_large"),
    ],
    ids=["deep-nesting", "decompression-bomb", "page-count"],
)
async def test_hostile_pdfs_are_rejected_with_their_reason(
    pools: Pools, document: bytes, reason: str
) -> None:
    async with pools(job=run_extraction, extract_workers=1) as pool:
        (worker,) = pool.pids
        refused = await rejection(pool, document)

        assert refused.reason == reason
        assert pool.pids == [worker]


# --- time limit ----------------------------------------------------------


async def test_job_past_the_time_limit_kills_and_replaces_its_worker(
    impatient_pool: ExtractionPool, tmp_path: Path
) -> None:
    job, pid = await hang(impatient_pool, tmp_path)

    with pytest.raises(DocumentRejected) as refused:
        await job

    assert refused.value.reason == "extraction_timeout"
    assert await eventually(lambda: gone(pid))
    assert await eventually(lambda: impatient_pool.alive == 2)
    assert pid not in impatient_pool.pids
    assert (await run(impatient_pool, "echo"))["pid"] != pid


# --- memory limit --------------------------------------------------------


async def test_job_over_the_memory_limit_is_too_complex_and_its_worker_replaced(
    pools: Pools,
) -> None:
    async with pools(extract_workers=1, extract_memory_mib=160) as pool:
        (before,) = pool.pids
        refused = await rejection(pool, "allocate 512")
        assert await eventually(lambda: gone(before))
        after = await run(pool, "echo")

    assert refused.reason == "too_complex"
    assert "160 MiB" in refused.message
    assert after["pid"] != before


async def test_allocation_within_the_memory_limit_succeeds(pools: Pools) -> None:
    async with pools(extract_workers=1, extract_memory_mib=256) as pool:
        result = await run(pool, "allocate 64")

    assert result["allocated"] == 64 * 1024 * 1024


# --- crashes and bugs ----------------------------------------------------


async def test_crashing_worker_ends_only_its_own_document(
    pools: Pools, tmp_path: Path
) -> None:
    async with pools() as pool:
        # The healthy job is mid-way (waiting for a second arrival, which
        # the test makes) while the other worker crashes.
        healthy = asyncio.create_task(run(pool, f"rendezvous {tmp_path} 2"))
        assert await eventually(lambda: any(tmp_path.iterdir()))
        refused = await rejection(pool, "crash")
        (tmp_path / "test").touch()
        result = await healthy
        assert await eventually(lambda: pool.alive == 2)

    assert refused.reason == "extraction_crashed"
    assert "killed by SIGSEGV" in refused.message
    assert result["s3_key"] == "uploads/doc.pdf"


async def test_worker_killed_while_idle_is_replaced_not_blamed(
    pools: Pools,
) -> None:
    async with pools(extract_workers=1) as pool:
        (before,) = pool.pids
        os.kill(before, signal.SIGKILL)
        assert await eventually(lambda: gone(before))

        result = await run(pool, "echo")

    assert result["pid"] != before


async def test_bug_in_the_extraction_is_an_internal_error_with_the_trace_logged(
    pools: Pools, caplog: pytest.LogCaptureFixture
) -> None:
    async with pools(extract_workers=1) as pool:
        (worker,) = pool.pids
        with pytest.raises(InternalError):
            await run(pool, "bug")
        still = pool.pids

    (record,) = [r for r in caplog.records if r.getMessage() == "extraction.failed"]
    fields = record.mesh_fields  # type: ignore[attr-defined]
    assert fields["error"] == "ValueError"
    assert "a bug in the extraction code" in fields["worker_traceback"]
    assert still == [worker]


# --- queueing and concurrency ----------------------------------------------


async def test_jobs_run_at_once_in_separate_workers(
    pools: Pools, tmp_path: Path
) -> None:
    # Each job waits until both run: one worker at a time would never meet.
    async with pools(extract_workers=2) as pool:
        first, second = await asyncio.gather(
            run(pool, f"rendezvous {tmp_path} 2"),
            run(pool, f"rendezvous {tmp_path} 2"),
        )

    assert first["pid"] != second["pid"]


async def test_waiting_for_a_free_worker_is_bounded(
    pools: Pools, tmp_path: Path
) -> None:
    async with pools(extract_workers=1, extract_queue_seconds=0.2) as pool:
        job, _ = await hang(pool, tmp_path)
        with pytest.raises(DependencyUnavailable) as busy:
            await run(pool, "echo")
        job.cancel()

    assert busy.value.dependency == "extractor"
    assert busy.value.message == "all extraction workers are busy"
    assert busy.value.code == -32013


async def test_a_queued_job_runs_once_a_worker_is_free(
    pools: Pools, tmp_path: Path
) -> None:
    async with pools(extract_workers=1, extract_timeout_seconds=0.5) as pool:
        job, pid = await hang(pool, tmp_path)
        queued = asyncio.create_task(run(pool, "echo"))

        with pytest.raises(DocumentRejected):
            await job
        result = await queued

    assert result["pid"] != pid


# --- cancellation and shutdown -------------------------------------------


async def test_cancelled_job_kills_its_worker_quietly(
    pools: Pools, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with pools() as pool:
        job, pid = await hang(pool, tmp_path)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert await eventually(lambda: gone(pid))
        assert await eventually(lambda: pool.alive == 2)

    events = [record.getMessage() for record in caplog.records]
    assert "extraction.cancelled" in events
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "CancelledError" not in caplog.text


async def test_close_stops_every_worker_and_leaves_no_child(
    pools: Pools, tmp_path: Path
) -> None:
    async with pools(extract_workers=3) as pool:
        pids = pool.pids
        job, busy = await hang(pool, tmp_path)
        forkserver = parent_of(busy)
        assert forkserver is not None

    with pytest.raises(DependencyUnavailable) as stopped:
        await job
    assert stopped.value.message == "the extractor is shutting down"
    assert all_gone(pids)
    assert children_of(forkserver) == set()


async def test_no_job_is_taken_once_the_pool_is_closed(pools: Pools) -> None:
    async with pools() as pool:
        pass

    with pytest.raises(DependencyUnavailable) as stopped:
        await run(pool, "echo")
    assert stopped.value.message == "the extractor is shutting down"
    assert pool.alive == 0


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from services.extractor.pool import open_pool
    from tests.helpers.extraction_jobs import misbehave
    from tests.helpers.extractor import extractor_settings

    async def main(started: Path) -> None:
        settings = extractor_settings(extract_workers=2)
        async with open_pool(settings, job=misbehave) as pool:
            job = asyncio.create_task(
                pool.extract(f"hang {started}".encode(), s3_key="k", content_type=None)
            )
            while not started.exists():
                await asyncio.sleep(0.02)
            print(json.dumps(pool.pids), flush=True)
            await job

    asyncio.run(main(Path(sys.argv[1])))
    """
)


def test_workers_exit_when_the_extractor_is_killed(tmp_path: Path) -> None:
    # One worker idle, one in the middle of a document that never ends.
    with subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(tmp_path / "started")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("MESH_")},
    ) as extractor:
        try:
            assert extractor.stdout is not None
            workers = json.loads(extractor.stdout.readline())
            below = descendants_of(extractor.pid)
            assert set(workers) <= below
        finally:
            extractor.kill()

    assert eventually_sync(lambda: all_gone(below))


# --- readiness -----------------------------------------------------------


async def test_readiness_fails_with_no_live_worker_then_recovers(
    pools: Pools,
) -> None:
    async with pools(extract_workers=1) as pool:
        (before,) = pool.pids
        await pool.check()
        os.kill(before, signal.SIGKILL)
        assert await eventually(lambda: gone(before))

        with pytest.raises(NoLiveWorker):
            await pool.check()
        # The check itself started a replacement.
        assert await eventually(lambda: pool.alive == 1)
        await pool.check()


# --- settings ------------------------------------------------------------


def test_defaults_keep_a_document_within_the_orchestrators_timeout() -> None:
    defaults = settings()
    orchestrator = OrchestratorSettings.model_fields["http_timeout_seconds"]

    assert defaults.extract_workers == 2
    assert defaults.extract_timeout_seconds == 20
    assert defaults.extract_queue_seconds == 10
    assert defaults.extract_memory_mib == 768
    assert defaults.extract_timeout_seconds < orchestrator.default


def test_memory_limit_must_leave_room_for_the_largest_document() -> None:
    with pytest.raises(ValidationError) as refused:
        settings(extract_memory_mib=150, max_document_bytes=25 * 1024 * 1024)

    assert "MESH_EXTRACT_MEMORY_MIB must be at least 153" in str(refused.value)
    assert settings(extract_memory_mib=153).extract_memory_mib == 153


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_EXTRACT_WORKERS", "4")
    monkeypatch.setenv("MESH_EXTRACT_TIMEOUT_SECONDS", "7.5")
    monkeypatch.setenv("MESH_EXTRACT_QUEUE_SECONDS", "3")
    monkeypatch.setenv("MESH_EXTRACT_MEMORY_MIB", "512")

    read = settings()

    assert (read.extract_workers, read.extract_timeout_seconds) == (4, 7.5)
    assert (read.extract_queue_seconds, read.extract_memory_mib) == (3, 512)
