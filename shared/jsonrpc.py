"""JSON-RPC 2.0 in fixed stages: parse → envelope → method → role → params → handler.

Each stage fails with its own code. Anything unexpected becomes -32603 with a
generic message for the caller and the detail in an ERROR log line. Every
outcome goes to the audit trail: ``method_executed`` with its duration, or
the refusal (``invalid_input``, ``authorization_failure``). Services only
write handlers; this module owns the plumbing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.auth.audit import Audit
from shared.auth.policy import Policy
from shared.auth.principal import Principal
from shared.errors import (
    Forbidden,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MeshError,
    MethodNotFound,
    ParseError,
    RateLimited,
)
from shared.logging import log_event

logger = logging.getLogger(__name__)

P = TypeVar("P", bound=BaseModel)

RequestId = str | int | None
_ENVELOPE_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
DEFAULT_MAX_DEPTH = 32
# Echoed in every reply: an id is a handle, not a payload.
_MAX_ID_LENGTH = 256


class Params(BaseModel):
    """Base of every method's parameters: unknown fields and wrong types are
    refused, not coerced ("10" is not a number). Fields that JSON can only
    carry as strings (UUIDs) opt out with ``Field(strict=False)``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoParams(Params):
    pass


@dataclass(frozen=True)
class Call:
    """What a handler knows about the request besides its parameters."""

    principal: Principal
    correlation_id: str | None
    path: str = "/a2a"
    client_address: str | None = None


Handler = Callable[[P, Call], Awaitable[Any]]


@dataclass(frozen=True)
class Method(Generic[P]):
    """A method a service offers: its name, parameter schema and handler."""

    name: str
    params: type[P]
    handler: Handler[P]
    description: str


@dataclass(frozen=True)
class Reply:
    """An HTTP status and JSON body, or no body for a notification, and the
    headers the status calls for."""

    status: int
    body: dict[str, Any] | None
    headers: Mapping[str, str] = field(default_factory=dict)


def error_reply(error: MeshError, request_id: RequestId = None) -> Reply:
    body = {"jsonrpc": "2.0", "error": error.to_jsonrpc(), "id": request_id}
    headers = {}
    if isinstance(error, RateLimited):
        # A 429 says when to come back, whichever layer refused the call.
        headers["Retry-After"] = str(error.retry_after)
    return Reply(error.http_status, body, headers)


class Dispatcher:
    """Routes JSON-RPC requests to a table of methods under a role policy."""

    def __init__(
        self,
        methods: Sequence[Method[Any]],
        policy: Policy,
        *,
        audit: Audit | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._methods = {method.name: method for method in methods}
        self._policy = policy
        self._audit = audit or Audit("unknown")
        self._max_depth = max_depth

    @property
    def methods(self) -> list[Method[Any]]:
        return list(self._methods.values())

    async def dispatch(self, body: bytes, call: Call) -> Reply:
        started = time.perf_counter()
        method: str | None = None
        request_id: RequestId = None
        try:
            request = parse_body(body, self._max_depth)
            request_id = _envelope(request)
            method = request["method"]
            result = await self._run(request, call)
        except MeshError as error:
            self._record(call, method, started, error)
            return error_reply(error, request_id)

        self._record(call, method, started, None)
        if "id" not in request:
            return Reply(204, None)
        return Reply(200, {"jsonrpc": "2.0", "result": result, "id": request_id})

    async def _run(self, request: dict[str, Any], call: Call) -> Any:
        method = self._methods.get(request["method"])
        if method is None:
            raise MethodNotFound(f"Method '{request['method']}' not found")

        if not self._policy.allows(call.principal.roles, method.name):
            raise Forbidden("missing_role", f"Not allowed to call '{method.name}'")

        params = _params(method, request.get("params"))
        try:
            return await method.handler(params, call)
        except MeshError:
            raise
        except Exception:
            log_event(
                logger,
                "rpc.internal_error",
                level=logging.ERROR,
                exc_info=True,
                method=method.name,
            )
            raise InternalError() from None

    def _record(
        self, call: Call, method: str | None, started: float, error: MeshError | None
    ) -> None:
        self._audit.outcome(
            call.principal,
            method=method if method in self._methods else None,
            path=call.path,
            client_address=call.client_address,
            started=started,
            error=error,
        )


def parse_body(body: bytes, max_depth: int) -> Any:
    """JSON no deeper than ``max_depth``: -32700 or -32600 (``too_deep``)."""
    try:
        request = json.loads(body)
    except ValueError:
        # Bad JSON, bad UTF-8 and integers too long to convert.
        raise ParseError() from None
    except RecursionError:
        # Nested deeper than the parser goes: far past the limit.
        raise _too_deep(max_depth) from None
    if _deeper_than(request, max_depth):
        raise _too_deep(max_depth)
    return request


def _too_deep(max_depth: int) -> InvalidRequest:
    return InvalidRequest(
        f"JSON nested deeper than {max_depth} levels", data={"reason": "too_deep"}
    )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels; looked at
    level by level, so a wide body costs one pass and a deep one stops early."""
    level = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return any(isinstance(item, dict | list) for item in level)


def _envelope(request: Any) -> RequestId:
    if isinstance(request, list):
        raise InvalidRequest("Batch requests are not supported")
    if not isinstance(request, dict):
        raise InvalidRequest("A request must be a JSON object")

    unknown = set(request) - _ENVELOPE_MEMBERS
    if unknown:
        raise InvalidRequest("Only jsonrpc, method, params and id may be given")

    request_id = request.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, str | int)
    ):
        raise InvalidRequest("'id' must be a string, a number or null")
    if isinstance(request_id, str) and len(request_id) > _MAX_ID_LENGTH:
        raise InvalidRequest(f"'id' must be at most {_MAX_ID_LENGTH} characters")
    if request.get("jsonrpc") != "2.0":
        raise InvalidRequest("'jsonrpc' must be \"2.0\"")
    if not isinstance(request.get("method"), str):
        raise InvalidRequest("'method' must be a string")
    for member in ("method", "id"):
        if isinstance(request.get(member), str) and not _encodable(request[member]):
            raise InvalidRequest(f"'{member}' must be valid Unicode text")
    if "params" in request and not isinstance(request["params"], dict | list | None):
        raise InvalidRequest("'params' must be an object or an array")
    return request_id


def _encodable(text: str) -> bool:
    # JSON may carry lone surrogates ("\ud800"); no reply could echo them.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _params(method: Method[P], raw: dict[str, Any] | list[Any] | None) -> P:
    if isinstance(raw, list):
        raise InvalidParams("Parameters must be given by name, as an object")
    return validate_params(method.params, raw or {})


def validate_params(schema: type[P], raw: object) -> P:
    """``raw`` as ``schema``, or -32602 naming each field and its problem
    (never echoing the input)."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or None, "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidParams(data={"errors": problems}) from None
