"""The orchestrator's HTTP API fuzzed from the OpenAPI description it serves.

Every operation gets a fixed number of generated requests, some that match
the description and some that do not, each with a valid admin token of its
own subject: nothing is refused for want of a role, and neither this test
nor the others run out of rate budget. No answer may be a server error; each
must have a status, content type, headers and body the description gives;
and no service may log an unhandled exception meanwhile. Generation is
derandomized, so CI sends the same requests every run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.schemas import OpenApiSchema

from services.launcher.mesh import LocalMesh
from services.orchestrator.tasks import TERMINAL
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

FRONT = "orchestrator"
EXAMPLES = 100
"""Requests per operation and mode (matching, not matching the description)."""
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
REQUEST_TIMEOUT_SECONDS = 20.0
DRAIN_SECONDS = 60.0
CORRELATION_PREFIX = "fuzz-"
# JSON-RPC answers a caller's mistake in the body with HTTP 200 and an error
# object, as the description says: schemathesis's checks that expect a 4xx
# for any bad request, or a 2xx for any good one, do not apply.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # A failing request is reported as generated: shrinking would resend
    # requests for an unbounded time.
    phases=[Phase.explicit, Phase.generate],
    # Requests over the network are slow, and schemathesis filters what it
    # draws: neither says anything about the API.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
    print_blob=False,
)
# Lines that mean one of our processes failed at something, not a caller.
UNHANDLED_EVENTS = frozenset({"request.internal_error", "rpc.internal_error"})


def load_schema(mesh: LocalMesh) -> OpenApiSchema:
    base = mesh.url(FRONT)
    config = schemathesis.Config.from_dict(
        {
            "base-url": base,
            "tls-verify": str(mesh.ca_file),
            "request-timeout": REQUEST_TIMEOUT_SECONDS,
            # The token is ours to send: no made-up Authorization headers.
            "generation": {"with-security-parameters": False},
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
            },
        }
    )
    return schemathesis.openapi.from_url(
        f"{base}/openapi.json", config=config, verify=str(mesh.ca_file)
    )


def fuzz(
    schema: OpenApiSchema, forge: TokenForge
) -> tuple[list[str], dict[str, Counter[int]]]:
    """Each operation in each mode its inputs allow; the failures found, and
    the statuses each operation answered with."""

    def headers() -> dict[str, str]:
        token = forge.valid(FRONT, ["admin"], azp="mesh-admin")
        return {
            "Authorization": f"Bearer {token}",
            "X-Correlation-ID": f"{CORRELATION_PREFIX}{uuid.uuid4().hex}",
        }

    failures: list[str] = []
    answered: dict[str, Counter[int]] = {}
    with requests.Session() as session:
        for operation in operations(schema):
            statuses = answered.setdefault(operation.label, Counter())
            # Without parameters or a body there is nothing to send wrong.
            inputs = bool(operation.body) or any(operation.iter_parameters())
            for mode in MODES if inputs else MODES[:1]:
                try:
                    send_examples(operation, mode, Sender(session, headers, statuses))
                except (Exception, FailureGroup) as failure:
                    failures.append(f"{operation.label} ({mode.value}): {failure}")
    return failures, answered


@dataclass(frozen=True)
class Sender:
    """Sends a case over one kept-alive session, with fresh credentials, and
    counts the statuses of the answers."""

    session: requests.Session
    headers: Callable[[], dict[str, str]]
    statuses: Counter[int]

    def __call__(self, case: Case[Any]) -> Response:
        response = case.call(session=self.session, headers=self.headers())
        self.statuses[response.status_code] += 1
        return response


def send_examples(
    operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode, sender: Sender
) -> None:
    """``EXAMPLES`` requests to ``operation``, each answer checked."""

    @SETTINGS
    @given(case=operation.as_strategy(mode))
    def send(case: Case[Any]) -> None:
        case.validate_response(sender(case))

    send()


def operations(schema: OpenApiSchema) -> Iterator[APIOperation[Any, Any, Any, Any]]:
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            # A part of the description schemathesis cannot read.
            raise result.err()
        yield result.ok()


def described(schema: OpenApiSchema) -> set[str]:
    return {
        f"{verb.upper()} {path}"
        for path, item in schema.raw_schema["paths"].items()
        for verb in item
    }


def log_sizes(mesh: LocalMesh) -> dict[Path, int]:
    return {path: path.stat().st_size for path in mesh.log_dir.glob("*.log")}


def unhandled_since(mesh: LocalMesh, sizes: dict[Path, int]) -> list[str]:
    """Lines written since ``sizes`` that tell of a failure of ours: an ERROR
    or worse, a traceback, an internal-error event."""
    found = []
    for path in sorted(mesh.log_dir.glob("*.log")):
        with path.open("rb") as log:
            log.seek(sizes.get(path, 0))
            text = log.read().decode("utf-8", errors="replace")
        for raw in text.splitlines():
            if is_unhandled(raw):
                found.append(f"{path.name}: {raw[:2000]}")
    return found


def is_unhandled(raw: str) -> bool:
    try:
        line = json.loads(raw)
    except ValueError:
        return "Traceback" in raw
    if not isinstance(line, dict):
        return False
    return (
        line.get("level") in ("error", "critical")
        or "exception" in line
        or line.get("event") in UNHANDLED_EVENTS
    )


async def drain(database: asyncpg.Connection) -> tuple[int, int]:
    """Wait (boundedly) until every task the fuzzing started has ended: how
    many it started, how many still run."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        row = await database.fetchrow(
            "SELECT count(*) AS started,"
            " count(*) FILTER (WHERE NOT status = ANY($2::text[])) AS running"
            " FROM tasks WHERE correlation_id LIKE $1",
            f"{CORRELATION_PREFIX}%",
            list(TERMINAL),
        )
        assert row is not None
        if row["running"] == 0 or time.monotonic() > deadline:
            return int(row["started"]), int(row["running"])
        await asyncio.sleep(0.2)


async def test_fuzzing_the_orchestrator_finds_no_server_error_or_unhandled_exception(
    mesh: LocalMesh, forge: TokenForge, database: asyncpg.Connection
) -> None:
    schema = load_schema(mesh)
    sizes = log_sizes(mesh)

    failures, answered = await asyncio.to_thread(fuzz, schema, forge)
    started, still_running = await drain(database)

    assert failures == [], "\n\n".join(failures)
    # schemathesis leaves out the operation that served the description.
    assert set(answered) == described(schema) - {"GET /openapi.json"}
    assert all(answered.values()), answered
    # Documents went down the pipeline, and came out before the logs are read.
    assert started > 0
    assert still_running == 0
    assert unhandled_since(mesh, sizes) == []
