"""Pipeline with stand-in agents and the real tasks table: an outage defers
the task by the backoff and fails it only at the last attempt; a document's
own fault fails it at once; a pipeline whose lease is gone does nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.orchestrator.pipeline import Pipeline, TaskRetry
from services.orchestrator.tasks import Claimed, TaskRepository
from shared.database import Database
from shared.errors import DependencyUnavailable, RemoteError
from shared.retry import Backoff
from tests.orchestrator.kit import (
    agents,
    calls,
    eventually,
    new_task,
    raising,
    row,
    unique_key,
)

pytestmark = pytest.mark.integration

RETRY = TaskRetry(attempts=4, backoff=Backoff(base=2.0, cap=5.0))


async def claimed_at(tasks: TaskRepository, attempt: int) -> Claimed:
    """A task this replica holds at its ``attempt``-th try: the earlier
    tries were claimed and deferred."""
    await new_task(tasks, lease=False)
    for _ in range(attempt - 1):
        (earlier,) = await tasks.claim(1)
        assert await tasks.defer(earlier.task_id, error="earlier try", delay=0)
    (claimed,) = await tasks.claim(1)
    assert claimed.attempts == attempt
    return claimed


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 5.0)], ids=["1st", "2nd", "3rd"]
)
async def test_outage_defers_the_task_by_the_backoff_of_its_attempt(
    database_a: Database, attempt: int, ceiling: float
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    claimed = await claimed_at(tasks, attempt)
    pipeline = Pipeline(
        agents(extractor=raising(DependencyUnavailable("extractor"))), tasks, RETRY
    )

    await pipeline.run(claimed.task_id, claimed.s3_key, attempt=attempt)

    stored = await row(database_a, claimed.task_id)
    assert stored["status"] == "extracting"
    assert stored["last_error"] == "The extractor is unavailable"
    assert stored["lease_owner"] is None
    assert stored["attempts"] == attempt
    assert stored["reason_code"] is None
    assert stored["finished_at"] is None
    wait = (stored["not_before"] - stored["updated_at"]).total_seconds()
    assert ceiling / 2 <= wait <= ceiling


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            DependencyUnavailable("identity-provider"),
            "The identity provider is unavailable",
        ),
        (
            RemoteError(-32013, "unavailable", {"dependency": "database"}),
            "The extractor could not reach database",
        ),
        (RemoteError(-32003, "rate limited"), "The extractor asked to slow down"),
    ],
    ids=["own-token", "agent-dependency", "agent-rate-limit"],
)
async def test_other_outages_defer_the_task_too(
    database_a: Database, error: Exception, reason: str
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    task_id = await new_task(tasks)
    pipeline = Pipeline(agents(extractor=raising(error)), tasks, RETRY)

    await pipeline.run(task_id, "incoming/a.txt", attempt=1)

    stored = await row(database_a, task_id)
    assert (stored["status"], stored["last_error"]) == ("extracting", reason)
    assert stored["not_before"] is not None


async def test_outage_at_the_last_attempt_fails_the_task_saying_it_gave_up(
    database_a: Database,
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    claimed = await claimed_at(tasks, RETRY.attempts)
    pipeline = Pipeline(
        agents(validator=raising(DependencyUnavailable("validator"))), tasks, RETRY
    )

    await pipeline.run(claimed.task_id, claimed.s3_key, attempt=RETRY.attempts)

    stored = await row(database_a, claimed.task_id)
    assert stored["status"] == "failed"
    assert stored["stage"] == "validating"
    assert stored["reason_code"] == "dependency_unavailable"
    assert stored["reason"] == "The validator is unavailable (gave up after 4 attempts)"
    assert stored["lease_owner"] is None
    assert stored["not_before"] is None
    assert stored["finished_at"] is not None


async def test_a_documents_own_fault_fails_at_the_first_attempt(
    database_a: Database,
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    task_id = await new_task(tasks)
    missing = RemoteError(-32010, "No object at that key", {"reason": "missing_object"})
    pipeline = Pipeline(agents(extractor=raising(missing)), tasks, RETRY)

    await pipeline.run(task_id, "incoming/gone.txt", attempt=1)

    stored = await row(database_a, task_id)
    assert (stored["status"], stored["reason_code"], stored["reason"]) == (
        "failed",
        "missing_object",
        "No object at that key",
    )
    assert stored["not_before"] is None


async def test_deferred_task_runs_again_and_completes_once_the_agent_is_back(
    database_a: Database,
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    outage = [DependencyUnavailable("archivist")]

    async def archivist(method: str, params: dict[str, Any]) -> Any:
        if outage:
            raise outage.pop()
        return {"document_id": str(uuid.uuid5(uuid.NAMESPACE_URL, params["task_id"]))}

    stand_ins = agents(archivist=archivist)
    pipeline = Pipeline(
        stand_ins, tasks, TaskRetry(attempts=3, backoff=Backoff(base=0.1, cap=0.1))
    )
    key = unique_key()
    task_id = await new_task(tasks, key)

    await pipeline.run(task_id, key, attempt=1)
    assert (await row(database_a, task_id))["status"] == "archiving"
    (again,) = await eventually(lambda: tasks.claim(1))
    await pipeline.run(again.task_id, again.s3_key, attempt=again.attempts)

    stored = await row(database_a, task_id)
    assert (stored["status"], stored["attempts"]) == ("completed", 2)
    assert stored["document_id"] == uuid.uuid5(uuid.NAMESPACE_URL, str(task_id))
    # The whole pipeline ran again: every stage is safe to repeat.
    assert len(calls(stand_ins.extractor)) == 2
    assert len(calls(stand_ins.archivist)) == 2


async def test_pipeline_of_a_replica_that_lost_the_lease_does_nothing(
    database_a: Database, database_b: Database
) -> None:
    a = TaskRepository(database_a, owner="replica-a")
    b = TaskRepository(database_b, owner="replica-b")
    task_id = await new_task(b)
    before = await row(database_a, task_id)
    stand_ins = agents()

    await Pipeline(stand_ins, a, RETRY).run(task_id, "incoming/a.txt", attempt=1)

    assert calls(stand_ins.extractor) == []
    assert await row(database_a, task_id) == before
