"""Runs pipelines in the background, a bounded number at a time."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from services.orchestrator.pipeline import Pipeline
from services.orchestrator.tasks import TaskRepository
from shared.logging import correlation_id, log_event

logger = logging.getLogger(__name__)


class TaskRunner:
    def __init__(
        self, pipeline: Pipeline, tasks: TaskRepository, *, concurrency: int
    ) -> None:
        self._pipeline = pipeline
        self._tasks = tasks
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()

    def start(self, task_id: uuid.UUID, s3_key: str, cid: str | None) -> None:
        """Schedule a task; the caller does not wait for it."""
        job = asyncio.create_task(self._run(task_id, s3_key, cid))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def resume(self, unfinished: list[dict[str, Any]]) -> None:
        """Run again the tasks a previous process left unfinished.

        Every step is safe to repeat: the archivist keeps one row per document
        and one log row per task and step.
        """
        for task in unfinished:
            self.start(uuid.UUID(task["task_id"]), task["s3_key"], None)
        if unfinished:
            log_event(logger, "tasks.resumed", count=len(unfinished))

    async def _run(self, task_id: uuid.UUID, s3_key: str, cid: str | None) -> None:
        correlation_id.set(cid)
        async with self._slots:
            try:
                await self._pipeline.run(task_id, s3_key)
            except Exception:
                # Our own fault (the database, a bug): record it rather than
                # leave the task looking busy forever.
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
        except Exception:
            log_event(
                logger, "task.unrecorded", level=logging.ERROR, task_id=str(task_id)
            )

    async def stop(self, grace_seconds: float) -> None:
        """Let running pipelines finish for a while, then cancel the rest."""
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=grace_seconds)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        log_event(logger, "runner.stopped", cancelled=len(pending))
