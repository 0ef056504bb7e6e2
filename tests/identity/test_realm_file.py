"""The realm-export file Keycloak imports, and the loader's checks on such files."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.identity.realm import (
    DEFAULT_REALM_FILE,
    RealmError,
    load_realm,
    parse_realm,
    service_account_subject,
)

AGENTS = ["extractor", "validator", "archivist"]
SERVICES = ["orchestrator", *AGENTS]
AGENT_SCOPES = [f"{agent}-audience" for agent in AGENTS]

# Role per caller, from the role table of SYSTEM.md; agents call nobody.
EXPECTED_ROLES: dict[str, list[str]] = {
    "orchestrator": ["orchestrator"],
    "extractor": [],
    "validator": [],
    "archivist": [],
    "mesh-admin": ["admin"],
    "lambda-trigger": ["lambda"],
    "document-processor": ["document-processor"],
    "viewer": ["viewer"],
    "no-roles": [],
}
# The audience each client always gets; the services it calls one at a time
# come from optional client scopes instead, one token per receiver.
EXPECTED_AUDIENCES: dict[str, list[str]] = {
    "orchestrator": [],
    "extractor": [],
    "validator": [],
    "archivist": [],
    "mesh-admin": ["orchestrator"],
    "lambda-trigger": ["orchestrator"],
    "document-processor": ["orchestrator"],
    "viewer": ["orchestrator"],
    "no-roles": ["orchestrator"],
}
EXPECTED_OPTIONAL_SCOPES: dict[str, list[str]] = {
    client_id: AGENT_SCOPES if client_id in ("orchestrator", "mesh-admin") else []
    for client_id in EXPECTED_ROLES
}


def export() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(DEFAULT_REALM_FILE.read_text(encoding="utf-8"))
    return raw


def clients() -> dict[str, dict[str, Any]]:
    return {client["clientId"]: client for client in export()["clients"]}


def audience_mapper(audience: str) -> dict[str, Any]:
    return {
        "name": f"audience-{audience}",
        "protocol": "openid-connect",
        "protocolMapper": "oidc-audience-mapper",
        "consentRequired": False,
        "config": {
            "included.client.audience": audience,
            "access.token.claim": "true",
            "id.token.claim": "false",
        },
    }


def test_realm_is_enabled_with_external_tls_and_five_minute_tokens() -> None:
    raw = export()

    assert raw["realm"] == "a2a-mesh"
    assert raw["enabled"] is True
    assert raw["sslRequired"] == "external"
    assert raw["accessTokenLifespan"] == 300


def test_realm_roles_are_those_of_the_role_table() -> None:
    names = {role["name"] for role in export()["roles"]["realm"]}

    assert names == {"admin", "orchestrator", "lambda", "document-processor", "viewer"}


def test_clients_are_one_per_service_and_one_per_caller_kind() -> None:
    assert sorted(clients()) == sorted(EXPECTED_ROLES)


@pytest.mark.parametrize("client_id", sorted(EXPECTED_ROLES))
def test_client_is_confidential_with_service_account_only(client_id: str) -> None:
    client = clients()[client_id]

    assert client["enabled"] is True
    assert client["publicClient"] is False
    assert client["bearerOnly"] is False
    assert client["serviceAccountsEnabled"] is True
    assert client["standardFlowEnabled"] is False
    assert client["implicitFlowEnabled"] is False
    assert client["directAccessGrantsEnabled"] is False
    assert client["clientAuthenticatorType"] == "client-secret"
    assert client["protocol"] == "openid-connect"


@pytest.mark.parametrize("client_id", sorted(EXPECTED_ROLES))
def test_client_secret_is_an_environment_placeholder(client_id: str) -> None:
    name = "MESH_CLIENT_SECRET_" + client_id.upper().replace("-", "_")

    assert clients()[client_id]["secret"] == "${" + name + "}"


def test_file_holds_no_literal_secret_or_credential() -> None:
    text = DEFAULT_REALM_FILE.read_text(encoding="utf-8")
    secrets = re.findall(r'"secret":\s*"([^"]*)"', text)

    assert len(secrets) == len(EXPECTED_ROLES)
    assert all(re.fullmatch(r"\$\{MESH_CLIENT_SECRET_[A-Z_]+\}", s) for s in secrets)
    assert '"credentials"' not in text
    assert '"password"' not in text


@pytest.mark.parametrize(("client_id", "roles"), sorted(EXPECTED_ROLES.items()))
def test_service_account_user_has_the_client_roles(
    client_id: str, roles: list[str]
) -> None:
    users = [
        user
        for user in export()["users"]
        if user.get("serviceAccountClientId") == client_id
    ]

    assert len(users) == 1
    assert users[0]["username"] == f"service-account-{client_id}"
    assert users[0]["enabled"] is True
    assert users[0]["realmRoles"] == roles
    assert users[0]["clientRoles"] == {}


@pytest.mark.parametrize(("client_id", "audiences"), sorted(EXPECTED_AUDIENCES.items()))
def test_audience_mappers_name_the_services_a_client_always_calls(
    client_id: str, audiences: list[str]
) -> None:
    mappers = clients()[client_id].get("protocolMappers", [])

    assert all(m["protocolMapper"] == "oidc-audience-mapper" for m in mappers)
    assert all(m["protocol"] == "openid-connect" for m in mappers)
    assert [m["config"]["included.client.audience"] for m in mappers] == audiences
    for mapper in mappers:
        assert mapper["config"]["access.token.claim"] == "true"
        assert mapper["config"]["id.token.claim"] == "false"
        assert "included.custom.audience" not in mapper["config"]


BUILT_IN_SCOPES = ["basic", "roles", "profile", "email"]


def scopes_by_name() -> dict[str, dict[str, Any]]:
    return {scope["name"]: scope for scope in export()["clientScopes"]}


def test_the_file_defines_keycloaks_built_in_scopes_and_the_audience_scopes() -> None:
    # A realm file that lists client scopes replaces the ones Keycloak would
    # create, so the built-ins a token needs must be written out here.
    names = [scope["name"] for scope in export()["clientScopes"]]

    assert names == [*BUILT_IN_SCOPES, *(f"{s}-audience" for s in SERVICES)]


def mapper_of(scope: str, kind: str) -> dict[str, Any]:
    mappers: list[dict[str, Any]] = scopes_by_name()[scope]["protocolMappers"]
    (mapper,) = [m for m in mappers if m["protocolMapper"] == kind]
    return mapper


def test_basic_scope_puts_the_subject_in_access_tokens() -> None:
    mapper = mapper_of("basic", "oidc-sub-mapper")

    assert mapper["config"]["access.token.claim"] == "true"


def test_roles_scope_puts_realm_roles_where_the_verifier_reads_them() -> None:
    mapper = mapper_of("roles", "oidc-usermodel-realm-role-mapper")

    assert mapper["config"]["claim.name"] == "realm_access.roles"
    assert mapper["config"]["multivalued"] == "true"
    assert mapper["config"]["access.token.claim"] == "true"


@pytest.mark.parametrize("client_id", sorted(EXPECTED_ROLES))
def test_every_client_gets_the_built_in_scopes_by_default(client_id: str) -> None:
    assert clients()[client_id]["defaultClientScopes"] == BUILT_IN_SCOPES
    assert export()["defaultDefaultClientScopes"] == BUILT_IN_SCOPES


def test_client_scopes_add_one_service_each_to_the_audience() -> None:
    scopes = [
        scope
        for scope in export()["clientScopes"]
        if scope["name"] not in BUILT_IN_SCOPES
    ]

    assert [scope["name"] for scope in scopes] == [f"{s}-audience" for s in SERVICES]
    for scope, service in zip(scopes, SERVICES, strict=True):
        assert scope["protocol"] == "openid-connect"
        assert scope["attributes"] == {"include.in.token.scope": "true"}
        assert [m["protocolMapper"] for m in scope["protocolMappers"]] == [
            "oidc-audience-mapper"
        ]
        assert scope["protocolMappers"][0]["config"] == {
            "included.client.audience": service,
            "access.token.claim": "true",
            "id.token.claim": "false",
        }


@pytest.mark.parametrize(
    ("client_id", "scopes"), sorted(EXPECTED_OPTIONAL_SCOPES.items())
)
def test_optional_client_scopes_are_the_agents_a_client_calls(
    client_id: str, scopes: list[str]
) -> None:
    assert clients()[client_id].get("optionalClientScopes", []) == scopes


@pytest.mark.parametrize("client_id", sorted(EXPECTED_ROLES))
def test_dpop_bound_tokens_are_required_of_the_services_only(client_id: str) -> None:
    attributes = clients()[client_id]["attributes"]

    expected = "true" if client_id in SERVICES else None
    assert attributes.get("dpop.bound.access.tokens") == expected


def test_no_client_adds_hardcoded_claims() -> None:
    kinds = {
        mapper["protocolMapper"]
        for client in export()["clients"]
        for mapper in client.get("protocolMappers", [])
    }

    assert kinds == {"oidc-audience-mapper"}


def test_loaded_realm_matches_the_file() -> None:
    realm = load_realm()

    assert realm.access_token_lifespan == 300
    assert realm.ssl_required == "external"
    for client_id, client in realm.clients.items():
        assert list(client.roles) == EXPECTED_ROLES[client_id]
        assert list(client.default_audiences) == EXPECTED_AUDIENCES[client_id]
        assert client.optional_scopes == {
            scope: (scope.removesuffix("-audience"),)
            for scope in EXPECTED_OPTIONAL_SCOPES[client_id]
        }
        assert client.dpop_bound is (client_id in SERVICES)
        assert client.service_accounts_enabled
        assert client.enabled
        assert client.subject == service_account_subject("a2a-mesh", client_id)


def test_service_account_ids_are_the_stand_in_subjects() -> None:
    for user in export()["users"]:
        client_id = user["serviceAccountClientId"]
        assert user["id"] == service_account_subject("a2a-mesh", client_id)


def test_subject_without_user_id_is_derived_from_realm_and_client() -> None:
    raw = export()
    for user in raw["users"]:
        del user["id"]

    realm = parse_realm(raw)

    assert realm.clients["viewer"].subject == service_account_subject(
        "a2a-mesh", "viewer"
    )


def test_client_without_service_account_user_has_no_roles() -> None:
    raw = export()
    raw["users"] = [u for u in raw["users"] if u["serviceAccountClientId"] != "viewer"]

    assert parse_realm(raw).clients["viewer"].roles == ()


def test_default_client_scope_adds_its_audience_and_built_ins_are_ignored() -> None:
    raw = export()
    viewer = next(c for c in raw["clients"] if c["clientId"] == "viewer")
    viewer["protocolMappers"] = []
    viewer["defaultClientScopes"] = [
        "web-origins",
        "acr",
        "profile",
        "roles",
        "basic",
        "email",
        "orchestrator-audience",
    ]

    client = parse_realm(raw).clients["viewer"]

    assert client.default_audiences == ("orchestrator",)
    assert client.optional_scopes == {}


def test_client_scope_without_audience_mapper_adds_no_audience() -> None:
    raw = export()
    raw["clientScopes"].append(
        {
            "name": "phone",
            "protocol": "openid-connect",
            "protocolMappers": [
                {
                    "name": "phone number",
                    "protocol": "openid-connect",
                    "protocolMapper": "oidc-usermodel-attribute-mapper",
                    "config": {"claim.name": "phone_number"},
                }
            ],
        }
    )
    raw["clients"][0]["optionalClientScopes"].append("phone")

    assert parse_realm(raw).clients["orchestrator"].optional_scopes["phone"] == ()


def test_client_without_dpop_attribute_is_not_bound() -> None:
    raw = export()
    del raw["clients"][0]["attributes"]

    assert parse_realm(raw).clients["orchestrator"].dpop_bound is False


def test_unknown_client_scope_is_named_in_the_error() -> None:
    raw = export()
    raw["clients"][0]["optionalClientScopes"] = ["extractor-audience", "ghost"]

    with pytest.raises(RealmError) as caught:
        parse_realm(raw)

    assert str(caught.value) == (
        "clients[0].optionalClientScopes: unknown client scopes ['ghost']"
    )


def test_masked_secret_of_a_full_export_means_no_secret() -> None:
    raw = export()
    raw["clients"][0]["secret"] = "**********"

    assert parse_realm(raw).clients["orchestrator"].secret_ref is None


def broken(change: str) -> dict[str, Any]:
    raw = copy.deepcopy(export())
    orchestrator = raw["clients"][0]
    orchestrator_user = raw["users"][0]
    first_scope = raw["clientScopes"][0]
    if change == "literal_secret":
        orchestrator["secret"] = "hunter2hunter2"
    elif change == "placeholder_default":
        orchestrator["secret"] = "${MESH_CLIENT_SECRET_ORCHESTRATOR:changeme}"
    elif change == "unknown_role":
        orchestrator_user["realmRoles"] = ["superuser"]
    elif change == "unknown_audience":
        orchestrator["protocolMappers"] = [audience_mapper("x")]
    elif change == "duplicate_client":
        raw["clients"].append(copy.deepcopy(orchestrator))
    elif change == "second_service_account":
        raw["users"].append(copy.deepcopy(orchestrator_user))
    elif change == "account_of_unknown_client":
        orchestrator_user["serviceAccountClientId"] = "ghost"
    elif change == "disabled_realm":
        raw["enabled"] = False
    elif change == "bad_lifespan":
        raw["accessTokenLifespan"] = 0
    elif change == "bad_ssl_required":
        raw["sslRequired"] = "sometimes"
    elif change == "clients_not_a_list":
        raw["clients"] = {}
    elif change == "client_without_id":
        del orchestrator["clientId"]
    elif change == "scopes_not_a_list":
        raw["clientScopes"] = {}
    elif change == "scope_not_an_object":
        raw["clientScopes"][0] = "extractor-audience"
    elif change == "scope_without_name":
        del first_scope["name"]
    elif change == "duplicate_scope":
        raw["clientScopes"].append(copy.deepcopy(first_scope))
    elif change == "scope_of_unknown_client":
        first_scope["protocolMappers"] = [audience_mapper("ghost")]
    elif change == "scope_mappers_not_a_list":
        first_scope["protocolMappers"] = {}
    elif change == "scope_attributes_not_an_object":
        first_scope["attributes"] = ["include.in.token.scope"]
    elif change == "scope_protocol_not_a_string":
        first_scope["protocol"] = 7
    elif change == "unknown_optional_scope":
        orchestrator["optionalClientScopes"] = ["ghost-audience"]
    elif change == "unknown_default_scope":
        orchestrator["defaultClientScopes"] = ["profile", "ghost"]
    elif change == "optional_scopes_not_a_list":
        orchestrator["optionalClientScopes"] = "extractor-audience"
    elif change == "optional_scope_not_a_string":
        orchestrator["optionalClientScopes"] = [{"name": "extractor-audience"}]
    elif change == "dpop_attribute_not_a_string":
        orchestrator["attributes"]["dpop.bound.access.tokens"] = True
    elif change == "dpop_attribute_misspelt":
        orchestrator["attributes"]["dpop.bound.access.tokens"] = "True"
    elif change == "attributes_not_an_object":
        orchestrator["attributes"] = []
    return raw


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ("literal_secret", "clients[0].secret"),
        ("placeholder_default", "clients[0].secret"),
        ("unknown_role", "users[0].realmRoles"),
        ("unknown_audience", "clients[0].protocolMappers[0].config"),
        ("duplicate_client", "clients"),
        ("second_service_account", f"users[{len(EXPECTED_ROLES)}]"),
        ("account_of_unknown_client", "users[0]"),
        ("disabled_realm", "enabled"),
        ("bad_lifespan", "accessTokenLifespan"),
        ("bad_ssl_required", "sslRequired"),
        ("clients_not_a_list", "clients"),
        ("client_without_id", "clients[0].clientId"),
        ("scopes_not_a_list", "clientScopes"),
        ("scope_not_an_object", "clientScopes[0]"),
        ("scope_without_name", "clientScopes[0].name"),
        (
            "duplicate_scope",
            f"clientScopes[{len(BUILT_IN_SCOPES) + len(SERVICES)}].name",
        ),
        ("scope_of_unknown_client", "clientScopes[0].protocolMappers[0].config"),
        ("scope_mappers_not_a_list", "clientScopes[0].protocolMappers"),
        ("scope_attributes_not_an_object", "clientScopes[0].attributes"),
        ("scope_protocol_not_a_string", "clientScopes[0].protocol"),
        ("unknown_optional_scope", "clients[0].optionalClientScopes"),
        ("unknown_default_scope", "clients[0].defaultClientScopes"),
        ("optional_scopes_not_a_list", "clients[0].optionalClientScopes"),
        ("optional_scope_not_a_string", "clients[0].optionalClientScopes"),
        ("dpop_attribute_not_a_string", "clients[0].attributes"),
        ("dpop_attribute_misspelt", "clients[0].attributes"),
        ("attributes_not_an_object", "clients[0].attributes"),
    ],
)
def test_parse_realm_refuses_broken_file(change: str, path: str) -> None:
    with pytest.raises(RealmError) as caught:
        parse_realm(broken(change))

    assert caught.value.path == path


def test_load_realm_refuses_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "realm.json"
    path.write_text("{not json", encoding="utf-8")

    with pytest.raises(RealmError) as caught:
        load_realm(path)

    assert caught.value.path == str(path)


def test_load_realm_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RealmError):
        load_realm(tmp_path / "absent.json")
