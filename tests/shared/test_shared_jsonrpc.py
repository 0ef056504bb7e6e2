"""Dispatcher: each stage (parse, envelope, method, role, params, handler) fails
with its own code; the unexpected becomes a generic -32603 and an ERROR log;
every outcome goes to the audit trail, refusals also to the store."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from shared.auth.audit import Audit
from shared.auth.policy import Policy
from shared.auth.principal import Principal
from shared.errors import TaskNotFound
from shared.jsonrpc import Call, Dispatcher, Method, NoParams, Params, Reply
from tests.shared.kit import MemoryStore

LEAKY_DETAIL = "password=hunter2 at db.internal:5432"


class EchoParams(Params):
    text: str
    count: int = 1


class Recorder:
    """The handlers of the test service, remembering what they were given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def echo(self, params: EchoParams, call: Call) -> dict[str, Any]:
        self.calls.append(("echo", params))
        return {"text": params.text * params.count, "cid": call.correlation_id}

    async def ping(self, params: NoParams, call: Call) -> str:
        self.calls.append(("ping", params))
        return "pong"

    async def missing(self, params: NoParams, call: Call) -> None:
        self.calls.append(("missing", params))
        raise TaskNotFound("task-42")

    async def crash(self, params: NoParams, call: Call) -> None:
        self.calls.append(("crash", params))
        raise RuntimeError(LEAKY_DETAIL)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def audit(store: MemoryStore) -> Audit:
    return Audit("extractor", store)


def make_dispatcher(
    recorder: Recorder, audit: Audit | None = None, **options: Any
) -> Dispatcher:
    methods: list[Method[Any]] = [
        Method("echo", EchoParams, recorder.echo, "Echo text."),
        Method("ping", NoParams, recorder.ping, "Answer pong."),
        Method("missing", NoParams, recorder.missing, "Raise a mesh error."),
        Method("crash", NoParams, recorder.crash, "Raise a foreign error."),
    ]
    policy = Policy({"caller": ["echo", "ping", "missing", "crash"], "viewer": []})
    return Dispatcher(methods, policy, audit=audit, **options)


@pytest.fixture
def dispatcher(recorder: Recorder, audit: Audit) -> Dispatcher:
    return make_dispatcher(recorder, audit)


async def persisted(
    audit: Audit, store: MemoryStore
) -> list[tuple[str, str | None, str | None]]:
    """(event, reason, method) of what the audit trail keeps for the admin API."""
    await audit.flush()
    return [(e.event, e.reason, e.method) for e in store.events]


def call_as(*roles: str) -> Call:
    principal = Principal(
        subject="sub-1",
        client_id="orchestrator",
        roles=frozenset(roles),
        jti="0123456789abcdef",
        expires_at=2_000_000_000,
        issued_at=1_999_999_700,
    )
    return Call(principal=principal, correlation_id="cid-1")


CALLER = call_as("caller")


def request(**fields: Any) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def error_of(reply: Reply) -> dict[str, Any]:
    assert reply.body is not None
    assert "result" not in reply.body
    error: dict[str, Any] = reply.body["error"]
    return error


async def test_dispatch_valid_request_returns_result_with_id(
    dispatcher: Dispatcher,
) -> None:
    body = request(id="req-7", method="echo", params={"text": "ab", "count": 2})

    reply = await dispatcher.dispatch(body, CALLER)

    assert reply == Reply(
        200,
        {"jsonrpc": "2.0", "result": {"text": "abab", "cid": "cid-1"}, "id": "req-7"},
    )


