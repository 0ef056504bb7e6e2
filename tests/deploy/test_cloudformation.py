"""deploy/ecs/template.yaml checked against the seed's data-security chapter,
the code it runs, and two linters (cfn-lint, checkov).

No AWS account is used: the template is read, not deployed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint_file  # type: ignore[import-untyped]
from pydantic_settings import BaseSettings

from services.archivist.settings import ArchivistSettings
from services.extractor.settings import ExtractorSettings
from services.identity.realm import load_realm
from services.launcher.container import ENTRYPOINT_VARIABLES, PEM_VARIABLES
from services.orchestrator.settings import OrchestratorSettings
from services.validator.settings import ValidatorSettings
from tests.deploy.cloudformation import (
    ROOT,
    TEMPLATE_FILE,
    Template,
    actions,
    as_list,
    container,
    environment,
    get_att,
    injected_secrets,
    load_template,
    names_resource,
    policy_statements,
    ref,
    resources_of_type,
)

SETTINGS: dict[str, type[BaseSettings]] = {
    "orchestrator": OrchestratorSettings,
    "extractor": ExtractorSettings,
    "validator": ValidatorSettings,
    "archivist": ArchivistSettings,
}
MESH = tuple(SETTINGS)
PORTS = {"orchestrator": 8001, "extractor": 8002, "validator": 8003, "archivist": 8004}

TLS_SECRET_KEYS = {
    "MESH_CA_PEM": "ca",
    "MESH_TLS_CERT_PEM": "cert",
    "MESH_TLS_KEY_PEM": "key",
    "MESH_TLS_CLIENT_CERT_PEM": "client_cert",
    "MESH_TLS_CLIENT_KEY_PEM": "client_key",
}

SECRETISH_NAME = re.compile(r"(PASSWORD|SECRET|_PEM|_KEY)$")
INTERNET = "0.0.0.0/0"


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


def task_definition(service: str) -> str:
    return f"{service.capitalize()}TaskDefinition"


def client_ids() -> list[str]:
    return sorted(load_realm().clients)


def secret_logical_id(client_id: str) -> str:
    words = client_id.split("-")
    return "".join(word.capitalize() for word in words) + "ClientSecret"


# ---------------------------------------------------- seed: encryption at rest


def _database_encrypted(template: Template, logical_id: str) -> None:
    properties = template["Resources"][logical_id]["Properties"]
    assert properties["StorageEncrypted"] is True
    assert properties["KmsKeyId"] == get_att("DataKey", "Arn")


def test_rds_aurora_postgresql_row_documents_database_is_encrypted(
    template: Template,
) -> None:
    _database_encrypted(template, "DocumentsDatabase")


def test_rds_postgresql_keycloak_row_keycloak_database_is_encrypted(
    template: Template,
) -> None:
    _database_encrypted(template, "KeycloakDatabase")


def test_s3_bucket_row_documents_bucket_uses_sse_kms(template: Template) -> None:
    encryption = template["Resources"]["DocumentsBucket"]["Properties"][
        "BucketEncryption"
    ]
    (rule,) = encryption["ServerSideEncryptionConfiguration"]

    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": get_att("DataKey", "Arn"),
    }
    assert rule["BucketKeyEnabled"] is True


def test_ebs_volumes_ecs_row_fargate_ephemeral_storage_has_its_own_key(
    template: Template,
) -> None:
    configuration = template["Resources"]["Cluster"]["Properties"]["Configuration"]

    storage = configuration["ManagedStorageConfiguration"]
    assert storage["FargateEphemeralStorageKmsKeyId"] == ref("EphemeralStorageKey")


@pytest.mark.parametrize(
    "logical_id",
    [
        name
        for name, _ in resources_of_type(load_template(), "AWS::SecretsManager::Secret")
    ],
)
def test_secrets_manager_row_every_secret_uses_the_secrets_key(
    template: Template, logical_id: str
) -> None:
    properties = template["Resources"][logical_id]["Properties"]

    assert properties["KmsKeyId"] == ref("SecretsKey")


@pytest.mark.parametrize(
    "logical_id",
    [name for name, _ in resources_of_type(load_template(), "AWS::Logs::LogGroup")],
)
def test_cloudwatch_logs_row_every_log_group_uses_the_logs_key(
    template: Template, logical_id: str
) -> None:
    properties = template["Resources"][logical_id]["Properties"]

    assert properties["KmsKeyId"] == get_att("LogsKey", "Arn")
    assert properties["RetentionInDays"] >= 365


def test_every_kms_key_rotates(template: Template) -> None:
    keys = dict(resources_of_type(template, "AWS::KMS::Key"))

    assert set(keys) == {"SecretsKey", "LogsKey", "DataKey", "EphemeralStorageKey"}
    assert all(key["Properties"]["EnableKeyRotation"] is True for key in keys.values())


def test_no_kms_key_lets_anyone_use_it(template: Template) -> None:
    for _, key in resources_of_type(template, "AWS::KMS::Key"):
        for statement in key["Properties"]["KeyPolicy"]["Statement"]:
            assert statement["Principal"] != "*"
            assert statement["Principal"] != {"AWS": "*"}


# -------------------------------------------------------------- seed: secrets


def _secret(template: Template, logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return properties


def test_db_password_secret_is_generated_and_is_the_database_password(
    template: Template,
) -> None:
    secret = _secret(template, "DatabasePasswordSecret")
    database = template["Resources"]["DocumentsDatabase"]["Properties"]

    assert secret["Name"] == "a2a-mesh/db-password"
    # A plain string, as shared/secrets reads it: no JSON template.
    assert "SecretStringTemplate" not in secret["GenerateSecretString"]
    assert database["MasterUserPassword"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${DatabasePasswordSecret}}}"
    }


def test_keycloak_admin_password_secret_is_injected_into_keycloak(
    template: Template,
) -> None:
    secret = _secret(template, "KeycloakAdminPasswordSecret")
    injected = injected_secrets(container(template, "KeycloakTaskDefinition"))

    assert secret["Name"] == "a2a-mesh/keycloak-admin-password"
    assert "GenerateSecretString" in secret
    assert injected["KC_BOOTSTRAP_ADMIN_PASSWORD"] == ref("KeycloakAdminPasswordSecret")


def test_keycloak_db_password_secret_is_keycloak_database_password(
    template: Template,
) -> None:
    secret = _secret(template, "KeycloakDatabasePasswordSecret")
    injected = injected_secrets(container(template, "KeycloakTaskDefinition"))
    database = template["Resources"]["KeycloakDatabase"]["Properties"]

    assert secret["Name"] == "a2a-mesh/keycloak-db-password"
    assert "GenerateSecretString" in secret
    assert injected["KC_DB_PASSWORD"] == ref("KeycloakDatabasePasswordSecret")
    assert names_resource(
        database["MasterUserPassword"], "KeycloakDatabasePasswordSecret"
    )


@pytest.mark.parametrize("client_id", client_ids())
def test_keycloak_client_secret_one_per_realm_client_injected_into_keycloak(
    template: Template, client_id: str
) -> None:
    logical_id = secret_logical_id(client_id)
    secret = _secret(template, logical_id)
    injected = injected_secrets(container(template, "KeycloakTaskDefinition"))
    variable = "MESH_CLIENT_SECRET_" + client_id.upper().replace("-", "_")

    assert secret["Name"] == f"a2a-mesh/clients/{client_id}"
    assert "GenerateSecretString" in secret
    assert injected[variable] == ref(logical_id)


def test_keycloak_gets_exactly_the_realm_clients_secrets(template: Template) -> None:
    injected = injected_secrets(container(template, "KeycloakTaskDefinition"))
    prefix = "MESH_CLIENT_SECRET_"

    named = {name for name in injected if name.startswith(prefix)}
    expected = {prefix + c.upper().replace("-", "_") for c in client_ids()}
    assert named == expected


@pytest.mark.parametrize("service", [*MESH, "keycloak"])
def test_tls_secret_exists_with_the_json_keys_the_task_reads(
    template: Template, service: str
) -> None:
    logical_id = f"{service.capitalize()}TlsSecret"
    secret = _secret(template, logical_id)
    generated = secret["GenerateSecretString"]
    keys = set(json.loads(generated["SecretStringTemplate"]))

    assert secret["Name"] == f"a2a-mesh/tls/{service}"
    assert keys | {generated["GenerateStringKey"]} == set(TLS_SECRET_KEYS.values())


# ------------------------------------------------- containers and settings


@pytest.mark.parametrize("service", MESH)
def test_every_mesh_variable_is_a_setting_of_its_service(
    template: Template, service: str
) -> None:
    definition = container(template, task_definition(service))
    fields = {f"MESH_{name.upper()}" for name in SETTINGS[service].model_fields}
    known = fields | ENTRYPOINT_VARIABLES
    given = set(environment(definition)) | set(injected_secrets(definition))

    assert given - known == set()


@pytest.mark.parametrize("service", MESH)
def test_every_required_setting_is_given(template: Template, service: str) -> None:
    given = set(environment(container(template, task_definition(service))))
    required = {
        f"MESH_{name.upper()}"
        for name, field in SETTINGS[service].model_fields.items()
        if field.is_required()
    }

    assert required <= given


@pytest.mark.parametrize("service", MESH)
def test_file_settings_are_left_to_the_entrypoint(
    template: Template, service: str
) -> None:
    definition = container(template, task_definition(service))
    file_settings = {setting for _, setting in PEM_VARIABLES.values()}

    # The entrypoint refuses a PEM and its file setting given together.
    assert file_settings.isdisjoint(environment(definition))


@pytest.mark.parametrize("service", MESH)
def test_tls_material_comes_from_the_services_own_secret(
    template: Template, service: str
) -> None:
    injected = injected_secrets(container(template, task_definition(service)))
    secret = f"{service.capitalize()}TlsSecret"

    assert set(injected) == set(PEM_VARIABLES)
    for variable, key in TLS_SECRET_KEYS.items():
        assert injected[variable] == {"Fn::Sub": f"${{{secret}}}:{key}::"}


@pytest.mark.parametrize("service", MESH)
def test_service_listens_on_its_port_and_advertises_its_url(
    template: Template, service: str
) -> None:
    definition = container(template, task_definition(service))
    env = environment(definition)
    port = PORTS[service]

    # The image's entry point is `a2a-mesh`; the command is its arguments.
    assert definition["Command"] == ["serve", service]
    assert 'ENTRYPOINT ["a2a-mesh"]' in (ROOT / "Dockerfile").read_text()
    assert definition["PortMappings"] == [{"ContainerPort": port, "Protocol": "tcp"}]
    assert env["MESH_HOST"] == "0.0.0.0"  # noqa: S104 (inside the task's ENI)
    assert env["MESH_PORT"] == str(port)
    if service != "orchestrator":
        # DPoP proofs name the URL the orchestrator calls.
        assert env["MESH_PUBLIC_URL"] == f"https://{service}.a2a-mesh.local:{port}"


def test_orchestrator_calls_agents_by_their_cloud_map_names(
    template: Template,
) -> None:
    env = environment(container(template, "OrchestratorTaskDefinition"))

    for agent in MESH[1:]:
        url = env[f"MESH_{agent.upper()}_URL"]
        assert url == f"https://{agent}.a2a-mesh.local:{PORTS[agent]}"


@pytest.mark.parametrize("service", MESH)
def test_issuer_is_public_and_keys_and_tokens_come_from_keycloak_inside(
    template: Template, service: str
) -> None:
    env = environment(container(template, task_definition(service)))
    realm = "https://keycloak.a2a-mesh.local:8443/realms/a2a-mesh"

    assert env["MESH_ISSUER"] == {"Fn::Sub": "https://${DomainName}/realms/a2a-mesh"}
    assert env["MESH_JWKS_URL"] == f"{realm}/protocol/openid-connect/certs"
    assert env["MESH_TOKEN_URL"] == f"{realm}/protocol/openid-connect/token"


@pytest.mark.parametrize("service", MESH)
def test_agents_require_client_certificates_and_the_orchestrator_does_not(
    template: Template, service: str
) -> None:
    env = environment(container(template, task_definition(service)))

    if service == "orchestrator":
        assert "MESH_TLS_CLIENT_CA_FILE" not in env
    else:
        assert env["MESH_TLS_CLIENT_CA_FILE"] == "/run/mesh/ca.pem"


def test_orchestrator_believes_only_the_albs_subnets(template: Template) -> None:
    env = environment(container(template, "OrchestratorTaskDefinition"))

    assert env["MESH_TRUSTED_PROXIES"] == {
        "Fn::Sub": '["${PublicSubnetACidr}", "${PublicSubnetBCidr}"]'
    }
    assert env["MESH_TRUST_ALB_CLIENT_CERTIFICATES"] == {
        "Fn::If": ["HasTrustStore", "true", "false"]
    }


def test_alb_mutual_tls_verifies_against_the_trust_store_when_one_is_given(
    template: Template,
) -> None:
    listener = template["Resources"]["HttpsListener"]["Properties"]
    condition, verify, otherwise = listener["MutualAuthentication"]["Fn::If"]

    assert condition == "HasTrustStore"
    assert verify["Mode"] == "verify"
    assert verify["TrustStoreArn"] == ref("TrustStoreArn")
    assert otherwise == ref("AWS::NoValue")


@pytest.mark.parametrize("service", [*MESH, "keycloak"])
def test_container_is_locked_down_and_logs_to_its_encrypted_group(
    template: Template, service: str
) -> None:
    definition = container(template, task_definition(service))
    log = definition["LogConfiguration"]

    assert definition["ReadonlyRootFilesystem"] is True
    assert not definition["User"].startswith(("0:", "root"))
    assert definition["User"] != "0"
    assert {"SourceVolume": "run-mesh", "ContainerPath": "/run/mesh"} in definition[
        "MountPoints"
    ]
    assert log["LogDriver"] == "awslogs"
    assert log["Options"]["awslogs-group"] == ref(f"{service.capitalize()}LogGroup")


def test_extractor_has_a_writable_tmp_for_its_worker_processes(
    template: Template,
) -> None:
    # multiprocessing's forkserver listens on a Unix socket in /tmp, which
    # the read-only root would refuse; the image declares /tmp a volume.
    definition = template["Resources"][task_definition("extractor")]["Properties"]
    mounts = container(template, task_definition("extractor"))["MountPoints"]

    assert {"Name": "tmp"} in definition["Volumes"]
    assert {"SourceVolume": "tmp", "ContainerPath": "/tmp"} in mounts  # noqa: S108 (inside the container)
    assert 'VOLUME ["/run/mesh", "/tmp"]' in (ROOT / "Dockerfile").read_text()


@pytest.mark.parametrize("service", [*MESH, "keycloak"])
def test_no_environment_value_is_a_secret(template: Template, service: str) -> None:
    env = environment(container(template, task_definition(service)))

    assert not [name for name in env if SECRETISH_NAME.search(name)]
    assert not [v for v in env.values() if isinstance(v, str) and "-----BEGIN" in v]


def test_every_injected_secret_is_a_secrets_manager_reference(
    template: Template,
) -> None:
    secrets = {
        name for name, _ in resources_of_type(template, "AWS::SecretsManager::Secret")
    }

    for service in [*MESH, "keycloak"]:
        definition = container(template, task_definition(service))
        for item in definition["Secrets"]:
            assert set(item) == {"Name", "ValueFrom"}
            assert any(names_resource(item["ValueFrom"], s) for s in secrets)


def test_template_holds_no_secret_value() -> None:
    text = TEMPLATE_FILE.read_text()

    assert "-----BEGIN" not in text
    assert not re.search(r"(?i)(password|secret)\s*:\s*['\"]?[A-Za-z0-9]{12,}", text)


# ------------------------------------------------------------- load balancer


def test_http_listener_only_redirects_to_https(template: Template) -> None:
    listener = template["Resources"]["HttpListener"]["Properties"]
    (action,) = listener["DefaultActions"]

    assert listener["Protocol"] == "HTTP"
    assert action["Type"] == "redirect"
    assert action["RedirectConfig"]["Protocol"] == "HTTPS"
    assert action["RedirectConfig"]["Port"] == "443"
    rules = resources_of_type(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert all(
        rule["Properties"]["ListenerArn"] != ref("HttpListener") for _, rule in rules
    )


def test_https_listener_uses_tls13_policy_and_drops_invalid_headers(
    template: Template,
) -> None:
    listener = template["Resources"]["HttpsListener"]["Properties"]
    balancer = template["Resources"]["LoadBalancer"]["Properties"]
    attributes = {
        item["Key"]: item["Value"]
        for item in balancer["LoadBalancerAttributes"]
        if isinstance(item, dict) and "Key" in item
    }

    assert listener["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


@pytest.mark.parametrize(
    ("target_group", "port", "path"),
    [
        ("OrchestratorTargetGroup", 8001, "/health"),
        ("KeycloakTargetGroup", 8443, "/realms/a2a-mesh"),
    ],
)
def test_target_group_speaks_https_and_checks_health_over_https(
    template: Template, target_group: str, port: int, path: str
) -> None:
    properties = template["Resources"][target_group]["Properties"]

    assert properties["Protocol"] == "HTTPS"
    assert properties["TargetType"] == "ip"
    assert properties["Port"] == port
    assert properties["HealthCheckProtocol"] == "HTTPS"
    assert properties["HealthCheckPath"] == path


def test_only_realm_paths_go_to_keycloak(template: Template) -> None:
    rule = template["Resources"]["KeycloakListenerRule"]["Properties"]
    (condition,) = rule["Conditions"]

    # The mesh realm's token, keys and discovery; no other realm, no console.
    assert condition["PathPatternConfig"]["Values"] == [
        "/realms/a2a-mesh/protocol/openid-connect/token",
        "/realms/a2a-mesh/protocol/openid-connect/certs",
        "/realms/a2a-mesh/.well-known/*",
    ]
    assert rule["Actions"][0]["TargetGroupArn"] == ref("KeycloakTargetGroup")


# ------------------------------------------------------------------ data


def test_documents_bucket_denies_requests_without_tls(template: Template) -> None:
    policy = template["Resources"]["DocumentsBucketPolicy"]["Properties"]
    statements = policy["PolicyDocument"]["Statement"]

    assert {
        "Sid": "DenyWithoutTls",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [
            get_att("DocumentsBucket", "Arn"),
            {"Fn::Sub": "${DocumentsBucket.Arn}/*"},
        ],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    } in statements


@pytest.mark.parametrize("bucket", ["DocumentsBucket", "AccessLogsBucket"])
def test_bucket_is_private_versioned_and_owner_enforced(
    template: Template, bucket: str
) -> None:
    properties = template["Resources"][bucket]["Properties"]

    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}
    ]


def test_every_database_parameter_group_forces_ssl(template: Template) -> None:
    groups = list(resources_of_type(template, "AWS::RDS::DBParameterGroup"))

    assert groups
    for _, group in groups:
        assert group["Properties"]["Parameters"]["rds.force_ssl"] == "1"


@pytest.mark.parametrize("database", ["DocumentsDatabase", "KeycloakDatabase"])
def test_database_is_private_protected_and_backed_up(
    template: Template, database: str
) -> None:
    properties = template["Resources"][database]["Properties"]

    assert properties["PubliclyAccessible"] is False
    assert properties["DeletionProtection"] is True
    assert properties["BackupRetentionPeriod"] >= 7
    assert properties["DBParameterGroupName"] == ref("DatabaseParameterGroup")


# ------------------------------------------------------------------ network


def _group_name(value: Any) -> str:
    assert isinstance(value, dict) and "Ref" in value, value
    name: str = value["Ref"]
    return name.removesuffix("SecurityGroup")


def ingress_hops(template: Template) -> set[tuple[str, str, int]]:
    """(source, destination, port) of every ingress rule, inline or separate."""
    hops: set[tuple[str, str, int]] = set()
    for name, group in resources_of_type(template, "AWS::EC2::SecurityGroup"):
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule["FromPort"] == rule["ToPort"]
            hops.add(
                (rule["CidrIp"], name.removesuffix("SecurityGroup"), rule["ToPort"])
            )
    for _, rule in resources_of_type(template, "AWS::EC2::SecurityGroupIngress"):
        properties = rule["Properties"]
        assert properties["FromPort"] == properties["ToPort"]
        source = _group_name(properties["SourceSecurityGroupId"])
        hops.add((source, _group_name(properties["GroupId"]), properties["ToPort"]))
    return hops


def expected_hops() -> set[tuple[str, str, int]]:
    hops = {
        (INTERNET, "Alb", 443),
        (INTERNET, "Alb", 80),
        ("Alb", "Orchestrator", 8001),
        ("Alb", "Keycloak", 8443),
        ("Keycloak", "KeycloakDatabase", 5432),
    }
    for agent in MESH[1:]:
        hops.add(("Orchestrator", agent.capitalize(), PORTS[agent]))
    for service in MESH:
        hops.add((service.capitalize(), "Keycloak", 8443))
        hops.add((service.capitalize(), "DocumentsDatabase", 5432))
    return hops


def test_ingress_rules_are_exactly_the_hops_of_the_design(template: Template) -> None:
    assert ingress_hops(template) == expected_hops()


def test_every_ingress_rule_between_groups_has_its_egress_twin(
    template: Template,
) -> None:
    egress = {
        (
            _group_name(rule["Properties"]["GroupId"]),
            _group_name(rule["Properties"]["DestinationSecurityGroupId"]),
            rule["Properties"]["ToPort"],
        )
        for _, rule in resources_of_type(template, "AWS::EC2::SecurityGroupEgress")
    }
    between_groups = {hop for hop in expected_hops() if hop[0] != INTERNET}

    assert egress == between_groups


def test_no_group_but_the_albs_admits_the_internet(template: Template) -> None:
    for name, group in resources_of_type(template, "AWS::EC2::SecurityGroup"):
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert name == "AlbSecurityGroup", rule


@pytest.mark.parametrize("service", [*MESH, "keycloak"])
def test_tasks_run_in_private_subnets_without_public_addresses(
    template: Template, service: str
) -> None:
    properties = template["Resources"][f"{service.capitalize()}Service"]["Properties"]
    network = properties["NetworkConfiguration"]["AwsvpcConfiguration"]
    discovery = properties["ServiceRegistries"][0]["RegistryArn"]
    name = template["Resources"][f"{service.capitalize()}Discovery"]["Properties"]

    assert network["AssignPublicIp"] == "DISABLED"
    assert network["Subnets"] == [ref("PrivateSubnetA"), ref("PrivateSubnetB")]
    assert discovery == get_att(f"{service.capitalize()}Discovery", "Arn")
    assert name["Name"] == service
    assert name["NamespaceId"] == ref("Namespace")


# ---------------------------------------------------------------- IAM


def _s3_statements(template: Template, role: str) -> list[dict[str, Any]]:
    statements = policy_statements(template["Resources"][role])
    return [s for s in statements if any(a.startswith("s3:") for a in actions(s))]


def test_orchestrator_may_only_store_and_discard_uploads(template: Template) -> None:
    statements = _s3_statements(template, "OrchestratorTaskRole")

    assert [(actions(s), s["Resource"]) for s in statements] == [
        (
            {"s3:PutObject", "s3:DeleteObject"},
            {"Fn::Sub": "${DocumentsBucket.Arn}/uploads/*"},
        ),
        ({"s3:ListBucket"}, get_att("DocumentsBucket", "Arn")),
    ]


def test_extractor_may_only_read_document_prefixes(template: Template) -> None:
    statements = _s3_statements(template, "ExtractorTaskRole")

    assert [(actions(s), s["Resource"]) for s in statements] == [
        (
            {"s3:GetObject"},
            [
                {"Fn::Sub": "${DocumentsBucket.Arn}/uploads/*"},
                {"Fn::Sub": "${DocumentsBucket.Arn}/${IncomingPrefix}*"},
            ],
        ),
        ({"s3:ListBucket"}, get_att("DocumentsBucket", "Arn")),
    ]


@pytest.mark.parametrize("service", ["validator", "archivist"])
def test_services_without_storage_settings_get_no_s3(
    template: Template, service: str
) -> None:
    assert "s3_bucket" not in SETTINGS[service].model_fields
    assert _s3_statements(template, f"{service.capitalize()}TaskRole") == []


@pytest.mark.parametrize("service", MESH)
def test_task_role_reads_only_its_client_secret_and_the_db_password(
    template: Template, service: str
) -> None:
    statements = policy_statements(
        template["Resources"][f"{service.capitalize()}TaskRole"]
    )
    readable = [
        resource
        for s in statements
        if "secretsmanager:GetSecretValue" in actions(s)
        for resource in as_list(s["Resource"])
    ]

    assert readable == [
        ref(secret_logical_id(service)),
        ref("DatabasePasswordSecret"),
    ]
    assert template["Resources"][secret_logical_id(service)]["Properties"]["Name"] == (
        f"a2a-mesh/clients/{service}"
    )


@pytest.mark.parametrize("service", [*MESH, "keycloak"])
def test_execution_role_reads_only_the_secrets_its_task_injects(
    template: Template, service: str
) -> None:
    role = template["Resources"][f"{service.capitalize()}ExecutionRole"]
    injected = injected_secrets(container(template, task_definition(service)))
    readable = {
        json.dumps(resource, sort_keys=True)
        for s in policy_statements(role)
        if "secretsmanager:GetSecretValue" in actions(s)
        for resource in as_list(s["Resource"])
    }
    secrets = {
        json.dumps(ref(name), sort_keys=True)
        for name, _ in resources_of_type(template, "AWS::SecretsManager::Secret")
        if any(names_resource(value, name) for value in injected.values())
    }

    assert readable == secrets


# -------------------------------------------------------------- linters


def test_loader_refuses_yaml_aliases_as_cloudformation_does(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("A: &shared 1\nB: *shared\n")

    with pytest.raises(yaml.MarkedYAMLError, match="alias"):
        load_template(path)


def test_cfn_lint_finds_nothing() -> None:
    matches = lint_file(TEMPLATE_FILE)

    assert [str(match) for match in matches] == []


def checkov_skips(template: Template) -> dict[tuple[str, str], str]:
    """(resource, check id) -> reason of every skip written in the template."""
    skips: dict[tuple[str, str], str] = {}
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            skips[(name, skip["id"])] = skip["comment"]
    return skips


def _checkov() -> str | None:
    # checkov pins boto3 and packaging below what the project uses, so it
    # may live in its own environment, named by CHECKOV.
    named = os.environ.get("CHECKOV")
    if named:
        assert Path(named).is_file(), f"CHECKOV names no file: {named}"
        return named
    candidates = [
        ROOT / ".venv-iac" / "bin" / "checkov",  # what the README's command makes
        Path(sys.executable).with_name("checkov"),
    ]
    on_path = shutil.which("checkov")
    found = [str(c) for c in candidates if c.is_file()]
    return next(iter(found), on_path)


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    checkov = _checkov()
    if checkov is None:
        pytest.skip("checkov is not installed (set CHECKOV to its executable)")
    offline = {
        "BC_SKIP_MAPPING": "TRUE",
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
    }
    run = subprocess.run(
        [
            checkov,
            "-f",
            str(TEMPLATE_FILE),
            "--framework",
            "cloudformation",
            "-o",
            "json",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | offline,
        check=False,
    )
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def test_checkov_fails_nothing(checkov_report: dict[str, Any]) -> None:
    failed = [
        (check["check_id"], check["resource"])
        for check in checkov_report["results"]["failed_checks"]
    ]

    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0


def test_checkov_skips_are_exactly_those_written_in_the_template(
    template: Template, checkov_report: dict[str, Any]
) -> None:
    assert checkov_report["summary"]["skipped"] == len(checkov_skips(template))


def test_every_checkov_skip_has_a_reason_in_the_deploy_readme(
    template: Template,
) -> None:
    readme = (ROOT / "deploy" / "ecs" / "README.md").read_text()

    for (resource, check_id), reason in checkov_skips(template).items():
        assert reason.strip()
        assert f"`{check_id}`" in readme and f"`{resource}`" in readme
