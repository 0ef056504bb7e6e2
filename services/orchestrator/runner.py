"""Runs pipelines in the background, a bounded number at a time, for the tasks
this replica holds the lease of.

A task must never be lost nor run by two replicas at once. This replica runs
the tasks it accepts and the ones it claims from the table: tasks nobody
holds, or whose holder let the lease expire (it crashed, or lost the
database). While a pipeline runs its lease is renewed; a lease found taken
stops the pipeline. Every step of a pipeline is safe to repeat, so a task
taken over half-way is simply run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from services.orchestrator.pipeline import Pipeline
from services.orchestrator.tasks import Claimed, TaskRepository
from shared.errors import DependencyUnavailable
from shared.logging import correlation_id, log_event

logger = logging.getLogger(__name__)


class TaskRunner:
    def __init__(
        self,
        pipeline: Pipeline,
        tasks: TaskRepository,
        *,
        concurrency: int,
    ) -> None:
        self._pipeline = pipeline
        self._tasks = tasks
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        # The pipelines running here, by task.
        self._jobs: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._stopping = False

    def has_room(self) -> bool:
        """Whether a task accepted now would start at once here; if not, it
        is left in the table for whichever replica is free first."""
        return not self._stopping and len(self._jobs) < self._concurrency

    def start(self, claimed: Claimed) -> bool:
        """Run a task this replica holds, unless it runs here already."""
        if claimed.task_id in self._jobs or self._stopping:
            return False
        job = asyncio.create_task(self._run(claimed))
        self._jobs[claimed.task_id] = job
        job.add_done_callback(lambda _: self._jobs.pop(claimed.task_id, None))
        return True

    def cancel(self, task_id: uuid.UUID) -> None:
        """Stop the task's pipeline if it runs here; elsewhere it stops at its
        next stage, which finds the task canceled."""
        job = self._jobs.get(task_id)
        if job is not None:
            job.cancel()

    async def claim(self) -> int:
        """Take as many free tasks as there are idle slots; how many."""
        if not self.has_room():
            return 0
        claimed = await self._tasks.claim(self._concurrency - len(self._jobs))
        started = sum(self.start(task) for task in claimed)
        if started:
            log_event(logger, "tasks.claimed", count=started)
        return started

    async def dispatch(self, *, interval: float) -> None:
        """Forever: claim free tasks, and keep the leases of running ones.

        Leases are renewed a few times per lease period, so that a replica
        that misses one renewal (a slow database) keeps its tasks."""
        while True:
            try:
                await self.claim()
                await self.keep_leases()
            except DependencyUnavailable:
                log_event(logger, "tasks.dispatch_skipped", level=logging.WARNING)
            await asyncio.sleep(interval)

    async def keep_leases(self) -> None:
        """Renew the leases of the running tasks; stop any pipeline whose
        task another replica took over or that ended (was canceled)."""
        running = list(self._jobs)
        held = await self._tasks.renew(running)
        for task_id in running:
            job = self._jobs.get(task_id)
            if task_id not in held and job is not None and not job.done():
                log_event(
                    logger,
                    "task.lease_lost",
                    level=logging.WARNING,
                    task_id=str(task_id),
                )
                job.cancel()

    async def _run(self, claimed: Claimed) -> None:
        correlation_id.set(claimed.correlation_id)
        async with self._slots:
            await self._guarded(claimed)

    async def _guarded(self, claimed: Claimed) -> None:
        task_id = claimed.task_id
        try:
            # The same bound as the pipeline's tries after an outage.
            if claimed.attempts > self._pipeline.retry.attempts:
                await self._give_up(claimed)
                return
            await self._pipeline.run(task_id, claimed.s3_key, attempt=claimed.attempts)
        except DependencyUnavailable as exc:
            # Our own database is away: the task cannot even be marked, so it
            # stays unfinished, and is claimed again once its lease expires.
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
            await self._fail(
                task_id,
                "internal_error",
                "The orchestrator hit an internal error; see its log",
            )

    async def _give_up(self, claimed: Claimed) -> None:
        # Started this often without ever ending: whatever stops it (a replica
        # crashing on it) will do so again.
        await self._fail(
            claimed.task_id,
            "too_many_attempts",
            f"The task was started {claimed.attempts - 1} times without finishing",
        )

    async def _fail(self, task_id: uuid.UUID, reason_code: str, reason: str) -> None:
        try:
            await self._tasks.fail(
                task_id, reason_code=reason_code, reason=reason, timings={}
            )
        except DependencyUnavailable:
            log_event(
                logger, "task.unrecorded", level=logging.ERROR, task_id=str(task_id)
            )

    def stop_claiming(self) -> None:
        """Take no more tasks: this replica is stopping."""
        self._stopping = True

    async def stop(self, grace_seconds: float) -> None:
        """Take no more tasks, let running pipelines finish for a while, then
        stop the rest and hand their tasks back for another replica."""
        self.stop_claiming()
        if not self._jobs:
            log_event(logger, "runner.stopped", cancelled=0, handed_back=0)
            return
        _, pending = await asyncio.wait(set(self._jobs.values()), timeout=grace_seconds)
        unfinished = [task_id for task_id, job in self._jobs.items() if job in pending]
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        released = 0
        with contextlib.suppress(DependencyUnavailable):
            released = await self._tasks.release(unfinished)
        log_event(
            logger, "runner.stopped", cancelled=len(pending), handed_back=released
        )
