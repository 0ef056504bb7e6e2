"""Runs pipelines in the background, a bounded number at a time.

A task must never be lost: when recording its end fails (the database was
down), the task stays unfinished in the table, and the watch loop runs it
again once it has been left alone for a while. Every step is safe to repeat.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from services.orchestrator.pipeline import Pipeline
from services.orchestrator.tasks import TaskRepository
from shared.errors import DependencyUnavailable
from shared.logging import correlation_id, log_event

logger = logging.getLogger(__name__)


class TaskRunner:
    def __init__(
        self, pipeline: Pipeline, tasks: TaskRepository, *, concurrency: int
    ) -> None:
        self._pipeline = pipeline
        self._tasks = tasks
        self._slots = asyncio.Semaphore(concurrency)
        # The pipelines running here, by task.
        self._jobs: dict[uuid.UUID, asyncio.Task[None]] = {}

    def start(self, task_id: uuid.UUID, s3_key: str, cid: str | None) -> bool:
        """Schedule a task unless it is already running here; whether it was."""
        if task_id in self._jobs:
            return False
        job = asyncio.create_task(self._run(task_id, s3_key, cid))
        self._jobs[task_id] = job
        job.add_done_callback(lambda _: self._jobs.pop(task_id, None))
        return True

    def cancel(self, task_id: uuid.UUID) -> None:
        """Stop the task's pipeline if it runs here; elsewhere it stops at its
        next stage, which finds the task canceled."""
        job = self._jobs.get(task_id)
        if job is not None:
            job.cancel()

    def resume(self, unfinished: list[dict[str, Any]]) -> None:
        """Run again the unfinished tasks that are not running here."""
        resumed = sum(
            self.start(uuid.UUID(task["task_id"]), task["s3_key"], None)
            for task in unfinished
        )
        if resumed:
            log_event(logger, "tasks.resumed", count=resumed)

    async def watch(self, *, interval: float, stale_after: float) -> None:
        """Forever: resume tasks left unfinished for ``stale_after`` seconds."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.resume(await self._tasks.stale(stale_after, limit=1000))
            except DependencyUnavailable:
                log_event(logger, "tasks.watch_skipped", level=logging.WARNING)

    async def _run(self, task_id: uuid.UUID, s3_key: str, cid: str | None) -> None:
        correlation_id.set(cid)
        async with self._slots:
            await self._guarded(task_id, s3_key)

    async def _guarded(self, task_id: uuid.UUID, s3_key: str) -> None:
        try:
            await self._pipeline.run(task_id, s3_key)
        except DependencyUnavailable as exc:
            # Our own database is away: the task cannot even be marked, so it
            # stays unfinished and the watch loop runs it again later.
            log_event(
                logger,
                "task.deferred",
                level=logging.WARNING,
                task_id=str(task_id),
                dependency=exc.dependency,
            )
        except Exception:
            # A bug: record it rather than leave the task looking busy.
            log_event(
                logger,
                "task.crashed",
                level=logging.ERROR,
                exc_info=True,
                task_id=str(task_id),
            )
            await self._mark_failed(task_id)

    async def _mark_failed(self, task_id: uuid.UUID) -> None:
        try:
            await self._tasks.fail(
                task_id,
                reason_code="internal_error",
                reason="The orchestrator hit an internal error; see its log",
                timings={},
            )
        except DependencyUnavailable:
            log_event(
                logger, "task.unrecorded", level=logging.ERROR, task_id=str(task_id)
            )

    async def stop(self, grace_seconds: float) -> None:
        """Let running pipelines finish for a while, then cancel the rest."""
        if not self._jobs:
            return
        _, pending = await asyncio.wait(set(self._jobs.values()), timeout=grace_seconds)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        log_event(logger, "runner.stopped", cancelled=len(pending))
