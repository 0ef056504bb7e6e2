"""A2A 1.0 over JSON-RPC: the SDK speaks the protocol (parsing, version
check, errors, server-sent events); this handler answers from the mesh's own
tasks table and pipeline, so a task started through A2A is the same task as
one started with ``process_document``, on any replica.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import urlsplit

from a2a.helpers import new_data_part
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import RequestHandler
from a2a.server.request_handlers.request_handler import validate_request_params
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import (
    ContentTypeNotSupportedError,
    InternalError,
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from google.protobuf.json_format import MessageToDict
from pydantic import ValidationError

from services.orchestrator.a2a_card import DOCUMENT_TYPES, card_for
from services.orchestrator.a2a_tasks import (
    STATUSES_OF,
    Event,
    follow,
    task_message,
)
from services.orchestrator.methods import Orchestrator, ProcessParams
from services.orchestrator.runner import TaskRunner
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.tasks import TERMINAL, TaskRepository
from services.orchestrator.upload import ACCEPTED_TYPES
from shared.auth.policy import SecurityPolicy
from shared.auth.principal import Principal
from shared.errors import InvalidParams, MeshError
from shared.jsonrpc import Call
from shared.lookup import SearchParams

# How often a followed task is read again, for what another replica did.
_POLL_SECONDS = 0.25
# A stream or a blocking SendMessage follows its task this long at most; the
# caller may then GetTask or SubscribeToTask again.
_FOLLOW_SECONDS = 300.0
_DEFAULT_PAGE = 50
_MAX_PAGE = 100
T = TypeVar("T")
_EXTENSION_OF = {media_type: ext for ext, media_type in ACCEPTED_TYPES.items()}


class MeshA2AHandler(RequestHandler):
    def __init__(
        self,
        settings: OrchestratorSettings,
        policy: SecurityPolicy,
        orchestrator: Orchestrator,
        tasks: TaskRepository,
        runner: TaskRunner,
    ) -> None:
        self._settings = settings
        self._policy = policy
        self._orchestrator = orchestrator
        self._tasks = tasks
        self._runner = runner

    @validate_request_params
    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        search = _search_of(params.message)
        if search is not None:
            return await self._search(params.message, search, context)

        task_id = await self._start(params.message, context)
        if not params.configuration.return_immediately:
            async for _ in self._follow(task_id, new=True):
                pass
        return task_message(await self._row(task_id))

    @validate_request_params
    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event | Message]:
        search = _search_of(params.message)
        if search is not None:
            yield await self._search(params.message, search, context)
            return

        task_id = await self._start(params.message, context)
        async for event in self._follow(task_id, new=True):
            yield event

    @validate_request_params
    async def on_get_task(
        self, params: GetTaskRequest, context: ServerCallContext
    ) -> Task | None:
        return task_message(await self._row(params.id))

    @validate_request_params
    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        if params.context_id:
            # Each task is its own context: the filter names one task.
            try:
                rows = [await self._row(params.context_id)]
            except TaskNotFoundError:
                rows = []
            return ListTasksResponse(
                tasks=[
                    task_message(r, include_artifacts=params.include_artifacts)
                    for r in rows
                ],
                page_size=max(len(rows), 1),
                total_size=len(rows),
            )

        size = params.page_size or _DEFAULT_PAGE
        if not 1 <= size <= _MAX_PAGE:
            raise InvalidParamsError(f"pageSize must be 1 to {_MAX_PAGE}")
        offset = _offset(params.page_token)
        statuses = None
        if params.status != TaskState.TASK_STATE_UNSPECIFIED:
            statuses = STATUSES_OF.get(params.status, ())
        after = None
        if params.HasField("status_timestamp_after"):
            after = params.status_timestamp_after.ToDatetime(tzinfo=UTC)
        rows, total = await _guarded(
            self._tasks.page(statuses, limit=size, offset=offset, updated_after=after)
        )
        following = offset + len(rows)
        return ListTasksResponse(
            tasks=[
                task_message(row, include_artifacts=params.include_artifacts)
                for row in rows
            ],
            next_page_token=str(following) if following < total else "",
            page_size=size,
            total_size=total,
        )

    @validate_request_params
    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        row = await self._row(params.id)
        principal: Principal = context.state["principal"]
        if (
            row["submitted_by"] != principal.client_id
            and "admin" not in principal.roles
        ):
            raise TaskNotCancelableError(
                "Only the client that sent a task may cancel it"
            )
        if row["status"] in TERMINAL:
            raise TaskNotCancelableError(f"The task is already {row['status']}")
        task_id = uuid.UUID(row["task_id"])
        if not await _guarded(self._tasks.cancel(task_id)):
            raise TaskNotCancelableError(
                "The task has ended, or is archiving its document: too late to undo"
            )
        self._runner.cancel(task_id)
        return task_message(await self._row(row["task_id"]))

    @validate_request_params
    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        row = await self._row(params.id)
        if row["status"] in TERMINAL:
            raise UnsupportedOperationError(
                f"The task is already {row['status']}; read it with GetTask"
            )
        async for event in self._follow(row["task_id"], new=False):
            yield event

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        principal: Principal = context.state["principal"]
        return card_for(self._settings, self._policy.roles, principal.roles)

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self,
        params: ListTaskPushNotificationConfigsRequest,
        context: ServerCallContext,
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self,
        params: DeleteTaskPushNotificationConfigRequest,
        context: ServerCallContext,
    ) -> None:
        raise PushNotificationNotSupportedError

    async def _start(self, message: Message, context: ServerCallContext) -> str:
        """Store the message's document if it carries the bytes, then start
        the same task ``process_document`` would; its id. Nothing is awaited
        after the task starts, so that a follower opened next hears every
        stage."""
        if message.role != Role.ROLE_USER:
            raise InvalidParamsError("A client's message has the role ROLE_USER")
        if message.task_id:
            raise UnsupportedOperationError(
                "A task takes no further messages; send a new one"
            )
        principal: Principal = context.state["principal"]
        (part,) = _document_parts(message)

        if part.WhichOneof("content") == "raw":
            submitted = await self._submit_file(part, principal.client_id)
        else:
            key = self._key_of(part)
            submitted = await _guarded(
                self._orchestrator.submit_object(key, principal.client_id)
            )
        return str(submitted["task_id"])

    async def _submit_file(self, part: Part, client_id: str) -> dict[str, Any]:
        media_type = _declared_type(part)
        limit = self._policy.limits.max_upload_bytes
        if len(part.raw) > limit:
            raise InvalidParamsError(f"The file exceeds {limit} bytes")
        if not part.raw:
            raise InvalidParamsError("The file part is empty")
        return await _guarded(
            self._orchestrator.submit_file(
                part.raw,
                file_name=part.filename or f"document{_EXTENSION_OF[media_type]}",
                content_type=media_type,
                prefix=self._settings.upload_prefix,
                submitted_by=client_id,
            )
        )

    def _key_of(self, part: Part) -> str:
        kind = part.WhichOneof("content")
        if kind == "url":
            address = urlsplit(part.url)
            bucket = self._settings.s3_bucket
            if (
                address.scheme != "s3"
                or address.netloc != bucket
                or address.query
                or address.fragment
                or not address.path.startswith("/")
            ):
                raise InvalidParamsError(f"A file URL must be s3://{bucket}/<key>")
            key: object = address.path[1:]
        else:
            key = _data_of(part).get("s3_key")
        try:
            checked = ProcessParams.model_validate({"s3_key": key}).s3_key
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidParamsError(f"s3_key: {first['msg']}") from None
        if part.media_type or part.filename:
            # What the caller says the object is must be what its key says.
            _declared_type(part, key=checked)
        return checked

    async def _search(
        self, message: Message, search: dict[str, Any], context: ServerCallContext
    ) -> Message:
        try:
            params = SearchParams.model_validate(_whole_numbers(search))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "search"
            raise InvalidParamsError(f"search.{where}: {first['msg']}") from None
        principal: Principal = context.state["principal"]
        call = Call(principal=principal, correlation_id=None, path="/a2a/v1")
        found = await _guarded(self._orchestrator.search_documents(params, call))
        return Message(
            message_id=str(uuid.uuid4()),
            role=Role.ROLE_AGENT,
            context_id=message.context_id,
            parts=[new_data_part(found, media_type="application/json")],
        )

    async def _row(self, task_id: str) -> dict[str, Any]:
        try:
            key = uuid.UUID(task_id)
        except ValueError:
            raise TaskNotFoundError(f"No task {task_id[:64]!r}") from None
        row = await _guarded(self._tasks.get(key))
        if row is None:
            raise TaskNotFoundError(f"No task {task_id}")
        return row

    async def _follow(self, task_id: str, *, new: bool) -> AsyncIterator[Event]:
        """Follow a task; a ``new`` one from its submission, whatever stage
        it has reached by the time the table is read."""
        key = uuid.UUID(task_id)
        with self._tasks.changes.follow(key) as heard:
            row = await self._row(task_id)
            if new:
                # Stages it entered meanwhile are in ``heard``, in order.
                row = {**row, "status": "pending", "stage": None, "result": None}

            async def fetch() -> dict[str, Any] | None:
                return await _guarded(self._tasks.get(key))

            async def wait() -> str | None:
                try:
                    return await asyncio.wait_for(heard.get(), _POLL_SECONDS)
                except TimeoutError:
                    return None

            async for event in follow(
                row, fetch, wait, limit_seconds=_FOLLOW_SECONDS, clock=time.monotonic
            ):
                yield event


def _document_parts(message: Message) -> list[Part]:
    """The one part naming a document: bytes, an s3:// URL or ``s3_key``."""
    found = [
        part
        for part in message.parts
        if part.WhichOneof("content") in ("raw", "url")
        or (part.WhichOneof("content") == "data" and _data_of(part).get("s3_key"))
    ]
    if len(found) != 1:
        raise InvalidParamsError(
            "Send one document per message: a file part (bytes or s3:// URL)"
            ' or a data part {"s3_key": ...}'
        )
    return found


