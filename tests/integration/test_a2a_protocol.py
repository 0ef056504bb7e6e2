"""The orchestrator as an A2A 1.0 agent, used by the official ``a2a-sdk``
client (none of our client code) against the running mesh."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    AuthInterceptor,
    Client,
    ClientConfig,
    ClientFactory,
    CredentialService,
)
from a2a.client.client import ClientCallContext
from a2a.helpers import new_data_part, new_raw_part
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError
from a2a.utils.proto_utils import validate_proto_required_fields
from google.protobuf.json_format import MessageToDict, ParseDict

from services.launcher.mesh import BUCKET, LocalMesh
from tests.helpers.corpus import corpus_file
from tests.helpers.evidence import events, log_lines, wait_for_log

pytestmark = pytest.mark.integration

SCHEME = "keycloak"
INVOICE = corpus_file("pdf/sample_invoice.pdf")


class Token(CredentialService):
    """The credentials the card's security scheme asks for."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_credentials(
        self, security_scheme_name: str, context: ClientCallContext | None
    ) -> str | None:
        return self.token if security_scheme_name == SCHEME else None


@pytest.fixture
async def http(mesh: LocalMesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=mesh.tls_context(), timeout=60) as client:
        yield client


@pytest.fixture
async def card(mesh: LocalMesh, http: httpx.AsyncClient) -> AgentCard:
    return await A2ACardResolver(http, mesh.url("orchestrator")).get_agent_card()


@pytest.fixture
def client_as(
    mesh: LocalMesh, http: httpx.AsyncClient, card: AgentCard
) -> Callable[..., Any]:
    async def make(client_id: str | None, *, streaming: bool = True) -> Client:
        factory = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming))
        if client_id is None:
            return factory.create(card)
        token = await client_credentials(mesh, http, card, client_id)
        return factory.create(card, interceptors=[AuthInterceptor(Token(token))])

    return make


async def client_credentials(
    mesh: LocalMesh, http: httpx.AsyncClient, card: AgentCard, client_id: str
) -> str:
    """A token from the flow and the token URL the card declares."""
    scheme = card.security_schemes[SCHEME].oauth2_security_scheme
    token_url = scheme.flows.client_credentials.token_url
    response = await http.post(
        token_url,
        data={"grant_type": "client_credentials"},
        auth=(client_id, mesh.client_secrets[client_id]),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def put_invoice(mesh: LocalMesh, key: str) -> None:
    """An object put by someone else than the mesh, encrypted as the bucket
    requires of every object."""
    mesh.aws.client("s3").put_object(
        Bucket=BUCKET, Key=key, Body=INVOICE.read_bytes(), ServerSideEncryption="AES256"
    )


def message(*parts: Part) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=parts)
    )


def invoice_part() -> Part:
    return new_raw_part(
        INVOICE.read_bytes(), media_type="application/pdf", filename=INVOICE.name
    )


async def events_of(
    client: Client, request: SendMessageRequest
) -> list[StreamResponse]:
    return [event async for event in client.send_message(request)]


def result_of(task: Task) -> dict[str, Any]:
    (artifact,) = task.artifacts
    (part,) = artifact.parts
    data: dict[str, Any] = MessageToDict(part.data)
    return data


async def test_the_served_card_is_a_valid_a2a_1_0_card(
    mesh: LocalMesh, http: httpx.AsyncClient
) -> None:
    served = await http.get(f"{mesh.url('orchestrator')}/.well-known/agent-card.json")

    # Strict: a field the 1.0 definition does not have, or a wrong type, fails.
    card = ParseDict(served.json(), AgentCard(), ignore_unknown_fields=False)
    validate_proto_required_fields(card)
    (interface,) = card.supported_interfaces
    assert interface.url == f"{mesh.url('orchestrator')}/a2a/v1"
    assert (interface.protocol_binding, interface.protocol_version) == (
        "JSONRPC",
        "1.0",
    )
    assert card.capabilities.streaming and card.capabilities.extended_agent_card
    assert [s.id for s in card.skills] == [
        "process-document",
        "look-up-task",
        "search-documents",
    ]
    flow = card.security_schemes[SCHEME].oauth2_security_scheme.flows
    assert flow.client_credentials.token_url == mesh.addresses.token_url


