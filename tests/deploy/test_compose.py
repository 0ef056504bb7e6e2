"""docker-compose.yml checked against the code it runs.

This machine has no Docker engine, so the file is read, not run: every
setting a service is given is one its settings class knows and accepts, the
files it names are ones `compose-init` writes into the folder it mounts,
ports and URLs agree, health checks gate every dependency, and no secret is
written in the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.archivist.settings import ArchivistSettings
from services.extractor.settings import ExtractorSettings
from services.identity.realm import load_realm
from services.launcher import compose
from services.launcher.aws import LOCAL_CREDENTIALS
from services.launcher.cli import build_parser as cli_parser
from services.launcher.container import ENTRYPOINT_VARIABLES
from services.orchestrator.settings import OrchestratorSettings
from services.validator.settings import ValidatorSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROXY_CONF = ROOT / "deploy" / "compose" / "proxy.conf"
MOUNT = PurePosixPath("/run/mesh")

SETTINGS: dict[str, type[BaseSettings]] = {
    "orchestrator": OrchestratorSettings,
    "extractor": ExtractorSettings,
    "validator": ValidatorSettings,
    "archivist": ArchivistSettings,
}
AGENTS = ("extractor", "validator", "archivist")
# Standard names boto3 reads; the local endpoint's values are no secret.
AWS_VARIABLES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_EC2_METADATA_DISABLED",
}
LONG_RUNNING = ("postgres", "keycloak", "aws", *SETTINGS, "proxy")
ONE_SHOT = ("init", "demo")


def load() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load()["services"]
    return found


def environment(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in services()[name].get("environment", {}).items()}


def env_name(field: str) -> str:
    return f"MESH_{field.upper()}"


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `docker compose run --rm init` puts in the secrets volume."""
    out = tmp_path_factory.mktemp("mesh-secrets")
    compose.init(out)
    return out


