"""Policy: deny by default, the wildcard, the file format, and the shipped role
table checked against the one in SYSTEM.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.auth.policy import Policy

# The role table of SYSTEM.md ("Roles"), and every method SYSTEM.md names. One
# addition: only the orchestrator faces callers, so it passes viewers' archive
# look-ups on to the archivist, and its role may make them.
SYSTEM_ROLE_TABLE: dict[str, frozenset[str]] = {
    "orchestrator": frozenset(
        {
            "extract_document",
            "validate_document",
            "archive_document",
            "get_document",
            "search_documents",
            "get_document_stats",
        }
    ),
    "lambda": frozenset({"process_document", "process_batch", "upload"}),
    "document-processor": frozenset(
        {
            "process_document",
            "process_batch",
            "get_task_status",
            "list_pending_documents",
            "upload",
        }
    ),
    "viewer": frozenset(
        {"get_task_status", "get_document", "search_documents", "get_document_stats"}
    ),
}
SYSTEM_METHODS = (
    "process_document",
    "process_batch",
    "get_task_status",
    "list_pending_documents",
    "discover_agents",
    "upload",
    "extract_document",
    "list_supported_formats",
    "validate_document",
    "get_validation_rules",
    "archive_document",
    "get_document",
    "search_documents",
    "get_document_stats",
)
GRANTED = [
    (role, method)
    for role, methods in SYSTEM_ROLE_TABLE.items()
    for method in sorted(methods)
]
NOT_GRANTED = [
    (role, method)
    for role, methods in SYSTEM_ROLE_TABLE.items()
    for method in SYSTEM_METHODS
    if method not in methods
]


def pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}:{pair[1]}"


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return Policy.load()


def test_policy_denies_method_not_granted() -> None:
    policy = Policy({"viewer": ["get_document"]})

    assert not policy.allows({"viewer"}, "archive_document")


def test_policy_denies_role_it_does_not_know() -> None:
    policy = Policy({"viewer": ["get_document"]})

    assert not policy.allows({"intruder"}, "get_document")


def test_policy_denies_caller_without_roles() -> None:
    policy = Policy({"viewer": ["get_document"]})

    assert not policy.allows(frozenset(), "get_document")


def test_policy_empty_policy_denies_everything() -> None:
    assert not Policy({}).allows({"admin"}, "get_document")


def test_policy_allows_method_granted_by_any_of_the_roles() -> None:
    policy = Policy({"viewer": ["get_document"], "lambda": ["upload"]})

    assert policy.allows({"viewer", "lambda"}, "upload")


def test_policy_wildcard_grants_every_method() -> None:
    policy = Policy({"admin": ["*"]})

    assert policy.allows({"admin"}, "archive_document")
    assert policy.allows({"admin"}, "a_method_added_later")


def test_policy_wildcard_is_not_a_pattern() -> None:
    policy = Policy({"reader": ["get_*"]})

    assert not policy.allows({"reader"}, "get_document")


def test_policy_load_custom_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[roles]\nauditor = ["get_document_stats"]\n', encoding="utf-8")

    policy = Policy.load(path)

    assert policy.allows({"auditor"}, "get_document_stats")
    assert not policy.allows({"auditor"}, "get_document")
    assert not policy.allows({"admin"}, "get_document")


@pytest.mark.parametrize(
    "text",
    [
        "[roles\nadmin = ['*']",
        "",
        "[other]\nadmin = ['*']",
        "roles = 'admin'",
        "[roles]\nadmin = '*'",
        "[roles]\nadmin = ['*', 3]",
        "[roles.admin]\nmethods = ['*']",
    ],
    ids=[
        "not-toml",
        "empty",
        "no-roles-table",
        "roles-not-a-table",
        "methods-not-a-list",
        "non-string-method",
        "nested-table",
    ],
)
def test_policy_load_malformed_file_raises_value_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ValueError):
        Policy.load(path)


def test_policy_shipped_admin_may_call_everything(shipped: Policy) -> None:
    for method in (*SYSTEM_METHODS, "revoke_token"):
        assert shipped.allows({"admin"}, method)


@pytest.mark.parametrize(("role", "method"), GRANTED, ids=map(pair_id, GRANTED))
def test_policy_shipped_grants_what_system_md_grants(
    shipped: Policy, role: str, method: str
) -> None:
    assert shipped.allows({role}, method)


@pytest.mark.parametrize(("role", "method"), NOT_GRANTED, ids=map(pair_id, NOT_GRANTED))
def test_policy_shipped_denies_what_system_md_does_not_grant(
    shipped: Policy, role: str, method: str
) -> None:
    assert not shipped.allows({role}, method)


def test_policy_shipped_unknown_role_is_denied(shipped: Policy) -> None:
    for method in SYSTEM_METHODS:
        assert not shipped.allows({"default-roles-a2a-mesh"}, method)
