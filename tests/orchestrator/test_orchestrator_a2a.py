"""The A2A card and the mapping of the mesh's tasks to A2A tasks and events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from a2a.types.a2a_pb2 import (
    AgentCard,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.proto_utils import validate_proto_required_fields
from google.protobuf.json_format import MessageToDict, ParseDict

from services.orchestrator.a2a_card import card_for, public_card
from services.orchestrator.a2a_tasks import follow, task_message
from services.orchestrator.settings import OrchestratorSettings
from shared.auth.policy import SecurityPolicy

TASK_ID = "9b2f5c1e-4d3a-4f6b-8c7d-1e2f3a4b5c6d"


def settings(**overrides: Any) -> OrchestratorSettings:
    values: dict[str, Any] = {
        "issuer": "https://mesh.example.com/realms/a2a-mesh",
        "public_url": "https://mesh.example.com",
        "db_ca_file": Path("/ca.pem"),
        **overrides,
    }
    return OrchestratorSettings(**values)


def row(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "task_id": TASK_ID,
        "s3_key": "incoming/a.pdf",
        "status": status,
        "stage": fields.pop("stage", None),
        "reason": None,
        "reason_code": None,
        "result": None,
        "attempts": 1,
        "updated_at": "2026-12-04T20:00:00.250000+00:00",
        **fields,
    }


RESULT = {
    "document_id": "5e1d0c3b-8a9f-4e2d-b1c0-7f6e5d4c3b2a",
    "document_type": "invoice",
    "validation_score": 92,
    "validation_passed": True,
    "format": "pdf",
    "page_count": 1,
    "key_fields": {"invoice_number": "INV-1"},
}


def test_the_card_round_trips_through_the_strict_1_0_definition() -> None:
    served = MessageToDict(public_card(settings()))

    card = ParseDict(served, AgentCard(), ignore_unknown_fields=False)

    validate_proto_required_fields(card)
    assert card.supported_interfaces[0].url == "https://mesh.example.com/a2a/v1"
    flows = card.security_schemes["keycloak"].oauth2_security_scheme.flows
    assert flows.client_credentials.token_url == (
        "https://mesh.example.com/realms/a2a-mesh/protocol/openid-connect/token"
    )
    assert "client-certificate" not in card.security_schemes


def test_the_card_requires_a_client_certificate_where_the_alb_asks_for_one() -> None:
    card = public_card(
        settings(trusted_proxies=("10.0.0.0/24",), trust_alb_client_certificates=True)
    )

    assert card.security_schemes["client-certificate"].HasField("mtls_security_scheme")
    (requirement,) = card.security_requirements
    assert set(requirement.schemes) == {"keycloak", "client-certificate"}


def test_an_admin_sees_every_skill_on_the_extended_card() -> None:
    roles = SecurityPolicy.load().roles

    card = card_for(settings(), roles, ["admin"])

    assert [s.id for s in card.skills] == [s.id for s in public_card(settings()).skills]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("pending", TaskState.TASK_STATE_SUBMITTED),
        ("extracting", TaskState.TASK_STATE_WORKING),
        ("archiving", TaskState.TASK_STATE_WORKING),
        ("completed", TaskState.TASK_STATE_COMPLETED),
        ("failed", TaskState.TASK_STATE_FAILED),
        ("canceled", TaskState.TASK_STATE_CANCELED),
    ],
)
def test_each_status_is_its_a2a_state(status: str, state: TaskState) -> None:
    assert task_message(row(status)).status.state == state


def test_a_failed_task_says_why_in_its_status_message() -> None:
    task = task_message(
        row("failed", reason="The PDF is encrypted", reason_code="encrypted")
    )

    assert task.status.message.parts[0].text == "The PDF is encrypted"
    assert MessageToDict(task.status.message.metadata) == {"reason_code": "encrypted"}
    assert not task.artifacts


def test_a_completed_task_carries_its_result_as_a_data_artifact() -> None:
    task = task_message(row("completed", result={**RESULT, "internal": "x"}))

    (artifact,) = task.artifacts
    data = MessageToDict(artifact.parts[0].data)
    assert data["document_type"] == "invoice"
    assert data["key_fields"] == {"invoice_number": "INV-1"}
    assert "internal" not in data
    assert task.status.timestamp.ToJsonString() == "2026-12-04T20:00:00.250Z"


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


async def test_following_a_task_yields_each_change_then_the_result_then_the_end() -> (
    None
):
    rows = iter(
        [
            row("extracting", stage="extracting"),
            row("extracting", stage="extracting"),  # unchanged: nothing sent
            row("validating", stage="validating"),
            row("completed", stage="archiving", result=RESULT),
        ]
    )

    async def fetch() -> dict[str, Any]:
        return next(rows)

    async def nothing_heard() -> None:
        return None

    events = await collect(
        follow(
            row("pending"), fetch, nothing_heard, limit_seconds=60, clock=lambda: 0.0
        )
    )

    assert isinstance(events[0], Task)
    kinds = [type(e).__name__ for e in events[1:]]
    assert kinds == [
        "TaskStatusUpdateEvent",
        "TaskStatusUpdateEvent",
        "TaskArtifactUpdateEvent",
        "TaskStatusUpdateEvent",
    ]
    assert isinstance(events[3], TaskArtifactUpdateEvent)
    last = events[-1]
    assert isinstance(last, TaskStatusUpdateEvent)
    assert last.status.state == TaskState.TASK_STATE_COMPLETED


async def test_stages_heard_on_this_replica_are_each_sent_however_short() -> None:
    heard = iter(["extracting", "validating", "archiving", "completed"])

    async def fetch() -> dict[str, Any]:
        return row("completed", stage="archiving", result=RESULT)

    async def wait() -> str | None:
        return next(heard)

    events = await collect(
        follow(row("pending"), fetch, wait, limit_seconds=60, clock=lambda: 0.0)
    )

    stages = [e.status.message.parts[0].text for e in events[1:4]]
    assert stages == [
        "Extracting the document",
        "Validating the document",
        "Archiving the document",
    ]
    assert isinstance(events[4], TaskArtifactUpdateEvent)
    assert events[5].status.state == TaskState.TASK_STATE_COMPLETED


async def test_following_stops_at_its_time_limit() -> None:
    ticks = iter([0.0, 10.0, 61.0])

    async def fetch() -> dict[str, Any]:
        return row("extracting", stage="extracting")

    async def nothing_heard() -> None:
        return None

    events = await collect(
        follow(
            row("pending"),
            fetch,
            nothing_heard,
            limit_seconds=60,
            clock=lambda: next(ticks),
        )
    )

    assert len(events) == 2  # the task, then its one change; then time is up