def _search_of(message: Message) -> dict[str, Any] | None:
    for part in message.parts:
        if part.WhichOneof("content") == "data":
            search = _data_of(part).get("search")
            if search is not None:
                if not isinstance(search, dict):
                    raise InvalidParamsError("search must be an object")
                return search
    return None


def _data_of(part: Part) -> dict[str, Any]:
    try:
        value = MessageToDict(part.data)
    except ValueError:
        # protobuf's Value holds NaN and infinities that JSON cannot.
        raise InvalidParamsError("A data part's numbers must be finite") from None
    return value if isinstance(value, dict) else {}


def _whole_numbers(value: Any) -> Any:
    """A data part's numbers arrive as floats (protobuf's Struct has no
    integers): 80.0 is read as 80 again, 80.5 stays a float and is refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _declared_type(part: Part, *, key: str = "") -> str:
    """The document's media type: what the part declares (parameters and
    case aside; octet-stream means "see the name"), which must agree with
    the file name or key, and be one the mesh reads."""
    declared = part.media_type.split(";")[0].strip().lower()
    named = _media_type_of(part.filename or key)
    if declared in ("", "application/octet-stream"):
        declared = named
    if named and declared != named:
        raise ContentTypeNotSupportedError(
            f"{part.filename or key!r} is {named}, but the part says {declared}"
        )
    if declared not in DOCUMENT_TYPES:
        raise ContentTypeNotSupportedError(
            f"Documents are {', '.join(DOCUMENT_TYPES)}; not {declared or '?'}"
        )
    return declared


def _media_type_of(filename: str) -> str:
    for extension, media_type in ACCEPTED_TYPES.items():
        if filename.lower().endswith(extension):
            return media_type
    return ""


def _offset(token: str) -> int:
    if not token:
        return 0
    if not token.isdecimal() or len(token) > 9:
        raise InvalidParamsError("pageToken is not one this agent gave")
    return int(token)


async def _guarded(work: Awaitable[T]) -> T:
    """Await ``work``; the mesh's own refusals become the protocol's errors."""
    try:
        return await work
    except InvalidParams as exc:
        raise InvalidParamsError(exc.message) from None
    except MeshError as exc:
        raise InternalError(exc.message) from None
