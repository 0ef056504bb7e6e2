"""The orchestrator's HTTP surface as an OpenAPI 3.1 description.

Made from the code it describes, so that the two cannot drift apart: the
JSON-RPC methods' parameter models and descriptions, the policy's role table
and limits, the error table, the admin routes' query bounds, the upload's
file types and statuses. ``GET /openapi.json`` serves it without a token: it
says how to call the mesh and holds nothing secret.

Every route but the four public ones is behind the security gate, which may
answer before the route runs (401, 403, 408, 413, 429, 503).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from services.orchestrator.a2a_card import RPC_PATH
from services.orchestrator.a2a_routes import MESH_METHOD_OF
from services.orchestrator.admin import (
    ADMIN_GRANT,
    REVOKED_LIMIT,
    STATS_WINDOW,
    RevokeParams,
    WholeNumber,
)
from services.orchestrator.methods import IDEMPOTENCY_KEY
from services.orchestrator.openapi_components import (
    GATE_STATUSES,
    JSON,
    REQUEST_ID,
    SCHEMAS,
    answer_schemas,
    components,
    correlation,
    json_answer,
    model_schema,
    refusals,
    requirements,
    with_fields,
)
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.upload import ACCEPTED_TYPES, UPLOAD_STATUS
from shared.auth.policy import Policy, SecurityPolicy
from shared.errors import ERROR_TABLE, Forbidden, PayloadTooLarge
from shared.jsonrpc import Method

OPENAPI_PATH = "/openapi.json"
UPLOAD_GRANT = "upload"

HEALTH = with_fields(status={"const": "ok"}, service={"type": "string"})
CARD = with_fields(
    name={"type": "string"},
    version={"type": "string"},
    supportedInterfaces={"type": "array", "minItems": 1},
    skills={"type": "array"},
)
DOCUMENT = with_fields(
    openapi={"type": "string"}, info={"type": "object"}, paths={"type": "object"}
)
# The part's file name decides the type: its extension must be one the
# mesh reads, and a declared content type must not contradict it.
_FILE_PART = {
    "description": "form-data with the document's file name",
    "schema": {"type": "string"},
    "example": 'form-data; name="file"; filename="statement.csv"',
}
READINESS = with_fields(
    status={"enum": ["ready", "not_ready"]},
    checks={"type": "object", "additionalProperties": {"type": "string"}},
)


def describe(
    settings: OrchestratorSettings,
    policy: SecurityPolicy,
    methods: Sequence[Method[Any]],
) -> dict[str, Any]:
    """The OpenAPI document of an orchestrator serving ``methods`` on ``/a2a``."""
    schemas = answer_schemas()
    paths = {
        "/a2a": {"post": _rpc(methods, policy, schemas)},
        "/documents": {"post": _upload(policy)},
        "/admin/revoke-token": {"post": _revoke(policy, schemas)},
        "/admin/revoked-tokens": {"get": _revoked_tokens(policy)},
        "/admin/security-stats": {"get": _security_stats(policy)},
        RPC_PATH: {"post": _a2a(policy)},
        "/health": {"get": _public("health", "Liveness", HEALTH)},
        "/ready": {"get": _ready()},
        "/.well-known/agent-card.json": {
            "get": _public("agentCard", "The A2A 1.0 agent card", CARD)
        },
        OPENAPI_PATH: {"get": _public("openapi", "This description", DOCUMENT)},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "a2a-mesh orchestrator",
            "version": settings.version,
            "description": (
                "Accepts documents and runs extractor → validator → archivist. "
                f"Tokens come from {settings.issuer_token_endpoint} "
                "(client credentials)."
            ),
        },
        "servers": [{"url": settings.public_base_url}],
        "security": requirements(settings),
        "paths": paths,
        "components": components(settings, schemas),
    }


def _rpc(
    methods: Sequence[Method[Any]], policy: SecurityPolicy, schemas: dict[str, Any]
) -> dict[str, Any]:
    limit = policy.limits.body_bytes_for("orchestrator")
    statuses = {status for _, status in ERROR_TABLE.values()} - {200}
    calls = [_call(method, policy.roles, schemas) for method in methods]
    return {
        "operationId": "rpc",
        "summary": "Call a mesh method (JSON-RPC 2.0)",
        "description": (
            f"One request per body (no batches), at most {limit} bytes and "
            f"{policy.limits.max_json_depth} levels deep; parameters by name. "
            "A JSON-RPC error comes with the HTTP status of its class; a "
            "request without an id is a notification (204)."
        ),
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"oneOf": calls}}},
        },
        "responses": {
            "200": json_answer(
                "A JSON-RPC result or error", {"$ref": SCHEMAS + "Answer"}
            ),
            "204": {
                "description": "A notification: the method ran, nothing answers",
                "headers": correlation(),
            },
            **refusals(statuses | GATE_STATUSES),
        },
    }


def _call(
    method: Method[Any], roles: Policy, schemas: dict[str, Any]
) -> dict[str, Any]:
    """One method's request: its name, and its parameters' model as a schema."""
    granted = roles.granting(method.name)
    try:
        method.params.model_validate({})
        needs_params = False
    except ValidationError:
        needs_params = True
    return {
        "title": method.name,
        "description": f"{method.description} Roles: {_listed(granted)}.",
        "x-roles": granted,
        "type": "object",
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "method": {"const": method.name},
            "params": model_schema(method.params, schemas),
            "id": REQUEST_ID,
        },
        "required": ["jsonrpc", "method", *(["params"] if needs_params else [])],
        "additionalProperties": False,
    }


def _upload(policy: SecurityPolicy) -> dict[str, Any]:
    granted = policy.roles.granting(UPLOAD_GRANT)
    declared = [*sorted(set(ACCEPTED_TYPES.values())), "application/octet-stream"]
    statuses = {*UPLOAD_STATUS.values(), Forbidden.http_status}
    task = with_fields(
        task_id={"type": "string", "format": "uuid"},
        s3_key={"type": "string"},
        status={"type": "string"},
    )
    task["properties"] |= {
        "file_name": {"type": ["string", "null"]},
        "size_bytes": {"type": "integer", "minimum": 0},
        "replayed": {"const": True, "description": "The key's first upload's task"},
    }
    return {
        "operationId": "uploadDocument",
        "summary": "Store a document and start its task",
        "description": (
            f"Roles: {_listed(granted)}. One file "
            f"({', '.join(sorted(ACCEPTED_TYPES))}) of at most "
            f"{policy.limits.max_upload_bytes} bytes."
        ),
        "x-roles": granted,
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": (
                    "A retry with the same key and file gets the first "
                    "attempt's task; another file under a used key is refused"
                ),
                "schema": {"type": "string", "pattern": f"^{IDEMPOTENCY_KEY.pattern}$"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        **with_fields(file={"type": "string", "format": "binary"}),
                        "additionalProperties": False,
                    },
                    "encoding": {
                        "file": {
                            "contentType": ", ".join(declared),
                            "headers": {"Content-Disposition": _FILE_PART},
                        }
                    },
                }
            },
        },
        "responses": {
            "202": json_answer("The task the document started", task),
            **refusals(statuses | {PayloadTooLarge.http_status} | GATE_STATUSES),
        },
    }


def _revoke(policy: SecurityPolicy, schemas: dict[str, Any]) -> dict[str, Any]:
    revoked = with_fields(
        jti={"type": "string"},
        revoked={"const": True},
        already_revoked={"type": "boolean"},
        expires_at={"type": "string", "format": "date-time"},
    )
    return {
        **_admin(policy, "revokeToken", "Revoke a token by its jti"),
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": model_schema(RevokeParams, schemas)}},
        },
        "responses": {"200": json_answer("Revoked", revoked), **_admin_refusals()},
    }


def _revoked_tokens(policy: SecurityPolicy) -> dict[str, Any]:
    answer = with_fields(
        revoked_tokens={"type": "array", "items": {"type": "object"}},
        count={"type": "integer", "minimum": 0},
    )
    return {
        **_admin(policy, "listRevokedTokens", "Revocations, newest first"),
        "parameters": [_query(REVOKED_LIMIT)],
        "responses": {"200": json_answer("Revocations", answer), **_admin_refusals()},
    }


def _security_stats(policy: SecurityPolicy) -> dict[str, Any]:
    answer = with_fields(
        window_seconds={"type": "integer"},
        totals={"type": "object", "additionalProperties": {"type": "integer"}},
        events={"type": "array", "items": {"type": "object"}},
        top_refused_callers={"type": "array", "items": {"type": "object"}},
        active_revocations={"type": "integer", "minimum": 0},
    )
    return {
        **_admin(policy, "securityStats", "Security events of a window, summarised"),
        "parameters": [_query(STATS_WINDOW)],
        "responses": {"200": json_answer("The summary", answer), **_admin_refusals()},
    }


def _query(number: WholeNumber) -> dict[str, Any]:
    return {
        "name": number.name,
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": number.low,
            "maximum": number.high,
            "default": number.default,
        },
    }


def _admin(policy: SecurityPolicy, operation_id: str, summary: str) -> dict[str, Any]:
    granted = policy.roles.granting(ADMIN_GRANT)
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": f"The admin API. Roles: {_listed(granted)}.",
        "x-roles": granted,
    }


def _admin_refusals() -> dict[str, Any]:
    # Bad input is a 400 here, and a store that does not answer a 503.
    return refusals({400, 503} | GATE_STATUSES)


def _a2a(policy: SecurityPolicy) -> dict[str, Any]:
    methods = sorted({*MESH_METHOD_OF, "GetExtendedAgentCard"})
    grants = ", ".join(f"{a2a} as {mesh}" for a2a, mesh in MESH_METHOD_OF.items())
    granted = {
        role for mesh in MESH_METHOD_OF.values() for role in policy.roles.granting(mesh)
    }
    request = with_fields(jsonrpc={"const": "2.0"}, method={"enum": methods})
    request["properties"] |= {"params": {"type": "object"}, "id": REQUEST_ID}
    # The SDK refuses any other member of the envelope; params it reads loosely.
    request["additionalProperties"] = False
    return {
        "operationId": "a2a",
        "summary": "The A2A 1.0 JSON-RPC binding (and its 0.3 names)",
        "description": (
            "Requests as A2A 1.0 defines them. Each method needs the role of "
            f"the mesh method it stands for: {grants}; GetExtendedAgentCard "
            "needs none. File parts' bytes must be base64."
        ),
        "x-roles": sorted(granted),
        "parameters": [
            {
                "name": "A2A-Version",
                "in": "header",
                "required": False,
                "description": "The protocol version the caller speaks",
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {"required": True, "content": {JSON: {"schema": request}}},
        "responses": {
            "200": {
                "description": "A JSON-RPC answer, or a stream of them",
                "headers": correlation(),
                "content": {
                    JSON: {"schema": {"type": "object"}},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            },
            **refusals({400} | GATE_STATUSES),
        },
    }


def _public(operation_id: str, summary: str, answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": [],
        "responses": {"200": json_answer(summary, answer), **refusals(())},
    }


def _ready() -> dict[str, Any]:
    return {
        "operationId": "ready",
        "summary": "Readiness: every dependency answers",
        "security": [],
        "responses": {
            "200": json_answer("Ready", READINESS),
            "503": json_answer("Not ready: the checks say what failed", READINESS),
            **refusals(()),
        },
    }


def _listed(roles: Sequence[str]) -> str:
    return ", ".join(roles) or "none"
