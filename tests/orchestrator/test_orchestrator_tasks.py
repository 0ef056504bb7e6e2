"""TaskRepository on a real PostgreSQL over TLS, used by two replicas at once:
claims never overlap, an expired lease passes to another replica and the old
holder can change nothing any more, and one object version is one task."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from services.orchestrator.tasks import Claimed, TaskRepository
from shared.database import Database
from tests.orchestrator.kit import eventually, new_task, row, unique_key

pytestmark = pytest.mark.integration

TASKS = 200
RESULT = {"document_id": "d", "document_type": "report"}


def replica(
    database: Database, name: str, *, lease_seconds: float = 30.0
) -> TaskRepository:
    return TaskRepository(database, owner=name, lease_seconds=lease_seconds)


async def test_replicas_claiming_at_once_never_get_the_same_task(
    database_a: Database, database_b: Database
) -> None:
    a, b = replica(database_a, "replica-a"), replica(database_b, "replica-b")
    created = set(
        await asyncio.gather(*(new_task(a, lease=False) for _ in range(TASKS)))
    )
    won: dict[str, list[uuid.UUID]] = {"replica-a": [], "replica-b": []}

    for _ in range(50):
        claims = [r.claim(3) for r in (a, b) for _ in range(16)]
        owners = [r.owner for r in (a, b) for _ in range(16)]
        for owner, claimed in zip(owners, await asyncio.gather(*claims), strict=True):
            won[owner] += [task.task_id for task in claimed]
        if sum(map(len, won.values())) >= TASKS:
            break

    every_claim = won["replica-a"] + won["replica-b"]
    assert len(every_claim) == len(set(every_claim)) == TASKS
    assert set(every_claim) == created
    assert not set(won["replica-a"]) & set(won["replica-b"])
    assert won["replica-a"] and won["replica-b"]
    rows = await database_a.fetch("SELECT id, lease_owner, attempts FROM tasks")
    assert {r["id"]: r["lease_owner"] for r in rows} == {
        task_id: owner for owner, ids in won.items() for task_id in ids
    }
    assert {r["attempts"] for r in rows} == {1}
    assert await a.claim(10) == await b.claim(10) == []


async def test_expired_lease_is_claimed_by_another_replica_with_one_more_attempt(
    database_a: Database, database_b: Database
) -> None:
    a = replica(database_a, "replica-a", lease_seconds=0.3)
    b = replica(database_b, "replica-b")
    key = unique_key()
    task_id = await new_task(a, key)

    assert await b.claim(10) == []
    claimed = await eventually(lambda: b.claim(10))

    assert claimed == [Claimed(task_id, key, 2, None)]
    stored = await row(database_a, task_id)
    assert stored["lease_owner"] == "replica-b"
    assert stored["attempts"] == 2


async def test_old_holder_of_a_lease_taken_over_changes_nothing(
    database_a: Database, database_b: Database
) -> None:
    a = replica(database_a, "replica-a", lease_seconds=0.3)
    b = replica(database_b, "replica-b")
    task_id = await new_task(a)
    assert await a.enter(task_id, "extracting")
    await eventually(lambda: b.claim(10))
    assert await b.enter(task_id, "extracting")
    before = await row(database_a, task_id)

    with a.changes.follow(task_id) as news:
        assert not await a.enter(task_id, "validating")
        assert not await a.complete(
            task_id, document_id=uuid.uuid4(), result=RESULT, timings={}
        )
        assert not await a.fail(
            task_id, reason_code="agent_error", reason="late", timings={}
        )
        assert not await a.defer(task_id, error="The extractor is unavailable", delay=9)
        assert await a.renew([task_id]) == set()
        assert await a.release([task_id]) == 0

    assert news.empty()
    assert await row(database_a, task_id) == before
    assert await b.enter(task_id, "validating")


async def test_renew_extends_and_returns_only_the_leases_still_held(
    database_a: Database, database_b: Database
) -> None:
    a, b = replica(database_a, "replica-a"), replica(database_b, "replica-b")
    mine = [await new_task(a), await new_task(a)]
    theirs = await new_task(b)
    free = await new_task(a, lease=False)
    done = await new_task(a)
    assert await a.complete(done, document_id=uuid.uuid4(), result=RESULT, timings={})
    before = await row(database_a, mine[0])
    theirs_before = await row(database_a, theirs)

    held = await a.renew([*mine, theirs, free, done, uuid.uuid4()])

    assert held == set(mine)
    after = await row(database_a, mine[0])
    assert after["lease_expires_at"] > before["lease_expires_at"]
    assert await row(database_a, theirs) == theirs_before
    assert (await row(database_a, free))["lease_owner"] is None
    assert await a.renew([]) == set()


async def test_released_task_is_claimable_at_once(
    database_a: Database, database_b: Database
) -> None:
    a, b = replica(database_a, "replica-a"), replica(database_b, "replica-b")
    kept = await new_task(a)
    handed_back = await new_task(a)
    assert await b.claim(10) == []

    assert await a.release([handed_back]) == 1

    claimed = await b.claim(10)
    # A stopping replica's try is not counted against the task.
    assert [(c.task_id, c.attempts) for c in claimed] == [(handed_back, 1)]
    assert (await row(database_a, kept))["lease_owner"] == "replica-a"


async def test_deferred_task_is_hidden_until_its_time(
    database_a: Database, database_b: Database
) -> None:
    a, b = replica(database_a, "replica-a"), replica(database_b, "replica-b")
    task_id = await new_task(a)

    assert await a.defer(task_id, error="The extractor is unavailable", delay=0.5)

    stored = await row(database_a, task_id)
    assert stored["lease_owner"] is None
    assert stored["lease_expires_at"] is None
    assert stored["last_error"] == "The extractor is unavailable"
    assert stored["not_before"] - stored["updated_at"] == timedelta(seconds=0.5)
    assert await b.claim(10) == await a.claim(10) == []
    claimed = await eventually(lambda: b.claim(10))
    assert [(c.task_id, c.attempts) for c in claimed] == [(task_id, 2)]
    assert (await row(database_a, task_id))["not_before"] is None


async def test_unleased_task_is_claimable_and_a_leased_one_is_not(
    database_a: Database, database_b: Database
) -> None:
    a, b = replica(database_a, "replica-a"), replica(database_b, "replica-b")
    free = await new_task(a, lease=False)
    leased = await new_task(a)

    free_row, leased_row = await row(database_a, free), await row(database_a, leased)
    assert (free_row["lease_owner"], free_row["attempts"]) == (None, 0)
    assert (leased_row["lease_owner"], leased_row["attempts"]) == ("replica-a", 1)
    claimed = await b.claim(10)
    assert [(c.task_id, c.attempts) for c in claimed] == [(free, 1)]


async def test_same_object_version_is_one_task(database_a: Database) -> None:
    a = replica(database_a, "replica-a")
    key = unique_key()
    first = await new_task(a, key, version="v1")

    again = await a.create(
        key, submitted_by="lambda-trigger", correlation_id=None, object_version="v1"
    )

    assert again is None
    found = await a.by_object(key, "v1")
    assert found is not None
    assert found["task_id"] == str(first)
    # Another version of the object, or another object, is another task.
    assert await new_task(a, key, version="v2") != first
    assert await new_task(a, unique_key(), version="v1") != first
    assert await a.by_object(key, "v3") is None


async def test_racing_submissions_of_one_object_version_make_one_task(
    database_a: Database, database_b: Database
) -> None:
    a, b = replica(database_a, "replica-a"), replica(database_b, "replica-b")
    key = unique_key()

    made = await asyncio.gather(
        *(
            r.create(
                key,
                submitted_by="lambda-trigger",
                correlation_id=None,
                object_version="v1",
            )
            for r in (a, b)
            for _ in range(10)
        )
    )

    assert len([task_id for task_id in made if task_id is not None]) == 1


async def test_completed_object_version_is_still_found(database_a: Database) -> None:
    a = replica(database_a, "replica-a")
    key = unique_key()
    first = await new_task(a, key, version="v1")
    assert await a.complete(first, document_id=uuid.uuid4(), result=RESULT, timings={})

    again = await a.create(
        key, submitted_by="lambda-trigger", correlation_id=None, object_version="v1"
    )

    assert again is None
    found = await a.by_object(key, "v1")
    assert found is not None
    assert (found["task_id"], found["status"]) == (str(first), "completed")


async def test_failed_object_version_can_be_submitted_again(
    database_a: Database,
) -> None:
    a = replica(database_a, "replica-a")
    key = unique_key()
    first = await new_task(a, key, version="v1")
    assert await a.fail(
        first, reason_code="dependency_unavailable", reason="down", timings={}
    )

    second = await new_task(a, key, version="v1")

    assert second != first
    found = await a.by_object(key, "v1")
    assert found is not None
    assert found["task_id"] == str(second)


async def test_canceled_object_version_can_be_submitted_again(
    database_a: Database,
) -> None:
    a = replica(database_a, "replica-a")
    key = unique_key()
    first = await new_task(a, key, version="v1")
    assert await a.cancel(first)

    second = await new_task(a, key, version="v1")

    assert second != first
    canceled = await row(database_a, first)
    assert (canceled["status"], canceled["lease_owner"]) == ("canceled", None)


async def test_reprocess_replaces_a_completed_task_but_not_a_running_one(
    database_a: Database,
) -> None:
    a = replica(database_a, "replica-a")
    key = unique_key()
    document_id = uuid.uuid4()
    done = await new_task(a, key, version="v1")
    assert await a.complete(done, document_id=document_id, result=RESULT, timings={})
    running = await new_task(a, key, version="v2")

    again = await new_task(a, key, version="v1", reprocess=True)
    refused = await a.create(
        key,
        submitted_by="lambda-trigger",
        correlation_id=None,
        object_version="v2",
        reprocess=True,
    )

    assert again != done
    replaced = await a.by_object(key, "v1")
    assert replaced is not None
    assert replaced["task_id"] == str(again)
    kept = await row(database_a, done)
    assert (kept["status"], kept["document_id"]) == ("completed", document_id)
    assert refused is None
    still = await a.by_object(key, "v2")
    assert still is not None
    assert still["task_id"] == str(running)


async def test_cancel_stops_a_task_before_archiving_only(
    database_a: Database,
) -> None:
    a = replica(database_a, "replica-a")
    waiting, archiving = await new_task(a), await new_task(a)
    assert await a.enter(archiving, "archiving")

    assert await a.cancel(waiting)
    assert not await a.cancel(archiving)

    assert not await a.enter(waiting, "extracting")
    assert (await row(database_a, waiting))["status"] == "canceled"
    assert (await row(database_a, archiving))["status"] == "archiving"
