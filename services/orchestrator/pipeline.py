"""One document through extractor → validator → archivist, recorded as a task.

Whatever happens, the task ends ``completed`` with the document id or
``failed`` with a reason a person can act on. A stage that failed because
something was down is not the document's fault: the task is let go and tried
again after a backoff, and fails only when the tries run out.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from services.orchestrator.tasks import Status, TaskRepository
from shared.client import AgentClient
from shared.errors import (
    DependencyUnavailable,
    DocumentNotFound,
    DocumentRejected,
    MeshError,
    RateLimited,
    RemoteError,
)
from shared.logging import log_event
from shared.retry import Backoff

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Agents:
    extractor: AgentClient
    validator: AgentClient
    archivist: AgentClient


@dataclass(frozen=True)
class TaskRetry:
    """How often a task is tried when its dependencies are down: ``attempts``
    in all, with a backoff between them (about four minutes by default)."""

    attempts: int = 12
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0))


class StageFailed(Exception):
    """A stage could not finish; carries the reason the task will show, and
    whether trying again later may succeed."""

    def __init__(self, reason_code: str, reason: str, *, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason
        self.retry = retry


class TaskEnded(Exception):
    """The task ended (was canceled) while its pipeline ran: stop there."""

    def __init__(self, task_id: uuid.UUID) -> None:
        super().__init__(str(task_id))


class Pipeline:
    def __init__(
        self, agents: Agents, tasks: TaskRepository, retry: TaskRetry | None = None
    ) -> None:
        self._agents = agents
        self._tasks = tasks
        self.retry = retry or TaskRetry()

    async def run(self, task_id: uuid.UUID, s3_key: str, *, attempt: int = 1) -> None:
        """Process one task to its end, or to its next try; never raises for
        a document's fault. ``attempt`` counts the tries, this one included."""
        timings: dict[str, float] = {}
        steps: list[dict[str, Any]] = []
        started = time.perf_counter()
        try:
            result = await self._stages(task_id, s3_key, timings, steps)
        except TaskEnded:
            log_event(logger, "task.stopped", task_id=str(task_id), s3_key=s3_key)
            return
        except StageFailed as failure:
            if failure.retry and attempt < self.retry.attempts:
                await self._defer(task_id, failure, attempt)
                return
            if failure.retry:
                failure.reason += f" (gave up after {attempt} attempts)"
            timings["total_ms"] = _ms_since(started)
            if not await self._tasks.fail(
                task_id,
                reason_code=failure.reason_code,
                reason=failure.reason,
                timings=timings,
            ):
                # Canceled meanwhile, or taken over: its end is not ours.
                log_event(logger, "task.stopped", task_id=str(task_id), s3_key=s3_key)
                return
            log_event(
                logger,
                "task.failed",
                level=logging.WARNING,
                task_id=str(task_id),
                s3_key=s3_key,
                reason_code=failure.reason_code,
                attempt=attempt,
            )
            return

        timings["total_ms"] = _ms_since(started)
        if not await self._tasks.complete(
            task_id,
            document_id=uuid.UUID(result["document_id"]),
            result=result,
            timings=timings,
        ):
            log_event(logger, "task.stopped", task_id=str(task_id), s3_key=s3_key)
            return
        log_event(
            logger,
            "task.completed",
            task_id=str(task_id),
            s3_key=s3_key,
            document_id=result["document_id"],
            total_ms=timings["total_ms"],
        )

    async def _defer(
        self, task_id: uuid.UUID, failure: StageFailed, attempt: int
    ) -> None:
        delay = self.retry.backoff.delay(attempt - 1)
        if not await self._tasks.defer(task_id, error=failure.reason, delay=delay):
            log_event(logger, "task.stopped", task_id=str(task_id))
            return
        log_event(
            logger,
            "task.retry_later",
            level=logging.WARNING,
            task_id=str(task_id),
            reason_code=failure.reason_code,
            attempt=attempt,
            delay_s=round(delay, 1),
        )

    async def _stages(
        self,
        task_id: uuid.UUID,
        s3_key: str,
        timings: dict[str, float],
        steps: list[dict[str, Any]],
    ) -> dict[str, Any]:
        extraction = await self._stage(
            task_id,
            "extracting",
            self._agents.extractor,
            "extract_document",
            {"s3_key": s3_key},
            timings,
            steps,
        )

        document_type = extraction["document_type"]
        validation = await self._stage(
            task_id,
            "validating",
            self._agents.validator,
            "validate_document",
            {"document_type": document_type, "extracted_data": extraction},
            timings,
            steps,
        )

        archived = await self._stage(
            task_id,
            "archiving",
            self._agents.archivist,
            "archive_document",
            {
                "task_id": str(task_id),
                "extraction": extraction,
                "validation": validation,
                "steps": steps,
            },
            timings,
            steps,
        )
        return {
            "document_id": archived["document_id"],
            "document_type": document_type,
            "format": extraction["format"],
            "page_count": extraction.get("page_count"),
            "validation_score": validation["score"],
            "validation_passed": validation["passed"],
            "key_fields": extraction.get("key_fields"),
        }

    async def _stage(
        self,
        task_id: uuid.UUID,
        status: Status,
        agent: AgentClient,
        method: str,
        params: dict[str, Any],
        timings: dict[str, float],
        steps: list[dict[str, Any]],
    ) -> Any:
        if not await self._tasks.enter(task_id, status):
            raise TaskEnded(task_id)
        started = time.perf_counter()
        try:
            result = await agent.call(method, params)
        except MeshError as error:
            timings[f"{status}_ms"] = _ms_since(started)
            raise _failure(agent.name, error) from error

        duration = _ms_since(started)
        timings[f"{status}_ms"] = duration
        steps.append(
            {"step": method, "status": "ok", "duration_ms": duration, "detail": {}}
        )
        return result


def _failure(agent: str, error: MeshError) -> StageFailed:
    """The reason a person reads for an error a stage returned."""
    if isinstance(error, DependencyUnavailable):
        # The agent itself, or what this process needs to call it (a token).
        dependency = error.dependency.replace("-", " ")
        return StageFailed(
            "dependency_unavailable", f"The {dependency} is unavailable", retry=True
        )
    if not isinstance(error, RemoteError):
        return StageFailed("internal_error", f"The {agent} step failed")

    data = error.data if isinstance(error.data, dict) else {}
    if error.remote_code == DocumentNotFound.code:
        return StageFailed(data.get("reason", "missing_object"), error.message)
    if error.remote_code == DocumentRejected.code:
        return StageFailed(data.get("reason", "rejected"), error.message)
    if data.get("reason") == "too_large":
        return StageFailed(
            "too_large",
            f"The extracted data is too large for the {agent} to accept",
        )
    if error.remote_code == DependencyUnavailable.code:
        dependency = data.get("dependency", "a dependency")
        reason = (
            f"The {agent} was busy: {error.message}"
            if dependency == agent
            else f"The {agent} could not reach {dependency}"
        )
        return StageFailed("dependency_unavailable", reason, retry=True)
    if error.remote_code == RateLimited.code:
        return StageFailed(
            "dependency_unavailable", f"The {agent} asked to slow down", retry=True
        )
    return StageFailed(
        "agent_error",
        f"The {agent} refused the call: {error.message} ({error.remote_code})",
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
