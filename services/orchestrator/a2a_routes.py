"""The A2A 1.0 JSON-RPC route, behind the same gate as every other call.

The auth middleware has verified the token (and DPoP proof, rate limit)
before this route runs. Here each A2A method is checked against the role
table under the mesh method it stands for, and its outcome is audited; only
then does the SDK's dispatcher see the request.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.routes.common import DefaultServerCallContextBuilder
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.orchestrator.a2a_card import RPC_PATH
from services.orchestrator.a2a_handler import MeshA2AHandler
from shared.auth.principal import Principal
from shared.errors import (
    Forbidden,
    InvalidParams,
    InvalidRequest,
    MeshError,
    MethodNotFound,
    ParseError,
)
from shared.jsonrpc import parse_body
from shared.runtime import Runtime
from shared.service import mesh_error_response, principal_of

# The mesh method whose role grants each A2A method (1.0 names, then the 0.3
# aliases). GetExtendedAgentCard needs no role: it shows what the caller may do.
MESH_METHOD_OF: Mapping[str, str] = {
    "SendMessage": "process_document",
    "SendStreamingMessage": "process_document",
    "GetTask": "get_task_status",
    "ListTasks": "get_task_status",
    "SubscribeToTask": "get_task_status",
    "CancelTask": "process_document",
    "message/send": "process_document",
    "message/stream": "process_document",
    "tasks/get": "get_task_status",
    "tasks/resubscribe": "get_task_status",
    "tasks/cancel": "process_document",
}
Endpoint = Callable[[Request], Awaitable[Response]]
_SEARCH = "search_documents"
_OLD_METHODS = frozenset(name for name in MESH_METHOD_OF if "/" in name)
# A2A's codes of the errors a caller's input causes, as the mesh's own
# errors, so the audit trail classes them as it does every other refusal.
_INPUT_ERRORS: Mapping[int, type[MeshError]] = {
    -32700: ParseError,
    -32600: InvalidRequest,
    -32601: MethodNotFound,
    -32602: InvalidParams,
}


# The SDK logs a request it cannot read as an ERROR with a traceback. It is
# the caller's mistake, answered with -32600 or -32602: a WARNING here, with
# no traceback (whose exception text quotes what the caller sent).
_SDK_INPUT_REFUSALS: Mapping[str, frozenset[str]] = {
    "a2a.server.routes.jsonrpc_dispatcher": frozenset(
        {
            "Failed to validate base JSON-RPC request",
            "Failed to parse request params",
        }
    ),
    "a2a.compat.v0_3.jsonrpc_adapter": frozenset(
        {"Failed to validate base JSON-RPC request for v0.3"}
    ),
}


class CallerMistake(logging.Filter):
    """Turns the SDK's log lines about unreadable requests into warnings
    without the exception."""

    def __init__(self, messages: frozenset[str]) -> None:
        super().__init__()
        self._messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self._messages:
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
            record.exc_info = None
            record.exc_text = None
        return True


_CALLER_MISTAKES = {
    name: CallerMistake(messages) for name, messages in _SDK_INPUT_REFUSALS.items()
}


class VersionNotSupported(MeshError):
    code = -32009
    default_message = "A2A version not supported"


class ProtocolError(MeshError):
    """An A2A error the SDK answered with, for the audit trail."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]


class MeshUser(User):
    def __init__(self, principal: Principal) -> None:
        self._principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._principal.client_id


