"""Tasks, rows and stand-in agents for the orchestrator's repository, runner
and pipeline tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.orchestrator.pipeline import Agents
from services.orchestrator.tasks import TaskRepository
from shared.client import AgentClient
from shared.database import Database

T = TypeVar("T")

Answer = Callable[[str, dict[str, Any]], Awaitable[Any]]


def unique_key(tag: str = "doc") -> str:
    return f"incoming/tests/{tag}-{uuid.uuid4().hex}.txt"


async def new_task(
    tasks: TaskRepository,
    key: str | None = None,
    *,
    lease: bool = True,
    version: str | None = None,
    reprocess: bool = False,
) -> uuid.UUID:
    """A task ``tasks`` creates, which must be a new one."""
    made = await tasks.create(
        key or unique_key(),
        submitted_by="lambda-trigger",
        correlation_id=None,
        object_version=version,
        reprocess=reprocess,
        lease=lease,
    )
    assert made is not None, "the task was not created"
    return made


async def row(database: Database, task_id: uuid.UUID) -> dict[str, Any]:
    """Every column of the task, as stored."""
    found = await database.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
    assert found is not None, f"no task {task_id}"
    return dict(found)


async def eventually(
    probe: Callable[[], Awaitable[T]], *, seconds: float = 5.0, every: float = 0.02
) -> T:
    """The first truthy answer of ``probe``, asked for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        answer = await probe()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"nothing within {seconds} s"
        await asyncio.sleep(every)


class FakeAgent(AgentClient):
    """An agent that answers with ``answer(method, params)`` instead of
    calling anyone, and remembers what it was asked."""

    def __init__(self, name: str, answer: Answer) -> None:
        # Nothing of the real client is used: no HTTP, no tokens.
        self.name = name
        self.base_url = f"https://{name}.test"
        self._answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self.calls.append((method, params))
        return await self._answer(method, params)


def raising(error: Exception) -> Answer:
    """An agent's answer that is always ``error``."""

    async def answer(method: str, params: dict[str, Any]) -> Any:
        raise error

    return answer


async def extracted(method: str, params: dict[str, Any]) -> Any:
    return {"document_type": "report", "format": "txt", "page_count": 1}


async def validated(method: str, params: dict[str, Any]) -> Any:
    return {"score": 90, "passed": True}


async def archived(method: str, params: dict[str, Any]) -> Any:
    return {"document_id": str(uuid.uuid5(uuid.NAMESPACE_URL, params["task_id"]))}


def agents(
    extractor: Answer = extracted,
    validator: Answer = validated,
    archivist: Answer = archived,
) -> Agents:
    """Three stand-in agents; each answers as a working one unless told."""
    return Agents(
        extractor=FakeAgent("extractor", extractor),
        validator=FakeAgent("validator", validator),
        archivist=FakeAgent("archivist", archivist),
    )


def calls(agent: AgentClient) -> list[tuple[str, dict[str, Any]]]:
    assert isinstance(agent, FakeAgent)
    return agent.calls
