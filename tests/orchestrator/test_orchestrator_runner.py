"""TaskRunner with stand-in agents and the real tasks table: it claims only
what it has room for, gives up on a task started too often, stops a pipeline
whose lease another replica took, retries an outage through its own claims
until the tries run out, and on stop hands back exactly what did not finish."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.orchestrator.methods import Orchestrator
from services.orchestrator.pipeline import Agents, Pipeline, TaskRetry
from services.orchestrator.runner import TaskRunner
from services.orchestrator.tasks import Claimed, TaskRepository
from shared.database import Database
from shared.errors import DependencyUnavailable
from shared.retry import Backoff
from tests.orchestrator.kit import (
    agents,
    calls,
    eventually,
    extracted,
    new_task,
    raising,
    row,
    unique_key,
)

pytestmark = pytest.mark.integration


class Held:
    """An extractor that holds each call until its key is let go, and
    remembers the calls it saw canceled."""

    def __init__(self) -> None:
        self._gates: dict[str, asyncio.Event] = {}
        self.canceled: list[str] = []

    def let(self, key: str) -> None:
        self._gates.setdefault(key, asyncio.Event()).set()

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        key = params["s3_key"]
        try:
            await self._gates.setdefault(key, asyncio.Event()).wait()
        except asyncio.CancelledError:
            self.canceled.append(key)
            raise
        return await extracted(method, params)


@asynccontextmanager
async def running(
    tasks: TaskRepository,
    stand_ins: Agents,
    *,
    concurrency: int = 4,
    max_attempts: int = 3,
    retry: TaskRetry | None = None,
) -> AsyncIterator[TaskRunner]:
    """A runner for ``tasks``, stopped at the end whatever happened."""
    runner = TaskRunner(
        Pipeline(stand_ins, tasks, retry or TaskRetry(attempts=max_attempts)),
        tasks,
        concurrency=concurrency,
    )
    try:
        yield runner
    finally:
        await runner.stop(0)


async def handed_back(tasks: TaskRepository, times: int) -> None:
    """Claim every free task and let it go for a later try, ``times`` times:
    the tries that came to nothing."""
    for _ in range(times):
        for task in await tasks.claim(100):
            assert await tasks.defer(task.task_id, error="a try", delay=0)


async def ended(database: Database, *task_ids: uuid.UUID) -> bool:
    rows = [await row(database, task_id) for task_id in task_ids]
    return all(r["status"] in ("completed", "failed") for r in rows)


async def test_claim_takes_only_as_many_tasks_as_there_are_free_slots(
    database_a: Database,
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    for _ in range(5):
        await new_task(tasks, lease=False)

    async with running(tasks, agents(extractor=Held()), concurrency=2) as runner:
        assert await runner.claim() == 2
        assert await runner.claim() == 0
        assert not runner.has_room()

        owners = await database_a.fetch(
            "SELECT lease_owner, count(*) FROM tasks GROUP BY 1"
        )
        assert {r["lease_owner"]: r["count"] for r in owners} == {
            "replica-a": 2,
            None: 3,
        }


async def test_task_started_too_often_fails_without_running_the_pipeline(
    database_a: Database, database_b: Database
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    others = TaskRepository(database_b, owner="replica-b")
    worn_key, last_try_key = unique_key("worn"), unique_key("last-try")
    worn = await new_task(others, worn_key, lease=False)
    await handed_back(others, 1)
    last_try = await new_task(others, last_try_key, lease=False)
    await handed_back(others, 2)
    stand_ins = agents()

    async with running(tasks, stand_ins, max_attempts=3) as runner:
        assert await runner.claim() == 2
        await eventually(lambda: ended(database_a, worn, last_try))

    given_up = await row(database_a, worn)
    assert (given_up["status"], given_up["attempts"]) == ("failed", 4)
    assert given_up["reason_code"] == "too_many_attempts"
    assert given_up["reason"] == "The task was started 3 times without finishing"
    # The task at its last allowed try still ran, and only that one.
    ran = await row(database_a, last_try)
    assert (ran["status"], ran["attempts"]) == ("completed", 3)
    assert [p["s3_key"] for _, p in calls(stand_ins.extractor)] == [last_try_key]


async def test_keep_leases_stops_only_the_pipeline_whose_lease_was_taken_over(
    database_a: Database, database_b: Database
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    others = TaskRepository(database_b, owner="replica-b")
    extractor = Held()
    lost_key, kept_key = unique_key("lost"), unique_key("kept")
    lost = await new_task(tasks, lost_key, lease=False)
    kept = await new_task(tasks, kept_key, lease=False)

    async with running(tasks, agents(extractor=extractor)) as runner:
        assert await runner.claim() == 2
        await eventually(lambda: both_entered(database_a, lost, kept))
        # Replica A missed its renewals of one lease; B takes the task over.
        await database_a.execute(
            "UPDATE tasks SET lease_expires_at = now() - interval '1 second'"
            " WHERE id = $1",
            lost,
        )
        assert [c.task_id for c in await others.claim(10)] == [lost]
        taken_over = await row(database_a, lost)
        kept_before = await row(database_a, kept)

        await runner.keep_leases()
        await eventually(lambda: seen(extractor.canceled))

        assert extractor.canceled == [lost_key]
        assert await row(database_a, lost) == taken_over
        kept_after = await row(database_a, kept)
        assert kept_after["lease_owner"] == "replica-a"
        assert kept_after["lease_expires_at"] > kept_before["lease_expires_at"]


async def both_entered(database: Database, *task_ids: uuid.UUID) -> bool:
    rows = [await row(database, task_id) for task_id in task_ids]
    return all(r["status"] == "extracting" for r in rows)


async def seen(items: list[str]) -> bool:
    return bool(items)


async def test_outage_is_tried_through_the_runners_claims_until_it_gives_up(
    database_a: Database,
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    retry = TaskRetry(attempts=3, backoff=Backoff(base=0.05, cap=0.1))
    stand_ins = agents(extractor=raising(DependencyUnavailable("extractor")))
    task_id = await new_task(tasks, lease=False)

    async with running(tasks, stand_ins, max_attempts=3, retry=retry) as runner:
        dispatching = asyncio.create_task(runner.dispatch(interval=0.02))
        try:
            await eventually(lambda: ended(database_a, task_id))
        finally:
            dispatching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatching

    stored = await row(database_a, task_id)
    assert (stored["status"], stored["attempts"]) == ("failed", 3)
    assert stored["reason_code"] == "dependency_unavailable"
    assert stored["reason"] == "The extractor is unavailable (gave up after 3 attempts)"
    assert len(calls(stand_ins.extractor)) == 3


async def test_stop_lets_pipelines_finish_for_the_grace_then_hands_back_the_rest(
    database_a: Database, database_b: Database
) -> None:
    tasks = TaskRepository(database_a, owner="replica-a")
    others = TaskRepository(database_b, owner="replica-b")
    extractor = Held()
    quick_key, stuck_key = unique_key("quick"), unique_key("stuck")
    quick = await new_task(tasks, quick_key, lease=False)
    stuck = await new_task(tasks, stuck_key, lease=False)
    # Held by this replica, but not run by this runner: not its to hand back.
    elsewhere = await new_task(tasks)

    async with running(tasks, agents(extractor=extractor)) as runner:
        assert await runner.claim() == 2
        await eventually(lambda: both_entered(database_a, quick, stuck))
        asyncio.get_running_loop().call_later(0.05, extractor.let, quick_key)

        await runner.stop(0.5)

        assert not runner.has_room()
        assert await runner.claim() == 0
        assert not runner.start(Claimed(elsewhere, "incoming/x.txt", 1, None))

    assert (await row(database_a, quick))["status"] == "completed"
    assert extractor.canceled == [stuck_key]
    handed = await row(database_a, stuck)
    # Handed back with its try given back: the next claim is its first.
    assert (handed["status"], handed["lease_owner"], handed["attempts"]) == (
        "extracting",
        None,
        0,
    )
    assert (await row(database_a, elsewhere))["lease_owner"] == "replica-a"
    claimed = await others.claim(10)
    assert [(c.task_id, c.attempts) for c in claimed] == [(stuck, 1)]


async def test_a_task_accepted_as_the_replica_stops_is_handed_back_at_once(
    database_a: Database,
) -> None:
    tasks = TaskRepository(database_a, owner="stopping-replica")
    async with running(tasks, agents()) as runner:
        orchestrator = Orchestrator(tasks, runner, storage=None, agents=None, http=None)  # type: ignore[arg-type]
        # The room was there when the task was recorded; the stop came after.
        runner.has_room = lambda: True  # type: ignore[method-assign]
        runner.stop_claiming()
        accepted = await orchestrator.submit(unique_key("late"), "a-client")

    task = await row(database_a, uuid.UUID(accepted["task_id"]))
    assert (task["status"], task["lease_owner"], task["attempts"]) == (
        "pending",
        None,
        0,
    )
