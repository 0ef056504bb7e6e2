"""The OpenAPI description: valid OpenAPI 3.1, every route of the app
described and nothing else, each method a branch of ``/a2a`` with its own
parameter schema and roles, the refusals with the headers they carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from services.orchestrator.app import create_app
from services.orchestrator.methods import BatchParams, ProcessParams
from services.orchestrator.openapi import describe
from services.orchestrator.settings import OrchestratorSettings
from shared.auth.policy import SecurityPolicy
from shared.errors import ERROR_TABLE
from shared.jsonrpc import Call, Method, NoParams
from shared.lookup import lookup_methods

POLICY = SecurityPolicy.load()


def settings(**overrides: Any) -> OrchestratorSettings:
    values: dict[str, Any] = {
        "issuer": "https://mesh.example.com/realms/a2a-mesh",
        "public_url": "https://mesh.example.com",
        "db_ca_file": Path("/ca.pem"),
        **overrides,
    }
    return OrchestratorSettings(**values)


async def unused(params: Any, call: Call) -> Any:
    raise AssertionError("a description never calls a method")


METHODS: list[Method[Any]] = [
    Method("process_document", ProcessParams, unused, "Start a task."),
    Method("process_batch", BatchParams, unused, "Start tasks."),
    Method("discover_agents", NoParams, unused, "The agents."),
    *lookup_methods(unused, unused, unused),
]


def describe_with(**overrides: Any) -> dict[str, Any]:
    return describe(settings(**overrides), POLICY, METHODS)


def operations(description: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, verb.upper())
        for path, item in description["paths"].items()
        for verb in item
    }


def test_openapi_description_is_valid_openapi_3_1() -> None:
    description = describe_with()

    validate(description)
    assert description["openapi"] == "3.1.0"


def test_openapi_every_route_of_the_app_is_described_and_no_other() -> None:
    app = create_app(settings())
    # HEAD comes with every GET; it is not an operation of its own.
    routes = {
        (route.path, verb)
        for route in app.routes
        if isinstance(route, Route)
        for verb in route.methods or ()
        if verb != "HEAD"
    }

    assert routes == operations(describe_with())


def test_openapi_each_method_is_one_branch_with_its_params_and_roles() -> None:
    body = describe_with()["paths"]["/a2a"]["post"]["requestBody"]
    branches = body["content"]["application/json"]["schema"]["oneOf"]
    schemas = describe_with()["components"]["schemas"]

    assert [b["properties"]["method"]["const"] for b in branches] == [
        m.name for m in METHODS
    ]
    for branch, method in zip(branches, METHODS, strict=True):
        reference = branch["properties"]["params"]["$ref"]
        assert reference == f"#/components/schemas/{method.params.__name__}"
        assert schemas[method.params.__name__] == method.params.model_json_schema()
        assert branch["x-roles"] == POLICY.roles.granting(method.name)
        assert branch["additionalProperties"] is False


@pytest.mark.parametrize(
    ("method", "required"),
    [
        ("process_document", True),
        ("get_document", True),
        ("search_documents", False),
        ("discover_agents", False),
    ],
)
def test_openapi_params_are_required_when_empty_params_are_refused(
    method: str, required: bool
) -> None:
    body = describe_with()["paths"]["/a2a"]["post"]["requestBody"]
    branches = body["content"]["application/json"]["schema"]["oneOf"]
    [branch] = [b for b in branches if b["title"] == method]

    assert ("params" in branch["required"]) is required


def test_openapi_rpc_documents_every_status_of_the_error_table() -> None:
    responses = describe_with()["paths"]["/a2a"]["post"]["responses"]

    for _, status in ERROR_TABLE.values():
        assert str(status) in responses
    assert {"204", "408", "503"} <= set(responses)


def test_openapi_refusals_carry_their_headers() -> None:
    refusals = describe_with()["components"]["responses"]

    assert "WWW-Authenticate" in refusals["Unauthenticated"]["headers"]
    assert "Retry-After" in refusals["RateLimited"]["headers"]
    assert all("X-Correlation-ID" in r["headers"] for r in refusals.values())


def test_openapi_upload_documents_the_idempotency_key_and_415() -> None:
    upload = describe_with()["paths"]["/documents"]["post"]

    [header] = upload["parameters"]
    assert (header["name"], header["in"], header["required"]) == (
        "Idempotency-Key",
        "header",
        False,
    )
    assert {"202", "400", "413", "415", "503"} <= set(upload["responses"])
    assert upload["x-roles"] == POLICY.roles.granting("upload")


@pytest.mark.parametrize("path", ["/health", "/ready", "/openapi.json"])
def test_openapi_public_routes_need_no_token(path: str) -> None:
    assert describe_with()["paths"][path]["get"]["security"] == []


def test_openapi_bearer_tokens_are_offered_only_where_accepted() -> None:
    accepting = describe_with()
    refusing = describe_with(accept_bearer_tokens=False)

    assert accepting["security"] == [{"bearer": []}, {"dpop": []}]
    assert refusing["security"] == [{"dpop": []}]
    assert "bearer" not in refusing["components"]["securitySchemes"]


def test_openapi_behind_an_alb_asking_for_certificates_every_call_needs_one() -> None:
    description = describe_with(
        trust_alb_client_certificates=True, trusted_proxies=["10.0.0.0/16"]
    )

    assert description["security"] == [
        {"bearer": [], "clientCertificate": []},
        {"dpop": [], "clientCertificate": []},
    ]
    validate(description)