async def test_dispatch_method_without_params_member_is_called(
    dispatcher: Dispatcher,
) -> None:
    reply = await dispatcher.dispatch(request(params=...), CALLER)

    assert reply.status == 200
    assert reply.body is not None and reply.body["result"] == "pong"


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b"\xff\xfe{}",
        b'{"jsonrpc": "2.0",}',
        b'{"jsonrpc": "2.0", "id": ' + b"9" * 5000 + b', "method": "ping"}',
    ],
    ids=[
        "truncated",
        "empty",
        "not-utf8",
        "trailing-comma",
        "integer-too-long",
    ],
)
async def test_dispatch_unparsable_body_returns_parse_error(
    dispatcher: Dispatcher, recorder: Recorder, body: bytes
) -> None:
    reply = await dispatcher.dispatch(body, CALLER)

    assert reply.status == 400
    assert reply.body is not None and reply.body["id"] is None
    assert error_of(reply)["code"] == -32700
    assert recorder.calls == []


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000], ids=["open", "closed"]
)
async def test_dispatch_nesting_past_the_parser_is_too_deep_not_a_parse_error(
    dispatcher: Dispatcher, recorder: Recorder, body: bytes
) -> None:
    # Deeper than Python's parser recurses: the caller learns why it failed.
    reply = await dispatcher.dispatch(body, CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600
    assert error_of(reply)["data"] == {"reason": "too_deep"}
    assert recorder.calls == []


async def test_dispatch_batch_returns_invalid_request(dispatcher: Dispatcher) -> None:
    body = b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]'

    reply = await dispatcher.dispatch(body, CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600


@pytest.mark.parametrize("body", [b'"ping"', b"42", b"null", b"true"])
async def test_dispatch_non_object_returns_invalid_request(
    dispatcher: Dispatcher, body: bytes
) -> None:
    reply = await dispatcher.dispatch(body, CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600


@pytest.mark.parametrize("version", ["1.0", 2.0, None, ...])
async def test_dispatch_wrong_version_returns_invalid_request(
    dispatcher: Dispatcher, recorder: Recorder, version: object
) -> None:
    reply = await dispatcher.dispatch(request(jsonrpc=version), CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600
    assert recorder.calls == []


@pytest.mark.parametrize(
    "request_id",
    [True, 1.5, [1], {"n": 1}, "i" * 257],
    ids=["bool", "float", "list", "object", "string-over-256"],
)
async def test_dispatch_bad_id_returns_invalid_request(
    dispatcher: Dispatcher, request_id: object
) -> None:
    reply = await dispatcher.dispatch(request(id=request_id), CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600
    assert reply.body is not None and reply.body["id"] is None


@pytest.mark.parametrize("method", [7, None, ["ping"], ...])
async def test_dispatch_non_string_method_returns_invalid_request(
    dispatcher: Dispatcher, method: object
) -> None:
    reply = await dispatcher.dispatch(request(method=method), CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600


@pytest.mark.parametrize("params", ["text", 5, True])
async def test_dispatch_params_not_structured_returns_invalid_request(
    dispatcher: Dispatcher, params: object
) -> None:
    reply = await dispatcher.dispatch(request(params=params), CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600


async def test_dispatch_unknown_method_returns_method_not_found(
    dispatcher: Dispatcher,
) -> None:
    reply = await dispatcher.dispatch(request(id=9, method="drop_tables"), CALLER)

    assert reply.status == 200
    assert reply.body is not None and reply.body["id"] == 9
    assert error_of(reply)["code"] == -32601


async def test_dispatch_forbidden_method_returns_forbidden_without_calling_handler(
    dispatcher: Dispatcher, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    body = request(id=3, method="echo", params={"text": "x"})

    reply = await dispatcher.dispatch(body, call_as("viewer"))

    assert reply.status == 403
    assert reply.body is not None and reply.body["id"] == 3
    error = error_of(reply)
    assert error["code"] == -32002
    assert error["data"] == {"reason": "missing_role"}
    assert recorder.calls == []
    [record] = [r for r in caplog.records if r.getMessage() == "authorization_failure"]
    assert record.levelno == logging.WARNING
    assert record.__dict__["mesh_fields"]["method"] == "echo"
    assert record.__dict__["mesh_fields"]["jti"] == "01234567"


async def test_dispatch_forbidden_is_decided_before_params_are_validated(
    dispatcher: Dispatcher, recorder: Recorder
) -> None:
    body = request(method="echo", params={"unexpected": True})

    reply = await dispatcher.dispatch(body, call_as("viewer"))

    assert error_of(reply)["code"] == -32002
    assert recorder.calls == []


async def test_dispatch_invalid_params_returns_field_locations_without_input(
    dispatcher: Dispatcher, recorder: Recorder
) -> None:
    secret = "sk-live-0123456789"
    params = {"count": secret, "smuggled": secret}
    body = request(method="echo", params=params)

    reply = await dispatcher.dispatch(body, CALLER)

    assert reply.status == 200
    error = error_of(reply)
    assert error["code"] == -32602
    fields = {problem["field"] for problem in error["data"]["errors"]}
    assert fields == {"text", "count", "smuggled"}
    assert secret not in json.dumps(reply.body)
    assert recorder.calls == []


async def test_dispatch_positional_params_returns_invalid_params(
    dispatcher: Dispatcher, recorder: Recorder
) -> None:
    reply = await dispatcher.dispatch(request(method="echo", params=["x"]), CALLER)

    assert error_of(reply)["code"] == -32602
    assert recorder.calls == []


async def test_dispatch_handler_mesh_error_passes_through(
    dispatcher: Dispatcher,
) -> None:
    reply = await dispatcher.dispatch(request(id=5, method="missing"), CALLER)

    assert reply.status == 200
    assert reply.body is not None and reply.body["id"] == 5
    assert error_of(reply) == {
        "code": -32012,
        "message": "No task 'task-42'",
        "data": {"task_id": "task-42"},
    }


async def test_dispatch_handler_crash_returns_generic_internal_error_and_logs(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    reply = await dispatcher.dispatch(request(id=6, method="crash"), CALLER)

    assert reply.status == 500
    assert reply.body is not None and reply.body["id"] == 6
    assert error_of(reply) == {"code": -32603, "message": "Internal error"}
    assert LEAKY_DETAIL not in json.dumps(reply.body)
    [record] = [r for r in caplog.records if r.getMessage() == "rpc.internal_error"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_dispatch_notification_returns_no_body(
    dispatcher: Dispatcher, recorder: Recorder
) -> None:
    body = request(id=..., method="echo", params={"text": "n"})

    reply = await dispatcher.dispatch(body, CALLER)

    assert reply == Reply(204, None)
    assert [name for name, _ in recorder.calls] == ["echo"]


async def test_dispatch_null_id_is_a_request_not_a_notification(
    dispatcher: Dispatcher,
) -> None:
    reply = await dispatcher.dispatch(request(id=None), CALLER)

    assert reply == Reply(200, {"jsonrpc": "2.0", "result": "pong", "id": None})


def test_dispatcher_lists_its_methods(dispatcher: Dispatcher) -> None:
    assert [m.name for m in dispatcher.methods] == ["echo", "ping", "missing", "crash"]


async def test_dispatch_unknown_envelope_member_is_invalid_request(
    dispatcher: Dispatcher, recorder: Recorder
) -> None:
    reply = await dispatcher.dispatch(request(auth="x"), CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600
    assert recorder.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "\\udfff"}',
    ],
)
async def test_dispatch_lone_surrogate_in_id_or_method_is_invalid_request(
    dispatcher: Dispatcher, recorder: Recorder, body: bytes
) -> None:
    reply = await dispatcher.dispatch(body, CALLER)

    assert reply.status == 400
    assert error_of(reply)["code"] == -32600
    assert recorder.calls == []


def nested(levels: int) -> bytes:
    """An ``echo`` request whose arrays and objects nest ``levels`` deep in all,
    the envelope being the first level."""
    text: Any = "x"
    for _ in range(levels - 2):
        text = [text]
    return request(method="echo", params={"text": text})


async def test_dispatch_body_nested_to_the_limit_reaches_the_params_stage(
    recorder: Recorder,
) -> None:
    dispatcher = make_dispatcher(recorder, max_depth=4)

    reply = await dispatcher.dispatch(nested(4), CALLER)

    # Past the depth check: refused only because "text" is not a string.
    assert error_of(reply)["code"] == -32602


async def test_dispatch_body_nested_deeper_than_the_limit_is_invalid_request(
    recorder: Recorder,
) -> None:
    dispatcher = make_dispatcher(recorder, max_depth=4)

    reply = await dispatcher.dispatch(nested(5), CALLER)

    assert reply.status == 400
    assert reply.body is not None and reply.body["id"] is None
    assert error_of(reply) == {
        "code": -32600,
        "message": "JSON nested deeper than 4 levels",
        "data": {"reason": "too_deep"},
    }
    assert recorder.calls == []


@pytest.mark.parametrize(("levels", "code"), [(32, -32602), (33, -32600)])
async def test_dispatch_default_depth_limit_is_32_levels(
    dispatcher: Dispatcher, levels: int, code: int
) -> None:
    reply = await dispatcher.dispatch(nested(levels), CALLER)

    assert error_of(reply)["code"] == code


async def test_dispatch_very_deep_body_is_refused_as_too_deep(
    dispatcher: Dispatcher, recorder: Recorder
) -> None:
    reply = await dispatcher.dispatch(nested(500), CALLER)

    assert error_of(reply)["data"] == {"reason": "too_deep"}
    assert recorder.calls == []


async def test_dispatch_success_is_logged_as_method_executed_but_not_stored(
    dispatcher: Dispatcher,
    audit: Audit,
    store: MemoryStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    await dispatcher.dispatch(request(method="ping"), CALLER)

    [record] = [r for r in caplog.records if r.getMessage() == "method_executed"]
    fields = record.__dict__["mesh_fields"]
    assert record.levelno == logging.INFO
    assert (fields["outcome"], fields["method"], fields["jti"]) == (
        "ok",
        "ping",
        "01234567",
    )
    assert fields["duration_ms"] >= 0
    # One row per call would make the database pay for every request.
    assert await persisted(audit, store) == []


async def test_dispatch_failure_inside_the_method_is_not_stored_as_a_refusal(
    dispatcher: Dispatcher,
    audit: Audit,
    store: MemoryStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    await dispatcher.dispatch(request(method="missing"), CALLER)

    [record] = [r for r in caplog.records if r.getMessage() == "method_executed"]
    assert record.__dict__["mesh_fields"]["outcome"] == "error"
    assert record.__dict__["mesh_fields"]["error_code"] == -32012
    assert await persisted(audit, store) == []


async def test_dispatch_forbidden_call_is_stored_as_authorization_failure(
    dispatcher: Dispatcher, audit: Audit, store: MemoryStore
) -> None:
    await dispatcher.dispatch(request(method="ping"), call_as("viewer"))

    assert await persisted(audit, store) == [
        ("authorization_failure", "missing_role", "ping")
    ]


async def test_dispatch_invalid_params_are_stored_as_invalid_input(
    dispatcher: Dispatcher, audit: Audit, store: MemoryStore
) -> None:
    await dispatcher.dispatch(request(method="echo", params={"text": 5}), CALLER)

    assert await persisted(audit, store) == [("invalid_input", "InvalidParams", "echo")]


async def test_dispatch_too_deep_body_is_stored_as_invalid_input(
    dispatcher: Dispatcher, audit: Audit, store: MemoryStore
) -> None:
    await dispatcher.dispatch(nested(33), CALLER)

    assert await persisted(audit, store) == [("invalid_input", "InvalidRequest", None)]


async def test_dispatch_unknown_method_name_stays_out_of_the_audit_trail(
    dispatcher: Dispatcher, audit: Audit, store: MemoryStore
) -> None:
    # The name is the caller's text; only names the service offers are kept.
    await dispatcher.dispatch(request(method="drop_tables\n"), CALLER)

    assert await persisted(audit, store) == [("invalid_input", "MethodNotFound", None)]
