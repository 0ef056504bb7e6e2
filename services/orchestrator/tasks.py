"""The tasks table: the state of every accepted document, in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    " attempts, submitted_by, correlation_id, created_at, updated_at, started_at,"
    " finished_at"
)


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
    def __init__(self, database: Database, changes: TaskChanges | None = None) -> None:
        self._db = database
        self.changes = changes or TaskChanges()

    async def create(
        self,
        s3_key: str,
        *,
        submitted_by: str,
        correlation_id: str | None,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> uuid.UUID | None:
        """A new task, or None when the client's ``idempotency_key`` has
        made one already (the unique index decides between racing requests).
        ``fingerprint`` names the document the key is used for."""
        made = await self._db.fetchval(
            "INSERT INTO tasks (id, s3_key, submitted_by, correlation_id,"
            " idempotency_key, idempotency_fingerprint)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (submitted_by, idempotency_key)"
            " WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
            uuid.uuid4(),
            s3_key,
            submitted_by,
            correlation_id,
            idempotency_key,
            fingerprint,
        )
        return made if isinstance(made, uuid.UUID) else None

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
        meanwhile (canceled), so the pipeline stops."""
        moved = await self._db.fetchval(
            "UPDATE tasks SET status = $2, stage = $2, updated_at = now(),"  # noqa: S608 (a constant)
            " started_at = coalesce(started_at, now()),"
            " attempts = attempts + (CASE WHEN $2 = 'extracting' THEN 1 ELSE 0 END)"
            f" WHERE id = $1 AND {_RUNNING} RETURNING true",
            task_id,
            status,
        )
        if moved:
            self.changes.publish(task_id, status)
        return bool(moved)

    async def cancel(self, task_id: uuid.UUID) -> bool:
        """End a task not yet archiving as canceled; False if it has ended or
        is archiving (the document is then written whatever happens)."""
        canceled = await self._db.fetchval(
            "UPDATE tasks SET status = 'canceled', reason_code = 'canceled',"
            " reason = 'Canceled at the caller''s request',"
            " updated_at = now(), finished_at = now()"
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
    ) -> None:
        await self._db.execute(
            "UPDATE tasks SET status = 'completed', document_id = $2, result = $3,"  # noqa: S608 (a constant)
            " timings = $4, reason = NULL, reason_code = NULL,"
            f" updated_at = now(), finished_at = now() WHERE id = $1 AND {_RUNNING}",
            task_id,
            document_id,
            json.dumps(result),
            json.dumps(timings),
        )
        self.changes.publish(task_id, "completed")

    async def fail(
        self,
        task_id: uuid.UUID,
        *,
        reason_code: str,
        reason: str,
        timings: dict[str, float],
    ) -> None:
        await self._db.execute(
            "UPDATE tasks SET status = 'failed', reason_code = $2, reason = $3,"  # noqa: S608 (a constant)
            " timings = $4, updated_at = now(), finished_at = now()"
            f" WHERE id = $1 AND {_RUNNING}",
            task_id,
            reason_code,
            reason,
            json.dumps(timings),
        )
        self.changes.publish(task_id, "failed")

    async def get(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM tasks WHERE id = $1",  # noqa: S608
            task_id,
        )
        return None if row is None else _task(row)

    async def stale(self, seconds: float, *, limit: int) -> list[dict[str, Any]]:
        """Unfinished tasks nobody has moved on for ``seconds``."""
        rows = await self._db.fetch(
            f"SELECT {_COLUMNS} FROM tasks"  # noqa: S608
            f" WHERE {_RUNNING}"
            "   AND updated_at < now() - make_interval(secs => $1)"
            " ORDER BY updated_at, id LIMIT $2",
            seconds,
            limit,
        )
        return [_task(row) for row in rows]

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
        "submitted_by": row["submitted_by"],
        "created_at": when("created_at"),
        "updated_at": when("updated_at"),
        "started_at": when("started_at"),
        "finished_at": when("finished_at"),
    }
