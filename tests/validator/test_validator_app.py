"""The validator's methods behind the dispatcher, under the shipped policy.

The app itself now opens a PostgreSQL pool in its lifespan (the security
state every replica shares), so it is no longer built here: these tests run
its methods through the same ``Dispatcher`` the app uses, with the role table
and JSON depth limit of the shipped policy. The app as a whole, behind the
security gate, is exercised by the integration tests against the real mesh.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.validator.app import METHODS
from services.validator.rules import rules_for
from shared.auth.policy import SecurityPolicy
from shared.auth.principal import Principal
from shared.jsonrpc import Call, Dispatcher, Reply
from shared.service import MeshJSONResponse

POLICY = SecurityPolicy.load()

EMPTY_TEXT = {
    "s3_key": "uploads/a.txt",
    "content_hash": "0" * 64,
    "size_bytes": 10,
    "content_type": "text/plain",
    "format": "text",
    "document_type": "document",
    "text": "",
}


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher(METHODS, POLICY.roles, max_depth=POLICY.limits.max_json_depth)


def call_as(*roles: str) -> Call:
    principal = Principal(
        subject="service-account-orchestrator",
        client_id="orchestrator",
        roles=frozenset(roles),
        jti="0123456789abcdef",
        expires_at=2_000_000_300,
        issued_at=2_000_000_000,
    )
    return Call(principal=principal, correlation_id="cid-1")


def rpc(method: str, params: dict[str, Any]) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    ).encode()


def result_of(reply: Reply) -> Any:
    assert reply.status == 200
    assert reply.body is not None and "error" not in reply.body, reply.body
    return reply.body["result"]


def error_of(reply: Reply) -> dict[str, Any]:
    assert reply.body is not None and "result" not in reply.body
    error: dict[str, Any] = reply.body["error"]
    return error


def test_validator_offers_its_two_methods_in_order(dispatcher: Dispatcher) -> None:
    # The agent card lists the dispatcher's methods as the service's skills.
    assert [m.name for m in dispatcher.methods] == [
        "validate_document",
        "get_validation_rules",
    ]


async def test_validate_document_scores_an_extraction(
    dispatcher: Dispatcher,
) -> None:
    body = rpc(
        "validate_document",
        {"document_type": "document", "extracted_data": EMPTY_TEXT},
    )

    result = result_of(await dispatcher.dispatch(body, call_as("orchestrator")))

    assert result["score"] == 0
    assert result["passed"] is False
    assert all(rule["reason"] for rule in result["rules"])


async def test_validate_document_accepts_an_extraction_with_pages_and_a_table(
    dispatcher: Dispatcher,
) -> None:
    # The deepest shape the extractor sends must fit the shipped depth limit.
    extraction = {
        **EMPTY_TEXT,
        "format": "csv",
        "document_type": "table",
        "pages": [{"number": 1, "text": "Name,Amount"}],
        "tables": [
            {
                "encoding": "utf-8",
                "delimiter": ",",
                "header": ["Name", "Amount"],
                "rows": [["Alice", "10.00"], ["Bob", "12.50"]],
                "row_count": 2,
                "column_count": 2,
            }
        ],
        "key_fields": {"amounts": [{"value": "10.00", "currency": "EUR"}]},
    }
    body = rpc(
        "validate_document", {"document_type": "table", "extracted_data": extraction}
    )

    result = result_of(await dispatcher.dispatch(body, call_as("orchestrator")))

    assert result["document_type"] == "table"


async def test_get_validation_rules_lists_the_rules_of_the_type(
    dispatcher: Dispatcher,
) -> None:
    body = rpc("get_validation_rules", {"document_type": "invoice"})

    result = result_of(await dispatcher.dispatch(body, call_as("admin")))

    assert result == {
        "document_type": "invoice",
        "rules": [rule.model_dump(mode="json") for rule in rules_for("invoice")],
    }


@pytest.mark.parametrize("roles", [("viewer",), ("lambda",), ()], ids=repr)
async def test_callers_without_the_orchestrator_role_are_refused(
    dispatcher: Dispatcher, roles: tuple[str, ...]
) -> None:
    body = rpc(
        "validate_document",
        {"document_type": "document", "extracted_data": EMPTY_TEXT},
    )

    reply = await dispatcher.dispatch(body, call_as(*roles))

    assert reply.status == 403
    assert error_of(reply)["code"] == -32002
    assert error_of(reply)["data"] == {"reason": "missing_role"}


async def test_unknown_document_type_is_invalid_params(
    dispatcher: Dispatcher,
) -> None:
    body = rpc("get_validation_rules", {"document_type": "passport"})

    reply = await dispatcher.dispatch(body, call_as("admin"))

    error = error_of(reply)
    assert error["code"] == -32602
    assert [e["field"] for e in error["data"]["errors"]] == ["document_type"]


async def test_a_lone_surrogate_in_a_param_name_is_answered_as_32602(
    dispatcher: Dispatcher,
) -> None:
    body = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "get_validation_rules",'
        b' "params": {"document_type": "invoice", "\\ud800": 1}}'
    )

    reply = await dispatcher.dispatch(body, call_as("admin"))

    assert reply.status == 200
    assert error_of(reply)["code"] == -32602
    # The app's response class must still be able to write the reply.
    rendered = json.loads(bytes(MeshJSONResponse(reply.body).body))
    assert rendered["error"]["code"] == -32602