async def test_a_pdf_sent_as_a_file_part_streams_to_an_archived_result(
    client_as: Callable[..., Any], database: asyncpg.Connection
) -> None:
    client = await client_as("document-processor")

    events = await events_of(client, message(invoice_part()))

    kinds = [event.WhichOneof("payload") for event in events]
    assert kinds[0] == "task"
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    states = [
        event.status_update.status.state
        for event in events
        if event.HasField("status_update")
    ]
    assert TaskState.TASK_STATE_WORKING in states
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    (artifact_event,) = [
        e.artifact_update for e in events if e.HasField("artifact_update")
    ]
    result = MessageToDict(artifact_event.artifact.parts[0].data)
    assert result["document_type"] == "invoice"
    assert 0 <= result["validation_score"] <= 100
    assert result["key_fields"]
    stored = await database.fetchval(
        "SELECT s3_key FROM documents WHERE id = $1", uuid.UUID(result["document_id"])
    )
    assert stored.startswith("uploads/")


async def test_an_s3_key_data_part_runs_the_same_pipeline(
    mesh: LocalMesh, client_as: Callable[..., Any]
) -> None:
    key = f"incoming/a2a-{uuid.uuid4().hex}.pdf"
    put_invoice(mesh, key)
    client = await client_as("document-processor", streaming=False)

    (event,) = await events_of(client, message(new_data_part({"s3_key": key})))

    assert event.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert event.task.metadata["s3_key"] == key
    assert result_of(event.task)["document_type"] == "invoice"

    again = await client.get_task(GetTaskRequest(id=event.task.id))
    assert again.status.state == TaskState.TASK_STATE_COMPLETED
    assert result_of(again) == result_of(event.task)


async def test_a_running_task_can_be_read_and_canceled_and_then_runs_no_further(
    mesh: LocalMesh, client_as: Callable[..., Any], database: asyncpg.Connection
) -> None:
    # Objects of their own: the same object again would be the same task.
    keys = [f"incoming/a2a-{uuid.uuid4().hex}.pdf" for _ in range(22)]
    for key in keys:
        put_invoice(mesh, key)
    # An admin: these 30 calls would spend much of the document processor's
    # budget of 300 a minute, which the other tests of the session share.
    client = await client_as("mesh-admin", streaming=False)
    immediately = SendMessageConfiguration(return_immediately=True)

    async def submit(key: str) -> Task:
        request = message(new_data_part({"s3_key": key}))
        request.configuration.CopyFrom(immediately)
        (event,) = await events_of(client, request)
        return event.task

    # More tasks at once than the orchestrator runs (16): some must wait.
    tasks = await asyncio.gather(*(submit(key) for key in keys))
    states = await asyncio.gather(
        *(client.get_task(GetTaskRequest(id=t.id)) for t in tasks[-8:])
    )
    waiting = [t for t in states if t.status.state == TaskState.TASK_STATE_SUBMITTED]
    assert waiting, "no task was still waiting to run"
    last = waiting[0]
    canceled = await client.cancel_task(CancelTaskRequest(id=last.id))

    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    with pytest.raises(TaskNotCancelableError):
        await client.cancel_task(CancelTaskRequest(id=last.id))

    await wait_until_all_end(database, [uuid.UUID(t.id) for t in tasks])
    status = await database.fetchval(
        "SELECT status FROM tasks WHERE id = $1", uuid.UUID(last.id)
    )
    steps = await database.fetchval(
        "SELECT count(*) FROM processing_log WHERE task_id = $1", uuid.UUID(last.id)
    )
    assert status == "canceled"
    assert steps == 0  # nothing was extracted, validated or archived for it