def test_the_file_has_the_whole_mesh() -> None:
    assert set(services()) == {*LONG_RUNNING, *ONE_SHOT}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_service_runs_its_own_module(name: str) -> None:
    assert services()[name]["command"] == ["serve", name]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_variable_set_is_a_setting_the_service_knows(name: str) -> None:
    known = {env_name(field) for field in SETTINGS[name].model_fields}

    unknown = set(environment(name)) - known - ENTRYPOINT_VARIABLES - AWS_VARIABLES

    assert unknown == set()


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_required_setting_is_set(name: str) -> None:
    required = {
        env_name(field)
        for field, info in SETTINGS[name].model_fields.items()
        if info.is_required()
    }

    assert required
    assert required <= set(environment(name))


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_settings_accept_the_values(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Validation as at start-up: types, TLS pairs, proxy networks.
    for variable in [v for v in os.environ if v.startswith("MESH_")]:
        monkeypatch.delenv(variable)
    for variable, value in environment(name).items():
        monkeypatch.setenv(variable, value)

    settings: Any = SETTINGS[name]()

    assert settings.service_name == name
    assert settings.tls_certfile and settings.tls_client_certfile
    assert settings.realm_url == "https://localhost:8443/realms/a2a-mesh"


@pytest.mark.parametrize("name", AGENTS)
def test_agents_require_mutual_tls_and_the_orchestrator_does_not(name: str) -> None:
    assert environment(name)["MESH_TLS_CLIENT_CA_FILE"] == str(MOUNT / "ca.pem")
    assert "MESH_TLS_CLIENT_CA_FILE" not in environment("orchestrator")


@pytest.mark.parametrize("name", AGENTS)
def test_the_orchestrator_calls_each_agent_where_it_listens(name: str) -> None:
    port = environment(name)["MESH_PORT"]
    url = f"https://{name}:{port}"

    assert environment("orchestrator")[f"MESH_{name.upper()}_URL"] == url
    # DPoP proofs name the URL the caller used, which the agent checks.
    assert environment(name)["MESH_PUBLIC_URL"] == url


def test_the_proxy_is_the_public_address_and_the_only_trusted_one() -> None:
    proxy = services()["proxy"]
    address = proxy["networks"]["mesh"]["ipv4_address"]
    published = proxy["ports"]

    assert published == ["127.0.0.1:8443:8443"]
    assert environment("orchestrator")["MESH_TRUSTED_PROXIES"] == f"{address}/32"
    assert environment("orchestrator")["MESH_PUBLIC_URL"] == "https://localhost:8443"
    assert environment("keycloak")["KC_PROXY_TRUSTED_ADDRESSES"] == address
    assert environment("keycloak")["KC_HOSTNAME"] == "https://localhost:8443"


def test_the_proxy_forwards_to_the_ports_the_services_listen_on() -> None:
    conf = PROXY_CONF.read_text()
    upstreams = set(re.findall(r"proxy_pass\s+https://([a-z]+):(\d+);", conf))

    assert upstreams == {
        ("orchestrator", environment("orchestrator")["MESH_PORT"]),
        ("keycloak", environment("keycloak")["KC_HTTPS_PORT"]),
    }
    assert "listen 8443 ssl;" in conf
    # A caller's own copy of the ALB's certificate header is never passed on.
    assert 'proxy_set_header X-Amzn-Mtls-Clientcert-Leaf "";' in conf
    assert "proxy_ssl_verify              on;" in conf


def test_every_service_reaches_keycloak_directly_and_names_the_public_issuer() -> None:
    keycloak_port = environment("keycloak")["KC_HTTPS_PORT"]
    inside = f"https://keycloak:{keycloak_port}/realms/a2a-mesh/protocol/openid-connect"

    for name in SETTINGS:
        env = environment(name)
        assert env["MESH_ISSUER"] == "https://localhost:8443/realms/a2a-mesh"
        assert env["MESH_JWKS_URL"] == f"{inside}/certs"
        assert env["MESH_TOKEN_URL"] == f"{inside}/token"


def test_long_running_services_have_health_checks() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_checks = "HEALTHCHECK" in dockerfile and '"a2a-mesh", "health"' in dockerfile

    for name in LONG_RUNNING:
        service = services()[name]
        check = service.get("healthcheck")
        if check is None:
            assert service.get("image") == "a2a-mesh:local" and image_checks, name
        else:
            assert not check.get("disable", False), name
            assert check["test"], name


def dependencies() -> Iterator[tuple[str, str, str]]:
    for name, service in services().items():
        for target, rule in service.get("depends_on", {}).items():
            yield name, target, rule["condition"]


def test_every_dependency_waits_for_health_or_completion() -> None:
    for name, target, condition in dependencies():
        expected = (
            "service_completed_successfully"
            if target in ONE_SHOT
            else "service_healthy"
        )
        assert condition == expected, (name, target)


def test_every_mesh_service_waits_for_its_stores_and_the_identity_provider() -> None:
    waits = {(name, target) for name, target, _ in dependencies()}

    for name in SETTINGS:
        for store in ("postgres", "keycloak", "aws"):
            assert (name, store) in waits
    for agent in AGENTS:
        assert ("orchestrator", agent) in waits
    assert ("proxy", "orchestrator") in waits


def secrets_mount(service: Mapping[str, Any]) -> dict[str, Any]:
    (mount,) = [
        v
        for v in service.get("volumes", [])
        if isinstance(v, dict) and v.get("source") == "mesh-secrets"
    ]
    return mount


def mounted_folder(name: str) -> str:
    mount = secrets_mount(services()[name])
    assert mount["target"] == str(MOUNT)
    assert mount["read_only"] is True
    folder: str = mount["volume"]["subpath"]
    return folder


def test_each_container_mounts_its_own_folder_of_the_secrets_volume() -> None:
    mounting = [n for n in services() if n != "init"]

    folders = {name: mounted_folder(name) for name in mounting}

    assert folders == {
        **{name: name for name in mounting if name != "demo"},
        "demo": "client",
    }


def files_named(name: str) -> set[PurePosixPath]:
    service = services()[name]
    text = " ".join(
        [
            *environment(name).values(),
            *map(str, service.get("command", [])),
            *map(str, service.get("entrypoint", [])),
        ]
    )
    if name == "proxy":
        text += PROXY_CONF.read_text()
    return {
        PurePosixPath(found) for found in re.findall(r"/run/mesh/[A-Za-z0-9._-]+", text)
    }


@pytest.mark.parametrize("name", [*LONG_RUNNING, "demo"])
def test_every_file_a_container_names_is_in_its_folder(name: str, volume: Path) -> None:
    folder = volume / mounted_folder(name)
    named = files_named(name)

    if name != "aws":
        assert named, name
    for path in named:
        assert (folder / path.relative_to(MOUNT)).is_file(), (name, path)


def test_bind_mounts_name_files_of_the_repository() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./"):
                source = volume.split(":")[0]
                assert (ROOT / source).exists(), (name, source)


def test_keycloak_gets_every_placeholder_of_the_realm_file(volume: Path) -> None:
    env_file = (volume / "keycloak" / "keycloak.env").read_text()
    defined = {line.split("=", 1)[0] for line in env_file.splitlines() if line}
    placeholders = {c.secret_ref for c in load_realm().clients.values() if c.secret_ref}

    assert placeholders
    assert placeholders | {"KC_DB_PASSWORD", "KC_BOOTSTRAP_ADMIN_PASSWORD"} == defined


SECRET_NAME = re.compile(r"SECRET|PASSWORD|PRIVATE|TOKEN$|_KEY$|CREDENTIAL")


def test_no_secret_value_is_written_in_the_file() -> None:
    for name in services():
        for variable, value in environment(name).items():
            if not SECRET_NAME.search(variable):
                continue
            if variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert value in LOCAL_CREDENTIALS, (name, variable)
            else:
                assert value.startswith(str(MOUNT)), (name, variable)
    # No interpolation either: a `${VAR:-value}` default would be a literal.
    lines = COMPOSE_FILE.read_text().splitlines()
    assert not [line for line in lines if "${" in line.split("#")[0]]


def test_the_secrets_volume_holds_what_the_file_does_not(volume: Path) -> None:
    text = COMPOSE_FILE.read_text()
    generated = (volume / "postgres" / "db-password").read_text()

    assert len(generated) >= 32
    assert generated not in text


def test_postgres_takes_tls_connections_only() -> None:
    rules = [
        line.split()
        for line in (ROOT / "deploy/compose/postgres/pg_hba.conf")
        .read_text()
        .splitlines()
        if line.strip() and not line.startswith("#")
    ]
    command = " ".join(services()["postgres"]["command"])

    assert {rule[0] for rule in rules} == {"hostssl", "local"}
    assert all(rule[-1] == "scram-sha-256" for rule in rules if rule[0] == "hostssl")
    assert "ssl=on" in command
    assert "hba_file=/etc/postgresql/pg_hba.conf" in command


def test_keycloak_and_its_database_speak_tls_with_verification() -> None:
    env = environment("keycloak")

    assert "sslmode=verify-full" in env["KC_DB_URL"]
    assert env["KC_HTTP_ENABLED"] == "false"
    assert env["KC_HTTPS_CERTIFICATE_FILE"] == str(MOUNT / "server.pem")
    assert services()["keycloak"]["image"].startswith("quay.io/keycloak/keycloak:")


def test_extractor_has_a_writable_tmp_for_its_worker_processes() -> None:
    # multiprocessing's forkserver listens on a Unix socket in /tmp.
    extractor = services()["extractor"]

    assert extractor["read_only"] is True
    assert "/tmp" in extractor["tmpfs"]  # noqa: S108 (inside the container)


def test_the_image_runs_as_the_user_init_gives_the_files_to() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert f"USER {compose.MESH_UID}:{compose.MESH_UID}" in dockerfile
    assert dockerfile.count("FROM ") == 2  # build, then run
    assert 'ENTRYPOINT ["a2a-mesh"]' in dockerfile


def test_nothing_generated_enters_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()

    # Everything is excluded first, then only the sources are let back in.
    assert ignored[ignored.index("*")] == "*"
    assert {"**/*.pem", "**/*.key"} <= set(ignored)
    assert not any(line.startswith("!") and "out" in line for line in ignored)


def test_up_wait_can_succeed_with_the_one_shot_init() -> None:
    # `up --wait` counts an exited container as a failure unless a running
    # service waits for it to complete; `demo` is in a profile, not in `up`.
    adopters = [
        name
        for name, target, condition in dependencies()
        if target == "init" and condition == "service_completed_successfully"
    ]

    assert set(adopters) & set(LONG_RUNNING)
    assert services()["demo"]["profiles"] == ["tools"]
    assert "profiles" not in services()["init"]


def test_the_demo_takes_the_paths_appended_to_its_command() -> None:
    # `docker compose run --rm demo /docs` appends /docs to the entry point.
    entrypoint = services()["demo"]["entrypoint"]

    args = cli_parser().parse_args([*entrypoint[1:], "/docs", "/more"])

    assert entrypoint[0] == "a2a-mesh"
    assert args.command == "submit"
    assert args.url == "https://proxy:8443"
    assert [str(p) for p in args.paths] == ["/docs", "/more"]
