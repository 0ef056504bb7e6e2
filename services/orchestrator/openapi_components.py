"""What the operations of the orchestrator's OpenAPI description share:
JSON-RPC answers, refusals by HTTP status, response headers and the security
schemes, with the mesh's error table as the list of error codes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from services.orchestrator.settings import OrchestratorSettings
from shared.errors import ERROR_TABLE, InternalError

JSON = "application/json"
SCHEMAS = "#/components/schemas/"
REQUEST_ID = {"$ref": SCHEMAS + "RequestId"}

# What the security gate answers by itself, before a protected route runs.
GATE_STATUSES = frozenset({401, 403, 408, 413, 429, 503})
# What any route may answer: the app's handler of unexpected errors.
_ANY_ROUTE = frozenset({InternalError.http_status})
_REFUSALS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed JSON, not a JSON-RPC request, or bad input"),
    401: ("Unauthenticated", "No token, or one that failed a check"),
    403: ("Forbidden", "The caller's client or roles may not do this"),
    408: ("BodyTimeout", "The body did not arrive within 60 seconds"),
    413: ("PayloadTooLarge", "The body is larger than this route takes"),
    415: ("UnsupportedDocument", "A file type the mesh does not read"),
    429: ("RateLimited", "Over the caller's rate limit"),
    500: ("InternalError", "The mesh's fault; the detail is in its log only"),
    503: ("Unavailable", "A store or service this route needs did not answer"),
}
_REQUIRED_HEADERS = {401: "WWW-Authenticate", 429: "Retry-After"}


def components(
    settings: OrchestratorSettings, schemas: dict[str, Any]
) -> dict[str, Any]:
    """The ``components`` section, around the schemas the operations used."""
    return {
        "schemas": schemas,
        "responses": {
            name: _refusal(status, text) for status, (name, text) in _REFUSALS.items()
        },
        "headers": _headers(),
        "securitySchemes": _schemes(settings),
    }


def answer_schemas() -> dict[str, Any]:
    """The JSON-RPC envelope: a request id, and a result or an error."""
    codes = "\n".join(
        f"- `{code}` {error.default_message} (HTTP {status})"
        for error, (code, status) in ERROR_TABLE.items()
    )
    return {
        "RequestId": {"type": ["string", "integer", "null"], "maxLength": 256},
        "Error": {
            "type": "object",
            "description": f"A JSON-RPC error. The mesh's codes:\n{codes}",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "data": {},
            },
            "additionalProperties": False,
        },
        "ErrorAnswer": _envelope(error={"$ref": SCHEMAS + "Error"}),
        "Result": _envelope(result={}),
        "Answer": {
            "oneOf": [{"$ref": SCHEMAS + "Result"}, {"$ref": SCHEMAS + "ErrorAnswer"}]
        },
    }


def model_schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """A reference to a pydantic model's own JSON schema, kept in ``schemas``."""
    schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": SCHEMAS + model.__name__}


def refusals(statuses: Iterable[int]) -> dict[str, Any]:
    """The responses for ``statuses``, and for an internal error."""
    every = sorted(set(statuses) | _ANY_ROUTE)
    return {
        str(s): {"$ref": f"#/components/responses/{_REFUSALS[s][0]}"} for s in every
    }


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": correlation(),
        "content": {JSON: {"schema": schema}},
    }


def correlation() -> dict[str, Any]:
    """The header every answer carries."""
    return {"X-Correlation-ID": {"$ref": "#/components/headers/X-Correlation-ID"}}


def with_fields(**properties: Any) -> dict[str, Any]:
    """An object with every one of ``properties``, and maybe more."""
    return {"type": "object", "required": list(properties), "properties": properties}


def requirements(settings: OrchestratorSettings) -> list[dict[str, list[str]]]:
    """Either token scheme the settings accept, with a client certificate
    where the load balancer in front asks for one."""
    tokens = ["bearer", "dpop"] if settings.accept_bearer_tokens else ["dpop"]
    certificate = (
        ["clientCertificate"] if settings.trust_alb_client_certificates else []
    )
    return [{name: [] for name in (token, *certificate)} for token in tokens]


def _envelope(**member: Any) -> dict[str, Any]:
    """A JSON-RPC answer with ``member`` (result or error) and nothing else."""
    return {
        "type": "object",
        "properties": {"jsonrpc": {"const": "2.0"}, "id": REQUEST_ID, **member},
        "required": ["jsonrpc", "id", *member],
        "additionalProperties": False,
    }


def _refusal(status: int, text: str) -> dict[str, Any]:
    headers = correlation()
    if status in _REQUIRED_HEADERS:
        name = _REQUIRED_HEADERS[status]
        headers[name] = {"$ref": f"#/components/headers/{name}"}
    return {
        "description": text,
        "headers": headers,
        "content": {JSON: {"schema": {"$ref": SCHEMAS + "ErrorAnswer"}}},
    }


def _headers() -> dict[str, Any]:
    return {
        "X-Correlation-ID": {
            "description": "The request's correlation id: the caller's, or a new one",
            "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
        },
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with, and what was wrong",
            "required": True,
            "schema": {"type": "string"},
        },
        "Retry-After": {
            "description": "Seconds until a request would be admitted",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        },
    }


def _schemes(settings: OrchestratorSettings) -> dict[str, Any]:
    schemes: dict[str, Any] = {}
    if settings.accept_bearer_tokens:
        schemes["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token of the mesh realm",
        }
    schemes["dpop"] = {
        "type": "http",
        "scheme": "DPoP",
        "description": (
            "A DPoP-bound access token (RFC 9449) with a DPoP header: a fresh "
            "proof per request whose body_sha256 claim is the SHA-256 of the body"
        ),
    }
    if settings.trust_alb_client_certificates:
        schemes["clientCertificate"] = {
            "type": "mutualTLS",
            "description": "A client certificate from the mesh CA, at the ALB",
        }
    return schemes