async def wait_until_all_end(
    database: asyncpg.Connection, ids: list[uuid.UUID]
) -> None:
    for _ in range(300):
        unfinished = await database.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])"
            " AND status NOT IN ('completed', 'failed', 'canceled')",
            ids,
        )
        if unfinished == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("tasks still running after 30 s")


async def test_an_unknown_task_is_the_protocols_task_not_found(
    client_as: Callable[..., Any],
) -> None:
    client = await client_as("viewer")

    with pytest.raises(TaskNotFoundError):
        await client.get_task(GetTaskRequest(id=str(uuid.uuid4())))


async def test_list_tasks_pages_through_the_tasks(
    client_as: Callable[..., Any],
) -> None:
    client = await client_as("viewer")

    first = await client.list_tasks(ListTasksRequest(page_size=2))
    second = await client.list_tasks(
        ListTasksRequest(page_size=2, page_token=first.next_page_token)
    )

    assert len(first.tasks) == 2
    assert first.total_size >= 3
    assert {t.id for t in first.tasks}.isdisjoint({t.id for t in second.tasks})


async def count_tasks(database: asyncpg.Connection) -> int:
    return int(await database.fetchval("SELECT count(*) FROM tasks"))


@pytest.mark.parametrize(
    ("client_id", "status"),
    [(None, 401), ("viewer", 403), ("no-roles", 403)],
    ids=["unauthenticated", "viewer", "no-roles"],
)
async def test_a_client_without_a_token_or_the_role_is_refused_and_nothing_starts(
    client_id: str | None,
    status: int,
    client_as: Callable[..., Any],
    database: asyncpg.Connection,
) -> None:
    client = await client_as(client_id)
    before = await count_tasks(database)

    with pytest.raises(A2AClientError) as refused:
        await events_of(client, message(invoice_part()))

    assert isinstance(refused.value.__cause__, httpx.HTTPStatusError)
    assert refused.value.__cause__.response.status_code == status
    assert await count_tasks(database) == before


@pytest.mark.parametrize(
    ("client_id", "skills"),
    [
        ("document-processor", {"process-document", "look-up-task"}),
        ("viewer", {"look-up-task", "search-documents"}),
        ("no-roles", set()),
    ],
)
async def test_the_extended_card_shows_the_skills_the_callers_roles_allow(
    client_id: str, skills: set[str], client_as: Callable[..., Any]
) -> None:
    client = await client_as(client_id)

    extended = await client.get_extended_agent_card(GetExtendedAgentCardRequest())

    assert {skill.id for skill in extended.skills} == skills


async def test_a_viewer_searches_archived_documents_with_a_data_part(
    client_as: Callable[..., Any],
) -> None:
    client = await client_as("viewer", streaming=False)

    search = {"document_type": "invoice", "min_score": 50, "limit": 5}
    (event,) = await events_of(client, message(new_data_part({"search": search})))

    answer = MessageToDict(event.message.parts[0].data)
    assert event.message.role == Role.ROLE_AGENT
    assert answer["documents"]
    assert {d["document_type"] for d in answer["documents"]} == {"invoice"}


@pytest.mark.parametrize(
    ("method", "version"),
    [("GetTask", "2.0"), ("tasks/get", "1.0")],
    ids=["another-major-version", "0.3-name-under-1.0"],
)
async def test_a_version_the_method_does_not_speak_is_the_version_error(
    method: str, version: str, mesh: LocalMesh, card: AgentCard, http: httpx.AsyncClient
) -> None:
    token = await client_credentials(mesh, http, card, "viewer")
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"id": "x"}}

    reply = await http.post(
        card.supported_interfaces[0].url,
        json=request,
        headers={"Authorization": f"Bearer {token}", "A2A-Version": version},
    )

    assert reply.json()["error"]["code"] == -32009


