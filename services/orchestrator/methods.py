"""The orchestrator's methods: tasks, uploads, and look-ups passed to the archivist."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import Request
from pydantic import Field
from starlette.datastructures import UploadFile

from services.orchestrator.pipeline import Agents
from services.orchestrator.runner import TaskRunner
from services.orchestrator.tasks import Claimed, TaskRepository
from services.orchestrator.upload import content_type_of, object_key
from shared.auth.principal import Principal
from shared.client import AgentClient
from shared.documents import S3Key
from shared.errors import InvalidParams, PayloadTooLarge, TaskNotFound
from shared.jsonrpc import Call, Method, NoParams, Params
from shared.logging import correlation_id, log_event
from shared.lookup import GetDocumentParams, SearchParams, lookup_methods
from shared.service import principal_of
from shared.storage import DocumentStorage

logger = logging.getLogger(__name__)


class ProcessParams(Params):
    s3_key: S3Key
    reprocess: bool = False
    """Run the object again even if it was processed already."""


class BatchParams(Params):
    s3_keys: list[S3Key] = Field(min_length=1, max_length=100)
    reprocess: bool = False


class TaskParams(Params):
    task_id: uuid.UUID = Field(strict=False)


class PendingParams(Params):
    limit: int = Field(50, ge=1, le=500)


class Orchestrator:
    def __init__(
        self,
        tasks: TaskRepository,
        runner: TaskRunner,
        storage: DocumentStorage,
        agents: Agents,
        http: httpx.AsyncClient,
        charge: Callable[[Principal, int], None] = lambda principal, items: None,
    ) -> None:
        self._charge = charge
        self._tasks = tasks
        self._runner = runner
        self._storage = storage
        self._agents = agents
        self._http = http

    def methods(self) -> list[Method[Any]]:
        return [
            Method(
                "process_document",
                ProcessParams,
                self.process_document,
                "Start processing the object at s3_key; returns the task id.",
            ),
            Method(
                "process_batch",
                BatchParams,
                self.process_batch,
                "Start one task per key (at most 100).",
            ),
            Method(
                "get_task_status",
                TaskParams,
                self.get_task_status,
                "A task's status, stage, timings, result or failure reason.",
            ),
            Method(
                "list_pending_documents",
                PendingParams,
                self.list_pending_documents,
                "Tasks not yet completed or failed, oldest first.",
            ),
            *lookup_methods(
                self.get_document, self.search_documents, self.get_document_stats
            ),
            Method(
                "discover_agents",
                NoParams,
                self.discover_agents,
                "The agents this orchestrator calls, with their health and skills.",
            ),
        ]

    async def submit(
        self,
        s3_key: str,
        submitted_by: str,
        *,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        object_version: str | None = None,
        reprocess: bool = False,
    ) -> dict[str, Any]:
        """Start a task for ``s3_key``. With an ``idempotency_key`` the client
        used before, or for an ``object_version`` that has a task running or
        completed (unless ``reprocess``), that task instead (``replayed``)."""
        cid = correlation_id.get()
        leased = self._runner.has_room()
        task_id = await self._tasks.create(
            s3_key,
            submitted_by=submitted_by,
            correlation_id=cid,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            object_version=object_version,
            reprocess=reprocess,
            lease=leased,
        )
        if task_id is None:
            return await self._earlier(
                s3_key, submitted_by, idempotency_key, fingerprint, object_version
            )
        if leased and not self._runner.start(Claimed(task_id, s3_key, 1, cid)):
            # A stop began while the task was being recorded: hand it back
            # now rather than let another replica wait out the lease.
            await self._tasks.release([task_id])
        log_event(logger, "task.accepted", task_id=str(task_id), s3_key=s3_key)
        return {"task_id": str(task_id), "s3_key": s3_key, "status": "pending"}

    async def _earlier(
        self,
        s3_key: str,
        submitted_by: str,
        idempotency_key: str | None,
        fingerprint: str | None,
        object_version: str | None,
    ) -> dict[str, Any]:
        """The task that stopped a new one: the client's key made it, or it
        runs or ran for the same version of the object."""
        if idempotency_key is not None:
            earlier = await self._tasks.by_idempotency_key(
                submitted_by, idempotency_key
            )
            if earlier is not None:
                return _replay_of(earlier, fingerprint)
        if object_version is not None:
            task = await self._tasks.by_object(s3_key, object_version)
            if task is not None:
                log_event(
                    logger, "task.same_object", task_id=task["task_id"], s3_key=s3_key
                )
                return _replayed(task)
        # The task that was in the way ended between the two statements.
        raise TaskNotFound(idempotency_key or s3_key)

    async def submit_file(
        self,
        data: bytes,
        *,
        file_name: str,
        content_type: str,
        prefix: str,
        submitted_by: str,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> dict[str, Any]:
        """Store a document under ``prefix`` and start its task. The object
        is removed again when no task will read it: the task could not be
        recorded, or an earlier request with the same key made one."""
        key = object_key(prefix, file_name)
        # Its version, so that a process_document of the same object later
        # finds this task as it would any other.
        version = await self._storage.put(key, data, content_type)
        try:
            task = await self.submit(
                key,
                submitted_by,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                object_version=version,
            )
        except BaseException:
            await self._storage.discard(key)
            raise
        if task.get("replayed"):
            await self._storage.discard(key)
        return task

    async def process_document(self, params: ProcessParams, call: Call) -> Any:
        return await self.submit_object(
            params.s3_key, call.principal.client_id, reprocess=params.reprocess
        )

    async def process_batch(self, params: BatchParams, call: Call) -> Any:
        # Each key is a task: the call itself was counted, the rest are now,
        # all or none, before any task starts.
        self._charge(call.principal, len(params.s3_keys) - 1)
        started: dict[str, dict[str, Any]] = {}
        for key in params.s3_keys:
            # A key named twice is one task, reprocessed or not.
            if key not in started:
                started[key] = await self.submit_object(
                    key, call.principal.client_id, reprocess=params.reprocess
                )
        return {"tasks": [started[key] for key in params.s3_keys]}

    async def submit_object(
        self, s3_key: str, submitted_by: str, *, reprocess: bool = False
    ) -> dict[str, Any]:
        """A task for an object already in the bucket (an S3 event, a batch).
        S3 notifies at least once: the same version of an object again finds
        its task, unless a reprocess is asked for."""
        version = await self._storage.version(s3_key)
        return await self.submit(
            s3_key, submitted_by, object_version=version, reprocess=reprocess
        )

    async def get_task_status(self, params: TaskParams, call: Call) -> Any:
        task = await self._tasks.get(params.task_id)
        if task is None:
            raise TaskNotFound(str(params.task_id))
        return task

    async def list_pending_documents(self, params: PendingParams, call: Call) -> Any:
        tasks = await self._tasks.unfinished(params.limit)
        return {"tasks": tasks, "count": len(tasks)}

    # Look-ups go to the archivist under the orchestrator's own token: the
    # caller's role was checked here, and the archivist is not exposed.
    async def get_document(self, params: GetDocumentParams, call: Call) -> Any:
        return await self._agents.archivist.call("get_document", _plain(params))

    async def search_documents(self, params: SearchParams, call: Call) -> Any:
        return await self._agents.archivist.call("search_documents", _plain(params))

    async def get_document_stats(self, params: NoParams, call: Call) -> Any:
        return await self._agents.archivist.call("get_document_stats", {})

    async def discover_agents(self, params: NoParams, call: Call) -> Any:
        agents = (
            self._agents.extractor,
            self._agents.validator,
            self._agents.archivist,
        )
        return {"agents": await asyncio.gather(*(self._describe(a) for a in agents))}

    async def _describe(self, agent: AgentClient) -> dict[str, Any]:
        try:
            response = await self._http.get(
                f"{agent.base_url}/.well-known/agent-card.json"
            )
            response.raise_for_status()
            card = response.json()
        except (httpx.HTTPError, ValueError):
            return {"name": agent.name, "url": agent.base_url, "status": "unreachable"}
        return {
            "name": agent.name,
            "url": agent.base_url,
            "status": "available",
            "version": card.get("version"),
            "skills": [skill.get("id") for skill in card.get("skills", [])],
        }

    async def upload(
        self, request: Request, *, max_bytes: int, prefix: str
    ) -> dict[str, Any]:
        """Store a multipart ``file`` in S3 and start its task. With an
        ``Idempotency-Key``, a retry gets the task the first attempt made."""
        client_id = principal_of(request).client_id
        idempotency_key = _idempotency_key(request)

        # The auth middleware has read the body, within the upload limit.
        body = await request.body()
        upload = await _single_file(request, body)
        content_type = content_type_of(upload)
        data = await upload.read()
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"The file exceeds {max_bytes} bytes")

        fingerprint = None
        if idempotency_key is not None:
            fingerprint = hashlib.sha256(data).hexdigest()
            earlier = await self._tasks.by_idempotency_key(client_id, idempotency_key)
            if earlier is not None:
                # A retry: nothing to store again.
                return _replay_of(earlier, fingerprint)

        task = await self.submit_file(
            data,
            file_name=upload.filename or "document",
            content_type=content_type,
            prefix=prefix,
            submitted_by=client_id,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
        if task.get("replayed"):
            return task
        return {**task, "file_name": upload.filename, "size_bytes": len(data)}


IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def _idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header: 1 to 255 visible ASCII characters."""
    values = request.headers.getlist("idempotency-key")
    if not values:
        return None
    if len(values) > 1 or not IDEMPOTENCY_KEY.fullmatch(values[0]):
        raise InvalidParams(
            "Idempotency-Key must be one header of 1 to 255 visible ASCII characters"
        )
    return values[0]


def _replay_of(
    earlier: tuple[dict[str, Any], str | None], fingerprint: str | None
) -> dict[str, Any]:
    """The task an earlier request with the key made, if it was for the same
    document; a different document under a used key is refused."""
    task, first = earlier
    if first != fingerprint:
        raise InvalidParams(
            "This Idempotency-Key was used for another document",
            data={"reason": "idempotency_key_reused"},
        )
    return _replayed(task)


def _replayed(task: dict[str, Any]) -> dict[str, Any]:
    """What a retry of an upload gets: the task its first attempt made."""
    return {
        "task_id": task["task_id"],
        "s3_key": task["s3_key"],
        "status": task["status"],
        "replayed": True,
    }


def _plain(params: Params) -> dict[str, Any]:
    return params.model_dump(mode="json", exclude_none=True)


async def _single_file(request: Request, body: bytes) -> UploadFile:
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=4)
    except Exception as exc:
        # Starlette raises its own HTTPException for malformed multipart bodies
        # (and for parts whose headers are too long).
        raise InvalidParams(
            "The body is not a multipart/form-data upload the mesh can read"
        ) from exc

    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidParams("Send the document as multipart/form-data field 'file'")
    return upload
