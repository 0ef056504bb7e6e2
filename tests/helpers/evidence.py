"""What a request left behind in the running mesh: the refusal it got, log
lines carrying its correlation id, rows in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import httpx

from services.launcher.mesh import LocalMesh


def log_lines(mesh: LocalMesh, process: str) -> list[dict[str, Any]]:
    """Every JSON line of a process's log (uvicorn's plain lines skipped)."""
    path = mesh.log_dir / f"{process}.log"
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not raw.startswith("{"):
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def events(
    mesh: LocalMesh,
    process: str,
    event: str,
    *,
    correlation_id: str | None = None,
    **fields: Any,
) -> list[dict[str, Any]]:
    """Log lines of ``event`` in ``process``'s log, filtered by the fields given."""
    wanted = dict(fields)
    if correlation_id is not None:
        wanted["correlation_id"] = correlation_id
    return [
        line
        for line in log_lines(mesh, process)
        if line.get("event") == event
        and all(line.get(k) == v for k, v in wanted.items())
    ]


def executed(mesh: LocalMesh, process: str, correlation_id: str) -> int:
    """How many methods ``process`` ran for the request with ``correlation_id``."""
    return len(events(mesh, process, "method_executed", correlation_id=correlation_id))


def all_logs(mesh: LocalMesh) -> dict[str, str]:
    return {
        path.name: path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(mesh.log_dir.glob("*.log"))
    }


def assert_refused(
    response: httpx.Response,
    *,
    status: int,
    code: int,
    reason: str | None = None,
    challenge: str | None = None,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """The exact refusal: HTTP status, JSON-RPC code, ``data.reason`` and, when
    given, the ``WWW-Authenticate`` challenge; none when not given."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["jsonrpc"] == "2.0"
    error = body["error"]
    assert error["code"] == code, body
    if reason is not None:
        assert isinstance(error.get("data"), dict), body
        assert error["data"].get("reason") == reason, body
    if challenge is None:
        assert "www-authenticate" not in response.headers
    else:
        assert response.headers.get("www-authenticate") == challenge
    if correlation_id is not None:
        assert response.headers.get("x-correlation-id") == correlation_id
    return body


async def task_and_document_rows(database: asyncpg.Connection, key: str) -> int:
    tasks = await database.fetchval("SELECT count(*) FROM tasks WHERE s3_key = $1", key)
    documents = await database.fetchval(
        "SELECT count(*) FROM documents WHERE s3_key = $1", key
    )
    return int(tasks) + int(documents)


async def assert_nothing_ran(
    mesh: LocalMesh,
    database: asyncpg.Connection,
    process: str,
    correlation_id: str,
    *,
    key: str | None = None,
) -> None:
    """No method ran for the request in ``process``, and no task or document
    names ``key``, nor does any line of ``process``'s log."""
    assert executed(mesh, process, correlation_id) == 0
    if key is None:
        return
    assert await task_and_document_rows(database, key) == 0
    log = (mesh.log_dir / f"{process}.log").read_text(encoding="utf-8")
    assert key not in log


async def security_events(
    database: asyncpg.Connection,
    correlation_id: str,
    *,
    expect: int = 1,
    seconds: float = 5.0,
) -> list[asyncpg.Record]:
    """The ``security_events`` rows of a request, waiting (boundedly) for the
    audit's background writer to store at least ``expect`` of them."""
    deadline = time.monotonic() + seconds
    while True:
        rows = await database.fetch(
            "SELECT service, event, outcome, reason, principal, client_id, method,"
            " path, client_address, jti_prefix, correlation_id FROM security_events"
            " WHERE correlation_id = $1 ORDER BY id",
            correlation_id,
        )
        if len(rows) >= expect or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def wait_for_log(
    mesh: LocalMesh,
    process: str,
    correlation_id: str,
    *,
    seconds: float = 10.0,
) -> list[dict[str, Any]]:
    """Lines of ``process``'s log with ``correlation_id``, once there is one."""
    deadline = time.monotonic() + seconds
    while True:
        lines = [
            line
            for line in log_lines(mesh, process)
            if line.get("correlation_id") == correlation_id
        ]
        if lines or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.1)