async def test_a_0_3_client_reads_a_task_by_the_old_method_name(
    mesh: LocalMesh,
    card: AgentCard,
    http: httpx.AsyncClient,
    client_as: Callable[..., Any],
) -> None:
    sender = await client_as("document-processor", streaming=False)
    (event,) = await events_of(sender, message(invoice_part()))
    token = await client_credentials(mesh, http, card, "viewer")
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tasks/get",
        "params": {"id": event.task.id},
    }

    # A client of its own: the SDK's factory set A2A-Version on the shared one,
    # and a 0.3 client sends no such header.
    async with httpx.AsyncClient(verify=mesh.tls_context()) as old_client:
        reply = await old_client.post(
            card.supported_interfaces[0].url,
            json=request,
            headers={"Authorization": f"Bearer {token}"},
        )

    task = reply.json()["result"]
    assert task["id"] == event.task.id
    assert task["kind"] == "task"
    assert task["status"]["state"] == "completed"


async def post_a2a(
    mesh: LocalMesh, http: httpx.AsyncClient, card: AgentCard, body: bytes
) -> httpx.Response:
    token = await client_credentials(mesh, http, card, "document-processor")
    return await http.post(
        card.supported_interfaces[0].url,
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "A2A-Version": "1.0",
            "Content-Type": "application/json",
        },
    )


def send_message_body(*parts: dict[str, Any]) -> bytes:
    # NaN is not JSON, but Python writes it, and so do some clients.
    request = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "SendMessage",
        "params": {
            "message": {"messageId": "m-1", "role": "ROLE_USER", "parts": list(parts)},
            "configuration": {"returnImmediately": True},
        },
    }
    return json.dumps(request).encode()


PDF_PART = {"raw": "JVBERi0xLjQK", "mediaType": "application/pdf", "filename": "a.pdf"}


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ((PDF_PART, PDF_PART), -32602),  # two documents in one message
        (({"text": "only words"},), -32602),
        (({**PDF_PART, "mediaType": "image/png", "filename": "a.png"},), -32005),
        (({"url": "s3://another-bucket/a.pdf"},), -32602),
        (({"url": "s3://a2a-mesh-documents/../etc/passwd"},), -32602),
        (({"url": "https://example.invalid/a.pdf"},), -32602),
        (({"data": {"s3_key": 7}},), -32602),
        (({**PDF_PART, "raw": "!!!not base64"},), -32602),
        (({"url": "s3://a2a-mesh-documents//uploads/a.pdf"},), -32602),
        (
            ({"url": "s3://a2a-mesh-documents/a.txt", "mediaType": "application/pdf"},),
            -32005,
        ),
        (({"data": {"s3_key": "a.pdf", "weight": float("nan")}},), -32602),
    ],
)
async def test_a_message_the_mesh_cannot_take_is_a_precise_error_and_starts_nothing(
    parts: tuple[dict[str, Any], ...],
    code: int,
    mesh: LocalMesh,
    http: httpx.AsyncClient,
    card: AgentCard,
    database: asyncpg.Connection,
) -> None:
    before = await count_tasks(database)

    reply = await post_a2a(mesh, http, card, send_message_body(*parts))

    assert reply.status_code == 200
    assert reply.json()["error"]["code"] == code
    assert await count_tasks(database) == before


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[" * 5000 + b"]" * 5000,
        json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": 5}}
        ).encode(),
        send_message_body({"data": {"deep": "HOLE"}}).replace(
            b'"HOLE"', b"[" * 3000 + b"]" * 3000
        ),
    ],
    ids=["not-json", "deep-array", "wrong-type", "deep-data-part"],
)
async def test_malformed_requests_get_protocol_errors_not_server_errors(
    body: bytes, mesh: LocalMesh, http: httpx.AsyncClient, card: AgentCard
) -> None:
    reply = await post_a2a(mesh, http, card, body)

    assert reply.status_code < 500, reply.text[:300]
    assert reply.json()["error"]["code"] in (-32700, -32600, -32602)
    health = await http.get(f"{mesh.url('orchestrator')}/health")
    assert health.status_code == 200


