"""Policy: deny by default, the wildcard, the file format, and the shipped role
table checked against the one in SYSTEM.md; the security policy around it:
callers, token rules, rate limits and input limits, every mistake in the file
named by its place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.auth.policy import Policy, PolicyError, RateLimit, SecurityPolicy

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


def test_policy_granting_names_the_roles_that_grant_a_method() -> None:
    policy = Policy({"viewer": ["get_document"], "admin": ["*"], "lambda": ["upload"]})

    assert policy.granting("get_document") == ["admin", "viewer"]
    assert policy.granting("unknown_method") == ["admin"]
    assert Policy({}).granting("get_document") == []


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
def test_policy_load_malformed_file_raises_policy_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(PolicyError, match=f"^{re.escape(str(path))}: "):
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


MIB = 1024 * 1024
INNER_SERVICES = ("extractor", "validator", "archivist")


@pytest.fixture(scope="module")
def shipped_security() -> SecurityPolicy:
    return SecurityPolicy.load()


def policy_error(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        SecurityPolicy.parse(text, "policy.toml")
    return str(caught.value)


@pytest.mark.parametrize("service", INNER_SERVICES)
def test_security_shipped_inner_services_serve_only_the_orchestrator_and_admin(
    shipped_security: SecurityPolicy, service: str
) -> None:
    assert shipped_security.allowed_callers(service) == frozenset(
        {"orchestrator", "mesh-admin"}
    )


def test_security_shipped_orchestrator_serves_the_outside_clients(
    shipped_security: SecurityPolicy,
) -> None:
    assert shipped_security.allowed_callers("orchestrator") == frozenset(
        {"mesh-admin", "lambda-trigger", "document-processor", "viewer", "no-roles"}
    )


def test_security_shipped_token_rules(shipped_security: SecurityPolicy) -> None:
    tokens = shipped_security.tokens

    assert (
        tokens.leeway_seconds,
        tokens.max_lifetime_seconds,
        tokens.proof_max_age_seconds,
    ) == (30, 3600, 60)


def test_security_shipped_rate_limit_lets_the_orchestrator_drive_the_pipeline(
    shipped_security: SecurityPolicy,
) -> None:
    limits = shipped_security.rate_limit

    assert limits.limit_for({"viewer"}) == 300
    assert limits.limit_for({"orchestrator"}) == 30000


@pytest.mark.parametrize(
    ("service", "size"),
    [
        ("orchestrator", 1 * MIB),
        ("extractor", 1 * MIB),
        ("validator", 32 * MIB),
        ("archivist", 32 * MIB),
    ],
)
def test_security_shipped_body_limits(
    shipped_security: SecurityPolicy, service: str, size: int
) -> None:
    assert shipped_security.limits.body_bytes_for(service) == size


def test_security_shipped_json_depth_and_upload_limits(
    shipped_security: SecurityPolicy,
) -> None:
    limits = shipped_security.limits

    assert (limits.max_json_depth, limits.max_upload_bytes) == (32, 25 * MIB)


def test_security_file_with_only_roles_gets_the_defaults() -> None:
    policy = SecurityPolicy.parse('[roles]\nviewer = ["get_document"]\n')

    assert policy.roles.allows({"viewer"}, "get_document")
    assert policy.allowed_callers("extractor") is None
    assert policy.tokens.leeway_seconds == 30
    assert policy.rate_limit.limit_for({"viewer"}) == 300
    assert policy.limits.body_bytes_for("extractor") == 1 * MIB


def test_security_service_without_callers_entry_serves_any_client() -> None:
    policy = SecurityPolicy.parse('[roles]\n[callers]\nvalidator = ["orchestrator"]')

    assert policy.allowed_callers("validator") == frozenset({"orchestrator"})
    assert policy.allowed_callers("extractor") is None


def test_security_service_with_empty_callers_serves_no_client() -> None:
    policy = SecurityPolicy.parse("[roles]\n[callers]\nvalidator = []")

    assert policy.allowed_callers("validator") == frozenset()


def test_rate_limit_caller_with_several_roles_gets_the_highest_override() -> None:
    limits = RateLimit(requests_per_minute=100, roles={"viewer": 10, "batch": 5000})

    assert limits.limit_for({"viewer", "batch"}) == 5000


def test_rate_limit_override_may_be_lower_than_the_default() -> None:
    limits = RateLimit(requests_per_minute=100, roles={"viewer": 10})

    assert limits.limit_for({"viewer"}) == 10


def test_rate_limit_caller_without_overridden_roles_gets_the_default() -> None:
    limits = RateLimit(requests_per_minute=100, roles={"batch": 5000})

    assert limits.limit_for({"viewer"}) == 100
    assert limits.limit_for(frozenset()) == 100


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "[rate_limit]\nrequests_per_minute = 0",
            "rate_limit.requests_per_minute: Input should be greater than 0",
        ),
        (
            "[rate_limit]\nrequests_per_minute = '300'",
            "rate_limit.requests_per_minute: Input should be a valid integer",
        ),
        (
            "[rate_limit.roles]\nviewer = 0",
            "rate_limit.roles.viewer: Input should be greater than 0",
        ),
        (
            "[tokens]\nleeway_seconds = 3600",
            "tokens.leeway_seconds: Input should be less than or equal to 300",
        ),
        (
            "[tokens]\nproof_max_age_seconds = 0",
            "tokens.proof_max_age_seconds: Input should be greater than 0",
        ),
        (
            "[limits]\nmax_json_depth = 1000",
            "limits.max_json_depth: Input should be less than or equal to 256",
        ),
        (
            "[limits.max_body_bytes]\ndefault = -1",
            "limits.max_body_bytes.default: Input should be greater than 0",
        ),
        (
            "[limits.max_body_bytes]\nvalidator = 10",
            "limits.max_body_bytes needs a 'default'",
        ),
        (
            "[callers]\nvalidator = 'orchestrator'",
            "callers.validator: Input should be a valid list",
        ),
    ],
    ids=[
        "rate-zero",
        "rate-string",
        "role-rate-zero",
        "leeway-too-long",
        "proof-age-zero",
        "depth-too-deep",
        "body-negative",
        "body-no-default",
        "callers-not-a-list",
    ],
)
def test_security_file_mistake_is_named_by_its_place(text: str, problem: str) -> None:
    assert policy_error(f"[roles]\n{text}") == f"policy.toml: {problem}"


def test_security_file_unknown_section_is_refused() -> None:
    # A misspelt section would otherwise leave its limits silently unapplied.
    text = "[roles]\n[rate_limits]\nrequests_per_minute = 10"

    assert policy_error(text) == (
        "policy.toml: rate_limits: Extra inputs are not permitted"
    )


def test_security_file_unknown_key_in_a_section_is_refused() -> None:
    text = "[roles]\n[tokens]\nleeway = 5"

    assert policy_error(text) == (
        "policy.toml: tokens.leeway: Extra inputs are not permitted"
    )


def test_security_file_names_every_problem_at_once() -> None:
    text = (
        "[roles]\n[rate_limit]\nrequests_per_minute = 0\n[limits]\nmax_json_depth = 0"
    )

    assert policy_error(text) == (
        "policy.toml: rate_limit.requests_per_minute: Input should be greater than 0;"
        " limits.max_json_depth: Input should be greater than 0"
    )


def test_security_file_without_roles_is_refused() -> None:
    assert policy_error("[rate_limit]\nrequests_per_minute = 10") == (
        "policy.toml: roles: Field required"
    )


def test_security_file_that_is_not_toml_is_refused() -> None:
    assert policy_error("[roles\n").startswith("policy.toml: not valid TOML (")


def test_security_missing_file_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    with pytest.raises(PolicyError, match=f"^{re.escape(str(path))}: cannot be read"):
        SecurityPolicy.load(path)


def test_security_load_reads_the_file_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[roles]\n[callers]\nextractor = ['orchestrator']\n"
        "[rate_limit]\nrequests_per_minute = 7\n",
        encoding="utf-8",
    )

    policy = SecurityPolicy.load(path)

    assert policy.allowed_callers("extractor") == frozenset({"orchestrator"})
    assert policy.rate_limit.requests_per_minute == 7
