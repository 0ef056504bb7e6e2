"""Hostile input from an authenticated caller: oversized and deeply nested
bodies, batches, bad S3 keys, loose parameters, malformed JSON and uploads
the orchestrator must not take. Each is refused before anything runs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.launcher.mesh import BUCKET, LocalMesh
from tests.helpers.evidence import assert_nothing_ran, assert_refused, security_events
from tests.helpers.raw import (
    RawRequest,
    bearer,
    http_client,
    new_correlation_id,
    rpc_body,
    send,
    unique_key,
)
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

FRONT = "orchestrator"
ROLES = ["document-processor"]
MAX_BODY = 1 << 20  # policy.toml: limits.max_body_bytes.default
MAX_DEPTH = 32  # policy.toml: limits.max_json_depth
MAX_UPLOAD = 25 << 20  # policy.toml: limits.max_upload_bytes


def _oversized(key: str) -> bytes:
    """A good ``process_document`` request padded past the body limit with
    whitespace, which JSON allows: only the size is wrong with it."""
    body = rpc_body("process_document", {"s3_key": key})
    return body + b" " * (MAX_BODY + 1 - len(body))


def _nested(key: str, levels: int) -> bytes:
    """``process_document`` for ``key`` with ``levels`` containers in all: the
    request object, its params, and arrays in an extra field. Written as text,
    since a JSON encoder has a depth limit of its own."""
    arrays = levels - 2
    note = "[" * arrays + "0" + "]" * arrays
    return (
        '{"jsonrpc": "2.0", "id": 1, "method": "process_document",'
        f' "params": {{"s3_key": {json.dumps(key)}, "note": {note}}}}}'
    ).encode()


async def _run(
    mesh: LocalMesh, forge: TokenForge, body: bytes
) -> tuple[httpx.Response, RawRequest]:
    request = bearer(FRONT, body, forge.valid(FRONT, ROLES))
    return await send(mesh, request), request


async def test_body_over_the_limit_is_413_before_any_method_runs(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    key = unique_key("too-large")

    response, request = await _run(mesh, forge, _oversized(key))

    assert_refused(response, status=413, code=-32600, reason="too_large")
    await assert_nothing_ran(
        mesh, database, FRONT, str(request.correlation_id), key=key
    )


async def test_chunked_body_over_the_limit_is_413_before_any_method_runs(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """No Content-Length to refuse early: the limit holds on the bytes read."""
    key = unique_key("too-large-chunked")
    body = _oversized(key)
    cid = new_correlation_id()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    async with http_client(mesh) as http:
        response = await http.post(
            f"{mesh.url(FRONT)}/a2a",
            content=chunks(),
            headers={
                "Authorization": f"Bearer {forge.valid(FRONT, ROLES)}",
                "Content-Type": "application/json",
                "X-Correlation-ID": cid,
            },
        )

    assert_refused(response, status=413, code=-32600, reason="too_large")
    await assert_nothing_ran(mesh, database, FRONT, cid, key=key)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 500, 5000])
async def test_json_nested_deeper_than_the_limit_is_too_deep(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, levels: int
) -> None:
    key = unique_key("deep")

    response, request = await _run(mesh, forge, _nested(key, levels))

    assert_refused(response, status=400, code=-32600, reason="too_deep")
    await assert_nothing_ran(
        mesh, database, FRONT, str(request.correlation_id), key=key
    )


async def test_json_exactly_at_the_depth_limit_passes_the_depth_check(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    """The boundary: 32 levels are read, and refused for the unknown field."""
    key = unique_key("deep-enough")

    response, request = await _run(mesh, forge, _nested(key, MAX_DEPTH))

    assert_refused(response, status=200, code=-32602)
    await assert_nothing_ran(
        mesh, database, FRONT, str(request.correlation_id), key=key
    )


async def test_batch_is_refused(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    keys = [unique_key("batch"), unique_key("batch")]
    batch = [
        {
            "jsonrpc": "2.0",
            "id": n,
            "method": "process_document",
            "params": {"s3_key": k},
        }
        for n, k in enumerate(keys)
    ]

    response, request = await _run(mesh, forge, json.dumps(batch).encode())

    assert_refused(response, status=400, code=-32600)
    for key in keys:
        await assert_nothing_ran(
            mesh, database, FRONT, str(request.correlation_id), key=key
        )


BAD_KEYS = {
    "parent segment": "../etc/passwd",
    "parent segment inside": "uploads/../../etc/passwd",
    "absolute": "/etc/passwd",
    "backslashes": "uploads\\..\\..\\etc\\passwd",
    "over 1024 characters": "uploads/" + "a" * 1017,
    "over 1024 bytes in UTF-8": "uploads/" + "é" * 510,
    "right-to-left override": "uploads/invoice\u202efdp.exe",
    "NUL byte": "uploads/a\x00.txt",
    "empty segment": "uploads//a.txt",
}


@pytest.mark.parametrize("case", list(BAD_KEYS))
async def test_bad_s3_key_is_invalid_params(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, case: str
) -> None:
    key = BAD_KEYS[case]

    response, request = await _run(
        mesh, forge, rpc_body("process_document", {"s3_key": key})
    )

    body = assert_refused(response, status=200, code=-32602)
    assert body["id"] == 1
    assert [e["field"] for e in body["error"]["data"]["errors"]] == ["s3_key"]
    # PostgreSQL text cannot hold NUL: that key could never have been stored.
    stored = key if "\x00" not in key else None
    await assert_nothing_ran(
        mesh, database, FRONT, str(request.correlation_id), key=stored
    )


async def test_batch_with_one_bad_key_starts_no_task_at_all(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    good = [unique_key("batch-good"), unique_key("batch-good")]

    response, request = await _run(
        mesh, forge, rpc_body("process_batch", {"s3_keys": [*good, "../etc/passwd"]})
    )

    body = assert_refused(response, status=200, code=-32602)
    assert [e["field"] for e in body["error"]["data"]["errors"]] == ["s3_keys.2"]
    for key in good:
        await assert_nothing_ran(
            mesh, database, FRONT, str(request.correlation_id), key=key
        )


LOOSE_PARAMS: dict[str, tuple[str, Any, str | None]] = {
    "an unknown field": ("process_document", {"priority": "high"}, "priority"),
    "limit as the string '10'": ("list_pending_documents", {"limit": "10"}, "limit"),
    "limit as a float": ("list_pending_documents", {"limit": 10.5}, "limit"),
    "limit as true": ("list_pending_documents", {"limit": True}, "limit"),
    "limit past its maximum": ("list_pending_documents", {"limit": 501}, "limit"),
    "s3_keys a string": ("process_batch", {"s3_keys": "KEY"}, "s3_keys"),
    "s3_keys over 100": ("process_batch", {"s3_keys": ["KEY"] * 101}, "s3_keys"),
    "task_id a number": ("get_task_status", {"task_id": 5}, "task_id"),
    "params by position": ("process_document", ["KEY"], None),
}


@pytest.mark.parametrize("case", list(LOOSE_PARAMS))
async def test_loose_parameters_are_invalid_params(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, case: str
) -> None:
    method, shape, field = LOOSE_PARAMS[case]
    key = unique_key("loose")
    raw = json.dumps(shape).replace("KEY", key)
    params = json.loads(raw)
    if method == "process_document" and isinstance(params, dict):
        params["s3_key"] = key

    response, request = await _run(mesh, forge, rpc_body(method, params))

    body = assert_refused(response, status=200, code=-32602)
    if field is not None:
        fields = [e["field"] for e in body["error"]["data"]["errors"]]
        assert field in fields, fields
    await assert_nothing_ran(
        mesh, database, FRONT, str(request.correlation_id), key=key
    )


MALFORMED = {
    "unterminated JSON": (
        b'{"jsonrpc": "2.0", "id": 1, "method": "process_document", '
        b'"params": {"s3_key": "KEY"}',
        -32700,
    ),
    "invalid UTF-8": (
        b'{"jsonrpc": "2.0", "id": 1, "method": "process_document", '
        b'"params": {"s3_key": "KEY\xff"}}',
        -32700,
    ),
    "an unknown envelope member": (
        b'{"jsonrpc": "2.0", "id": 1, "method": "process_document", '
        b'"params": {"s3_key": "KEY"}, "auth": "admin"}',
        -32600,
    ),
    "JSON-RPC 1.0": (
        b'{"jsonrpc": "1.0", "id": 1, "method": "process_document", '
        b'"params": {"s3_key": "KEY"}}',
        -32600,
    ),
    "a JSON string": (b'"process_document KEY"', -32600),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_request_is_refused_with_400(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, case: str
) -> None:
    template, code = MALFORMED[case]
    key = unique_key("malformed")

    response, request = await _run(mesh, forge, template.replace(b"KEY", key.encode()))

    assert_refused(response, status=400, code=code)
    await assert_nothing_ran(
        mesh, database, FRONT, str(request.correlation_id), key=key
    )


def _s3_keys_naming(mesh: LocalMesh, marker: str) -> list[str]:
    s3 = mesh.aws.client("s3")
    return [
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for entry in page.get("Contents", [])
        if marker in entry["Key"]
    ]


TXT, PDF = "text/plain", "application/pdf"
TOO_LARGE = (413, -32600, "too_large")
UNSUPPORTED = (415, -32011, "unsupported_type")
MISMATCH = (400, -32602, None)

# file name suffix, size, declared content type; status, code, reason
UPLOADS: dict[str, tuple[str, int, str, tuple[int, int, str | None]]] = {
    "one byte over 25 MiB": (".txt", MAX_UPLOAD + 1, TXT, TOO_LARGE),
    "a megabyte over 25 MiB": (".txt", MAX_UPLOAD + (1 << 20), TXT, TOO_LARGE),
    "a .txt declared application/pdf": (".txt", 64, PDF, MISMATCH),
    "a .pdf declared text/html": (".pdf", 64, "text/html", MISMATCH),
    "an .exe": (".exe", 64, "application/octet-stream", UNSUPPORTED),
    "no extension": ("", 64, TXT, UNSUPPORTED),
}


@pytest.mark.parametrize("case", list(UPLOADS))
async def test_upload_the_mesh_must_not_take_is_refused_and_not_stored(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, case: str
) -> None:
    suffix, size, declared, (status, code, reason) = UPLOADS[case]
    marker = f"attack-{uuid.uuid4().hex}"
    cid = new_correlation_id()

    async with http_client(mesh) as http:
        response = await http.post(
            f"{mesh.url(FRONT)}/documents",
            files={"file": (f"{marker}{suffix}", b"a" * size, declared)},
            headers={
                "Authorization": f"Bearer {forge.valid(FRONT, ROLES)}",
                "X-Correlation-ID": cid,
            },
        )

    assert_refused(response, status=status, code=code, reason=reason)
    tasks = await database.fetchval(
        "SELECT count(*) FROM tasks WHERE s3_key LIKE $1", f"%{marker}%"
    )
    assert tasks == 0
    assert await asyncio.to_thread(_s3_keys_naming, mesh, marker) == []
    assert marker not in (mesh.log_dir / f"{FRONT}.log").read_text(encoding="utf-8")


async def test_upload_with_two_files_is_refused_and_not_stored(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    marker = f"attack-{uuid.uuid4().hex}"

    async with http_client(mesh) as http:
        response = await http.post(
            f"{mesh.url(FRONT)}/documents",
            files=[
                ("file", (f"{marker}-1.txt", b"first", "text/plain")),
                ("file", (f"{marker}-2.txt", b"second", "text/plain")),
            ],
            headers={"Authorization": f"Bearer {forge.valid(FRONT, ROLES)}"},
        )

    assert_refused(response, status=400, code=-32602)
    tasks = await database.fetchval(
        "SELECT count(*) FROM tasks WHERE s3_key LIKE $1", f"%{marker}%"
    )
    assert tasks == 0
    assert await asyncio.to_thread(_s3_keys_naming, mesh, marker) == []


# roles, file suffix, size, declared type; the audit event and its reason
REFUSED_UPLOADS: dict[str, tuple[list[str], str, int, str, str, str]] = {
    "a viewer uploading": (
        ["viewer"],
        ".txt",
        64,
        TXT,
        "authorization_failure",
        "missing_role",
    ),
    "a .txt declared application/pdf": (
        ROLES,
        ".txt",
        64,
        PDF,
        "invalid_input",
        "InvalidParams",
    ),
    "a file over 25 MiB": (
        ROLES,
        ".txt",
        MAX_UPLOAD + (1 << 20),
        TXT,
        "invalid_input",
        "too_large",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_UPLOADS))
async def test_refused_upload_is_kept_as_a_security_event(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection, case: str
) -> None:
    roles, suffix, size, declared, event, reason = REFUSED_UPLOADS[case]
    cid = new_correlation_id()

    async with http_client(mesh) as http:
        response = await http.post(
            f"{mesh.url(FRONT)}/documents",
            files={"file": (f"upload{suffix}", b"a" * size, declared)},
            headers={
                "Authorization": f"Bearer {forge.valid(FRONT, roles)}",
                "X-Correlation-ID": cid,
            },
        )

    assert response.status_code in (400, 403, 413)
    rows = await security_events(database, cid)
    assert [(r["event"], r["reason"], r["path"]) for r in rows] == [
        (event, reason, "/documents")
    ]