@pytest.mark.parametrize(
    ("request_body", "version"),
    [
        (
            {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "x": 1, "params": {}},
            "1.0",
        ),
        ({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": 5}}, "1.0"),
        ({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {}}, None),
    ],
    ids=["unknown-member", "unreadable-params", "0.3-request-without-id"],
)
async def test_an_unreadable_request_is_logged_as_the_callers_mistake(
    request_body: dict[str, Any],
    version: str | None,
    mesh: LocalMesh,
    http: httpx.AsyncClient,
    card: AgentCard,
) -> None:
    """A warning, not an ERROR with a traceback: the fuzzer found the SDK
    logging every such request as a failure of the orchestrator."""
    token = await client_credentials(mesh, http, card, "document-processor")
    cid = f"a2a-unreadable-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-ID": cid}
    # A client of its own: the SDK's factory set A2A-Version on the shared one.
    async with httpx.AsyncClient(verify=mesh.tls_context()) as caller:
        reply = await caller.post(
            card.supported_interfaces[0].url,
            json=request_body,
            headers=headers | ({"A2A-Version": version} if version else {}),
        )

    assert reply.json()["error"]["code"] in (-32600, -32602)
    # The SDK's lines come before the audit's: once that is there, so are they.
    await wait_for_log(mesh, "orchestrator", cid)
    lines = [
        line
        for line in log_lines(mesh, "orchestrator")
        if line.get("correlation_id") == cid and line["logger"].startswith("a2a.")
    ]
    assert any(line["event"].startswith("Failed to") for line in lines), lines
    assert all(line["level"] == "warning" for line in lines), lines
    assert not any("exception" in line for line in lines), lines


async def test_only_the_client_that_sent_a_task_may_cancel_it(
    mesh: LocalMesh, client_as: Callable[..., Any]
) -> None:
    key = f"incoming/a2a-{uuid.uuid4().hex}.pdf"
    put_invoice(mesh, key)
    sender = await client_as("document-processor", streaming=False)
    request = message(new_data_part({"s3_key": key}))
    request.configuration.return_immediately = True
    (event,) = await events_of(sender, request)
    other = await client_as("lambda-trigger", streaming=False)

    with pytest.raises(TaskNotCancelableError):
        await other.cancel_task(CancelTaskRequest(id=event.task.id))


async def test_each_a2a_answer_is_audited_with_its_outcome(
    mesh: LocalMesh, card: AgentCard, http: httpx.AsyncClient
) -> None:
    token = await client_credentials(mesh, http, card, "viewer")
    correlation = f"a2a-audit-{uuid.uuid4().hex[:8]}"
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "GetTask",
        "params": {"id": str(uuid.uuid4())},
    }

    reply = await http.post(
        card.supported_interfaces[0].url,
        json=request,
        headers={
            "Authorization": f"Bearer {token}",
            "A2A-Version": "1.0",
            "X-Correlation-ID": correlation,
        },
    )

    assert reply.json()["error"]["code"] == -32001
    (line,) = events(
        mesh, "orchestrator", "method_executed", correlation_id=correlation
    )
    assert (line["method"], line["outcome"], line["error_code"]) == (
        "a2a:GetTask",
        "error",
        -32001,
    )


async def test_streams_begin_submitted_and_show_each_stage_when_many_run_at_once(
    client_as: Callable[..., Any],
) -> None:
    # The lambda may send; few other tests spend its rate budget.
    client = await client_as("lambda-trigger")
    text = corpus_file("txt/report-01.txt")
    part = new_raw_part(text.read_bytes(), media_type="text/plain", filename=text.name)

    streams = await asyncio.gather(
        *(events_of(client, message(part)) for _ in range(8))
    )

    for stream in streams:
        assert stream[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
        stages = [
            e.status_update.status.message.parts[0].text
            for e in stream
            if e.HasField("status_update")
            and e.status_update.status.state == TaskState.TASK_STATE_WORKING
        ]
        assert stages == [
            "Extracting the document",
            "Validating the document",
            "Archiving the document",
        ]
