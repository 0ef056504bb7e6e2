"""The tasks table: the state of every accepted document, in PostgreSQL.

A replica runs a task only while it holds the task's lease. Every change a
pipeline makes is guarded by the lease and by the task still running, so a
replica that lost its lease (it stalled, another took the task over) or a
task canceled meanwhile changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.database import Database

Status = Literal[
    "pending",
    "extracting",
    "validating",
    "archiving",
    "completed",
    "failed",
    "canceled",
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "canceled"})
# Only a task still running may move on; a canceled one never does.
_RUNNING = "status NOT IN ('completed', 'failed', 'canceled')"

_COLUMNS = (
    "id, s3_key, status, stage, reason, reason_code, document_id, result, timings,"
    " attempts, last_error, submitted_by, correlation_id, created_at, updated_at,"
    " started_at, finished_at"
)
_HELD = "lease_owner = $2"
# A task that ends lets go of its lease and of its object: a later submission
# of the same object after a failure is run again.
_LET_GO = "lease_owner = NULL, lease_expires_at = NULL, not_before = NULL"


@dataclass(frozen=True)
class Claimed:
    """A task this replica now holds the lease of."""

    task_id: uuid.UUID
    s3_key: str
    attempts: int
    correlation_id: str | None


class TaskChanges:
    """News of the changes this replica makes to tasks, for whoever follows
    a task here: each stage is heard at once, however short. Changes made by
    another replica are found by reading the table again."""

    def __init__(self) -> None:
        self._followers: dict[uuid.UUID, set[asyncio.Queue[str]]] = {}

    def publish(self, task_id: uuid.UUID, status: str) -> None:
        for queue in self._followers.get(task_id, ()):
            queue.put_nowait(status)

    @contextmanager
    def follow(self, task_id: uuid.UUID) -> Iterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._followers.setdefault(task_id, set()).add(queue)
        try:
            yield queue
        finally:
            followers = self._followers[task_id]
            followers.discard(queue)
            if not followers:
                del self._followers[task_id]


class TaskRepository:
    def __init__(
        self,
        database: Database,
        changes: TaskChanges | None = None,
        *,
        owner: str = "",
        lease_seconds: float = 30.0,
    ) -> None:
        self._db = database
        self.changes = changes or TaskChanges()
        self.owner = owner
        """Who holds the leases this repository takes: one replica."""
        self._lease_seconds = lease_seconds

    async def create(
        self,
        s3_key: str,
        *,
        submitted_by: str,
        correlation_id: str | None,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        object_version: str | None = None,
        reprocess: bool = False,
        lease: bool = True,
    ) -> uuid.UUID | None:
        """A new task, leased to this replica unless ``lease`` is false (it
        is then claimed by the first replica with room); None when the client's
        ``idempotency_key`` made one already, or a task runs or has
        completed for the same ``object_version`` of ``s3_key`` (the unique
        indexes decide between racing requests). ``fingerprint`` names the
        document the key is used for; ``reprocess`` runs a completed object
        again."""
        async with self._db.transaction() as connection:
            if reprocess and object_version is not None:
                await connection.execute(
                    "UPDATE tasks SET object_version = NULL WHERE s3_key = $1"
                    " AND object_version = $2 AND status = 'completed'",
                    s3_key,
                    object_version,
                )
            made = await connection.fetchval(
                "INSERT INTO tasks (id, s3_key, submitted_by, correlation_id,"
                " idempotency_key, idempotency_fingerprint, object_version,"
                " attempts, lease_owner, lease_expires_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $10 THEN 1 ELSE 0 END,"
                " CASE WHEN $10 THEN $8 END,"
                " CASE WHEN $10 THEN now() + make_interval(secs => $9) END)"
                " ON CONFLICT DO NOTHING RETURNING id",
                uuid.uuid4(),
                s3_key,
                submitted_by,
                correlation_id,
                idempotency_key,
                fingerprint,
                object_version,
                self.owner,
                self._lease_seconds,
                lease,
            )
        return made if isinstance(made, uuid.UUID) else None

    async def by_object(
        self, s3_key: str, object_version: str
    ) -> dict[str, Any] | None:
        """The running or completed task of this version of the object."""
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM tasks"  # noqa: S608
            " WHERE s3_key = $1 AND object_version = $2",
            s3_key,
            object_version,
        )
        return None if row is None else _task(row)

    async def claim(self, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` unfinished tasks nobody holds (or whose
        holder let the lease expire), oldest first. Replicas claiming at
        once skip each other's rows, so no task goes to two of them."""
        rows = await self._db.fetch(
            "WITH free AS ("  # noqa: S608 (constants)
            f"  SELECT id FROM tasks WHERE {_RUNNING}"
            "   AND (lease_expires_at IS NULL OR lease_expires_at < now())"
            "   AND (not_before IS NULL OR not_before <= now())"
            "  ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " UPDATE tasks SET lease_owner = $2, not_before = NULL,"
            " lease_expires_at = now() + make_interval(secs => $3),"
            " attempts = tasks.attempts + 1"
            " FROM free WHERE tasks.id = free.id"
            " RETURNING tasks.id, tasks.s3_key, tasks.attempts, tasks.correlation_id",
            limit,
            self.owner,
            self._lease_seconds,
        )
        return [
            Claimed(row["id"], row["s3_key"], row["attempts"], row["correlation_id"])
            for row in rows
        ]

    async def renew(self, task_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Extend the leases of ``task_ids``; the ones still held."""
        if not task_ids:
            return set()
        rows = await self._db.fetch(
            "UPDATE tasks SET lease_expires_at = now() + make_interval(secs => $3)"  # noqa: S608
            f" WHERE id = ANY($1::uuid[]) AND {_HELD} AND {_RUNNING} RETURNING id",
            list(task_ids),
            self.owner,
            self._lease_seconds,
        )
        return {row["id"] for row in rows}

    async def release(self, task_ids: Sequence[uuid.UUID]) -> int:
        """Hand back the leases of ``task_ids``, for another replica to claim
        at once (this one is stopping)."""
        if not task_ids:
            return 0
        # A task handed back was not a failed try: its claim is not counted.
        rows = await self._db.fetch(
            f"UPDATE tasks SET {_LET_GO}, attempts = greatest(attempts - 1, 0)"  # noqa: S608 (constants)
            f" WHERE id = ANY($1::uuid[]) AND {_HELD} AND {_RUNNING} RETURNING id",
            list(task_ids),
            self.owner,
        )
        return len(rows)

    async def defer(self, task_id: uuid.UUID, *, error: str, delay: float) -> bool:
        """Let go of a task to be tried again after ``delay`` seconds."""
        deferred = await self._db.fetchval(
            "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL,"  # noqa: S608
            " not_before = now() + make_interval(secs => $3), last_error = $4,"
            f" updated_at = now() WHERE id = $1 AND {_HELD} AND {_RUNNING}"
            " RETURNING true",
            task_id,
            self.owner,
            delay,
            error,
        )
        return bool(deferred)

    async def by_idempotency_key(
        self, submitted_by: str, idempotency_key: str
    ) -> tuple[dict[str, Any], str | None] | None:
        """The task the client's key made, and the document's fingerprint."""
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS}, idempotency_fingerprint FROM tasks"  # noqa: S608
            " WHERE submitted_by = $1 AND idempotency_key = $2",
            submitted_by,
            idempotency_key,
        )
        return None if row is None else (_task(row), row["idempotency_fingerprint"])

    async def enter(self, task_id: uuid.UUID, status: Status) -> bool:
        """Move a running task to its next stage; False if it has ended
        meanwhile (canceled) or another replica holds it, so the pipeline
        stops."""
        moved = await self._db.fetchval(
            "UPDATE tasks SET status = $3, stage = $3, updated_at = now(),"  # noqa: S608 (a constant)
            " started_at = coalesce(started_at, now())"
            f" WHERE id = $1 AND {_HELD} AND {_RUNNING} RETURNING true",
            task_id,
            self.owner,
            status,
        )
        if moved:
            self.changes.publish(task_id, status)
        return bool(moved)

    async def cancel(self, task_id: uuid.UUID) -> bool:
        """End a task not yet archiving as canceled; False if it has ended or
        is archiving (the document is then written whatever happens)."""
        canceled = await self._db.fetchval(
            "UPDATE tasks SET status = 'canceled', reason_code = 'canceled',"  # noqa: S608 (constants)
            " reason = 'Canceled at the caller''s request', object_version = NULL,"
            f" {_LET_GO}, updated_at = now(), finished_at = now()"
            # Archiving is the point of no return: the document is written.
            " WHERE id = $1 AND status IN ('pending', 'extracting', 'validating')"
            " RETURNING true",
            task_id,
        )
        if canceled:
            self.changes.publish(task_id, "canceled")
        return bool(canceled)

    async def complete(
        self,
        task_id: uuid.UUID,
        *,
        document_id: uuid.UUID,
        result: dict[str, Any],
        timings: dict[str, float],
    ) -> bool:
        """End the task completed; False if this replica no longer held it."""
        done = await self._db.fetchval(
            "UPDATE tasks SET status = 'completed', document_id = $3, result = $4,"  # noqa: S608 (a constant)
            f" timings = $5, reason = NULL, reason_code = NULL, {_LET_GO},"
            " updated_at = now(), finished_at = now()"
            f" WHERE id = $1 AND {_HELD} AND {_RUNNING} RETURNING true",
            task_id,
            self.owner,
            document_id,
            json.dumps(result),
            json.dumps(timings),
        )
        if done:
            self.changes.publish(task_id, "completed")
        return bool(done)

    async def fail(
        self,
        task_id: uuid.UUID,
        *,
        reason_code: str,
        reason: str,
        timings: dict[str, float],
    ) -> bool:
        """End the task failed; False if this replica no longer held it."""
        done = await self._db.fetchval(
            "UPDATE tasks SET status = 'failed', reason_code = $3, reason = $4,"  # noqa: S608 (a constant)
            f" timings = $5, object_version = NULL, {_LET_GO},"
            " updated_at = now(), finished_at = now()"
            f" WHERE id = $1 AND {_HELD} AND {_RUNNING} RETURNING true",
            task_id,
            self.owner,
            reason_code,
            reason,
            json.dumps(timings),
        )
        if done:
            self.changes.publish(task_id, "failed")
        return bool(done)

    async def get(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM tasks WHERE id = $1",  # noqa: S608
            task_id,
        )
        return None if row is None else _task(row)

    async def page(
        self,
        statuses: Sequence[str] | None,
        *,
        limit: int,
        offset: int,
        updated_after: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Tasks newest first, optionally in ``statuses`` or changed after
        ``updated_after``, and how many match."""
        where = (
            " WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))"
            " AND ($2::timestamptz IS NULL OR updated_at > $2)"
        )
        chosen = list(statuses) if statuses is not None else None
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM tasks{where}"  # noqa: S608
            " ORDER BY created_at DESC, id LIMIT $3 OFFSET $4",
            chosen,
            updated_after,
            limit,
            offset,
        )
        if rows:
            return [_task(row) for row in rows], int(rows[0]["total"])
        total = await self._db.fetchval(
            f"SELECT count(*) FROM tasks{where}",  # noqa: S608
            chosen,
            updated_after,
        )
        return [], int(str(total))

    async def unfinished(self, limit: int) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM tasks"  # noqa: S608
            f" WHERE {_RUNNING}"
            " ORDER BY created_at, id LIMIT $1",
            limit,
        )
        return [_task(row) for row in rows]


def _task(row: Any) -> dict[str, Any]:
    def when(column: str) -> str | None:
        value = row[column]
        return value.isoformat() if value is not None else None

    return {
        "task_id": str(row["id"]),
        "s3_key": row["s3_key"],
        "status": row["status"],
        "stage": row["stage"],
        "reason": row["reason"],
        "reason_code": row["reason_code"],
        "document_id": str(row["document_id"]) if row["document_id"] else None,
        "result": json.loads(row["result"]) if row["result"] else None,
        "timings": json.loads(row["timings"]),
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "submitted_by": row["submitted_by"],
        "created_at": when("created_at"),
        "updated_at": when("updated_at"),
        "started_at": when("started_at"),
        "finished_at": when("finished_at"),
    }
