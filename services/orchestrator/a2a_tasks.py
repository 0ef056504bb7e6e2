"""The mesh's tasks as A2A 1.0 sees them: rows of the tasks table as ``Task``
messages, and the events a caller following a task receives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from a2a.helpers import new_data_part, new_text_part
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf.struct_pb2 import Struct

from services.orchestrator.tasks import TERMINAL

# The mesh's task states (and stages) in A2A's terms.
STATES: dict[str, TaskState] = {
    "pending": TaskState.TASK_STATE_SUBMITTED,
    "extracting": TaskState.TASK_STATE_WORKING,
    "validating": TaskState.TASK_STATE_WORKING,
    "archiving": TaskState.TASK_STATE_WORKING,
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "canceled": TaskState.TASK_STATE_CANCELED,
}
# And back: the mesh's states that an A2A state filter stands for.
STATUSES_OF: dict[TaskState, tuple[str, ...]] = {
    state: tuple(status for status, mapped in STATES.items() if mapped == state)
    for state in set(STATES.values())
}

# What a caller needs of the archived result; the rest stays in get_task_status.
_RESULT_FIELDS = (
    "document_id",
    "document_type",
    "validation_score",
    "validation_passed",
    "format",
    "page_count",
    "key_fields",
)


def task_message(row: dict[str, Any], *, include_artifacts: bool = True) -> Task:
    """A row of the tasks table as an A2A Task. The context is the task
    itself: the mesh keeps no conversations."""
    task_id = row["task_id"]
    task = Task(id=task_id, context_id=task_id, status=_status(row))
    task.metadata.update(
        {
            "s3_key": row["s3_key"],
            "stage": row["stage"] or "",
            "attempts": row["attempts"],
        }
    )
    if include_artifacts and row["status"] == "completed" and row["result"]:
        task.artifacts.append(result_artifact(row))
    return task


def result_artifact(row: dict[str, Any]) -> Artifact:
    result = {key: row["result"].get(key) for key in _RESULT_FIELDS}
    return Artifact(
        artifact_id=f"{row['task_id']}-result",
        name="archived-document",
        description="The archived document: id, type, validation score, key fields",
        parts=[new_data_part(result, media_type="application/json")],
    )


def _status(row: dict[str, Any]) -> TaskStatus:
    status = TaskStatus(state=STATES[row["status"]])
    if row["updated_at"]:
        status.timestamp.FromDatetime(datetime.fromisoformat(row["updated_at"]))
    text = _status_text(row)
    if text:
        status.message.CopyFrom(
            Message(
                message_id=f"{row['task_id']}-{row['status']}",
                role=Role.ROLE_AGENT,
                task_id=row["task_id"],
                context_id=row["task_id"],
                parts=[new_text_part(text)],
            )
        )
        if row["reason_code"]:
            reason = Struct()
            reason.update({"reason_code": row["reason_code"]})
            status.message.metadata.CopyFrom(reason)
    return status


def _status_text(row: dict[str, Any]) -> str | None:
    if row["status"] in ("failed", "canceled"):
        return str(row["reason"] or row["status"])
    if row["status"] in ("extracting", "validating", "archiving"):
        return f"{row['status'].capitalize()} the document"
    return None


Event = Task | TaskStatusUpdateEvent | TaskArtifactUpdateEvent
Fetch = Callable[[], Awaitable[dict[str, Any] | None]]
Wait = Callable[[], Awaitable[str | None]]


async def follow(
    first: dict[str, Any],
    fetch: Fetch,
    wait: Wait,
    *,
    limit_seconds: float,
    clock: Callable[[], float],
) -> AsyncIterator[Event]:
    """The task as it is, then each change of its state or stage, its result
    as an artifact, and last its terminal state. Ends there, or when the
    time limit passes (the caller may subscribe again).

    ``wait`` returns the next stage this replica saw the task enter, or None
    when a while passed without one; the table is then read again, which is
    how changes made by another replica, and the result, are found."""
    yield task_message(first)
    row = first
    seen = (row["status"], row["stage"])
    deadline = clock() + limit_seconds
    while row["status"] not in TERMINAL and clock() < deadline:
        heard = await wait()
        if heard is not None and heard not in TERMINAL:
            if (heard, heard) != seen:
                row = {**row, "status": heard, "stage": heard}
                seen = (heard, heard)
                yield _status_event(row)
            continue

        current = await fetch()
        if current is None:
            return
        row = current
        if (row["status"], row["stage"]) == seen:
            continue
        seen = (row["status"], row["stage"])
        if row["status"] == "completed" and row["result"]:
            yield TaskArtifactUpdateEvent(
                task_id=row["task_id"],
                context_id=row["task_id"],
                artifact=result_artifact(row),
                last_chunk=True,
            )
        yield _status_event(row)


def _status_event(row: dict[str, Any]) -> TaskStatusUpdateEvent:
    return TaskStatusUpdateEvent(
        task_id=row["task_id"], context_id=row["task_id"], status=_status(row)
    )