class GateContext(DefaultServerCallContextBuilder):
    """The SDK's context (it keeps the headers for the version check), with
    the principal the gate verified."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        principal = principal_of(request)
        context.user = MeshUser(principal)
        context.state["principal"] = principal
        return context


def a2a_dispatch(handler: MeshA2AHandler) -> Endpoint:
    """The SDK's JSON-RPC endpoint over ``handler``, which exists only once
    the service has started (``app.state.a2a_dispatch``)."""
    (route,) = create_jsonrpc_routes(
        handler,
        rpc_url=RPC_PATH,
        context_builder=GateContext(),
        enable_v0_3_compat=True,
    )
    endpoint: Endpoint = route.endpoint
    return endpoint


def add_a2a_route(app: FastAPI) -> None:
    """The A2A route, there from the start like every other route, so that
    the app's routes are all known before it runs."""
    for name, mistakes in _CALLER_MISTAKES.items():
        # The same filter each time: adding it again changes nothing.
        logging.getLogger(name).addFilter(mistakes)

    async def a2a_v1(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        dispatch: Endpoint = request.app.state.a2a_dispatch
        principal = principal_of(request)
        started = time.perf_counter()
        method, refusal = _admit(request, runtime, principal, await request.body())

        def audit(error: MeshError | None) -> None:
            runtime.gate.audit.outcome(
                principal,
                method=f"a2a:{method or '?'}",
                path=request.url.path,
                client_address=request.client.host if request.client else None,
                started=started,
                error=error,
            )

        if refusal is not None:
            audit(refusal)
            return mesh_error_response(refusal)

        response: Response = await dispatch(request)
        audit(_answered_error(response))
        return response

    app.add_route(RPC_PATH, a2a_v1, methods=["POST"], include_in_schema=False)


def _admit(
    request: Request, runtime: Runtime, principal: Principal, raw: bytes
) -> tuple[str | None, MeshError | None]:
    """The request's method, and why the mesh refuses it before the SDK
    reads it, if it does: malformed JSON, bytes that are not base64, a role
    that does not grant the method, a 0.3 name under a 1.0 header."""
    try:
        # The mesh's depth limit first: the SDK's parser has none.
        body = parse_body(raw, runtime.policy.limits.max_json_depth)
    except MeshError as malformed:
        return None, malformed
    method = _method_of(body)

    if not _raw_parts_are_base64(body):
        # protobuf's JSON reader would turn text that is not base64 into
        # bytes all the same, and the pipeline would archive them.
        return method, InvalidParams("A file part's bytes must be base64")

    mesh_method = MESH_METHOD_OF.get(method or "")
    if mesh_method is not None and _is_search(body):
        mesh_method = _SEARCH
    if mesh_method and not runtime.policy.roles.allows(principal.roles, mesh_method):
        return method, Forbidden("missing_role", f"Not allowed to call {method}")

    if method in _OLD_METHODS and _major_version(request) not in ("", "0"):
        return method, VersionNotSupported(
            f"{method} is a 0.3 method; A2A-Version 1.0 names it differently"
        )
    return method, None


def _major_version(request: Request) -> str:
    return request.headers.get("a2a-version", "").strip().split(".")[0]


def _answered_error(response: Response) -> MeshError | None:
    """The error of a JSON-RPC answer, if it is one; a stream has begun well
    and tells its own errors to the caller."""
    if not isinstance(response, JSONResponse) or b'"error"' not in response.body:
        return None  # most answers: no second parse of a result
    try:
        error = json.loads(bytes(response.body)).get("error")
        code, message = int(error["code"]), str(error.get("message", ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    kind = _INPUT_ERRORS.get(code)
    return kind(message) if kind is not None else ProtocolError(code, message)


def _method_of(request: Any) -> str | None:
    """The request's method, if the body is a JSON-RPC request at all; the
    SDK answers anything else with the protocol's own error."""
    method = request.get("method") if isinstance(request, dict) else None
    return method if isinstance(method, str) else None


def _parts_of(request: Any) -> list[Any]:
    try:
        parts = request["params"]["message"]["parts"]
    except (KeyError, TypeError):
        return []
    return parts if isinstance(parts, list) else []


def _raw_parts_are_base64(request: Any) -> bool:
    """Whether every file part's bytes (1.0 ``raw``, 0.3 ``file.bytes``) are
    base64, standard or URL-safe, padding optional."""
    for part in _parts_of(request):
        if not isinstance(part, dict):
            continue
        file = part.get("file")
        raw = part.get("raw", file.get("bytes") if isinstance(file, dict) else None)
        if isinstance(raw, str) and not _is_base64(raw):
            return False
    return True


def _is_base64(text: str) -> bool:
    padded = text + "=" * (-len(text) % 4)
    for alphabet in (None, b"-_"):
        try:
            base64.b64decode(padded, altchars=alphabet, validate=True)
        except (binascii.Error, ValueError):
            continue
        return True
    return False


def _is_search(request: Any) -> bool:
    """Whether a SendMessage asks for a search (a data part with ``search``),
    which the viewer's role allows, rather than a document to process."""
    return any(
        isinstance(part, dict)
        and isinstance(part.get("data"), dict)
        and "search" in part["data"]
        for part in _parts_of(request)
    )
