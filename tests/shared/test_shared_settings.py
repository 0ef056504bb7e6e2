"""Settings: derived endpoints and ids, the environment, and missing values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import DatabaseSettings, ServiceSettings, StorageSettings

REALM = "https://idp.test/realms/a2a-mesh"
CA_FILE = Path("/etc/mesh/rds-ca.pem")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MESH_"):
            monkeypatch.delenv(name)


def test_settings_derive_endpoints_from_issuer() -> None:
    settings = ServiceSettings(
        service_name="extractor", issuer=f"{REALM}/", db_ca_file=CA_FILE
    )

    assert settings.realm_url == REALM
    assert settings.jwks_endpoint == f"{REALM}/protocol/openid-connect/certs"
    assert settings.token_endpoint == f"{REALM}/protocol/openid-connect/token"


def test_settings_reach_the_identity_provider_apart_from_the_public_issuer() -> None:
    inside = "https://keycloak.a2a-mesh.local:8443/realms/a2a-mesh/protocol"
    settings = ServiceSettings(
        service_name="extractor",
        issuer="https://mesh.example.com/realms/a2a-mesh",
        jwks_url=f"{inside}/openid-connect/certs",
        token_url=f"{inside}/openid-connect/token",
        db_ca_file=CA_FILE,
    )

    assert settings.realm_url == "https://mesh.example.com/realms/a2a-mesh"
    assert settings.jwks_endpoint == f"{inside}/openid-connect/certs"
    assert settings.token_endpoint == f"{inside}/openid-connect/token"
    assert settings.issuer_token_endpoint == (
        "https://mesh.example.com/realms/a2a-mesh/protocol/openid-connect/token"
    )


def test_settings_derive_client_audience_and_secret_from_service_name() -> None:
    settings = ServiceSettings(
        service_name="extractor", issuer=REALM, db_ca_file=CA_FILE
    )

    assert settings.own_client_id == "extractor"
    assert settings.accepted_audience == "extractor"
    assert settings.own_secret_id == "a2a-mesh/clients/extractor"


def test_settings_audience_and_secret_follow_an_explicit_client_id() -> None:
    settings = ServiceSettings(
        service_name="extractor",
        issuer=REALM,
        client_id="extractor-prod",
        db_ca_file=CA_FILE,
    )

    assert settings.accepted_audience == "extractor-prod"
    assert settings.own_secret_id == "a2a-mesh/clients/extractor-prod"


def test_settings_explicit_values_override_derived_ones() -> None:
    settings = ServiceSettings(
        service_name="extractor",
        issuer=REALM,
        jwks_url="https://keys.test/jwks.json",
        audience="mesh",
        client_secret_id="prod/extractor",
        db_ca_file=CA_FILE,
    )

    assert settings.jwks_endpoint == "https://keys.test/jwks.json"
    assert settings.accepted_audience == "mesh"
    assert settings.own_secret_id == "prod/extractor"


def test_settings_are_read_from_mesh_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESH_SERVICE_NAME", "validator")
    monkeypatch.setenv("MESH_ISSUER", REALM)
    monkeypatch.setenv("MESH_PORT", "8003")
    monkeypatch.setenv("MESH_ALLOWED_ALGORITHMS", '["RS256"]')
    monkeypatch.setenv("MESH_DB_CA_FILE", str(CA_FILE))

    settings = ServiceSettings()

    assert settings.service_name == "validator"
    assert settings.port == 8003
    assert settings.allowed_algorithms == ("RS256",)


@pytest.mark.parametrize(
    "value",
    [
        '["10.0.0.0/24", "10.0.1.0/24"]',
        "10.0.0.0/24,10.0.1.0/24",
        " 10.0.0.0/24 , 10.0.1.0/24 ",
    ],
)
def test_list_settings_read_json_or_commas(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_TRUSTED_PROXIES", value)

    settings = ServiceSettings(
        service_name="orchestrator", issuer=REALM, db_ca_file=CA_FILE
    )

    assert settings.trusted_proxies == ("10.0.0.0/24", "10.0.1.0/24")


def test_settings_default_algorithms_are_asymmetric_only() -> None:
    settings = ServiceSettings(
        service_name="extractor", issuer=REALM, db_ca_file=CA_FILE
    )

    assert settings.allowed_algorithms == ("RS256", "PS256", "ES256")


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({"MESH_ISSUER": REALM, "MESH_DB_CA_FILE": "ca.pem"}, "service_name"),
        ({"MESH_SERVICE_NAME": "x", "MESH_DB_CA_FILE": "ca.pem"}, "issuer"),
        ({"MESH_SERVICE_NAME": "x", "MESH_ISSUER": REALM}, "db_ca_file"),
    ],
)
def test_settings_missing_required_field_raises_validation_error(
    monkeypatch: pytest.MonkeyPatch, present: dict[str, str], missing: str
) -> None:
    for name, value in present.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError) as caught:
        ServiceSettings()

    [error] = caught.value.errors()
    assert error["type"] == "missing"
    assert error["loc"] == (missing,)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MESH_PORT", "70000"),
        ("MESH_PORT", "x"),
        ("MESH_DB_PORT", "0"),
        ("MESH_SHUTDOWN_GRACE_SECONDS", "60"),
        ("MESH_ACCEPT_BEARER_TOKENS", "maybe"),
    ],
)
def test_settings_out_of_range_value_raises_validation_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("MESH_SERVICE_NAME", "extractor")
    monkeypatch.setenv("MESH_ISSUER", REALM)
    monkeypatch.setenv("MESH_DB_CA_FILE", str(CA_FILE))
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError):
        ServiceSettings()


def test_settings_are_frozen() -> None:
    settings = ServiceSettings(
        service_name="extractor", issuer=REALM, db_ca_file=CA_FILE
    )

    with pytest.raises(ValidationError):
        settings.issuer = "https://evil.test"


def test_database_settings_without_ca_file_raises_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        DatabaseSettings()

    [error] = caught.value.errors()
    assert error["loc"] == ("db_ca_file",)


def test_database_settings_read_ca_file_from_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MESH_DB_CA_FILE", str(tmp_path / "ca.pem"))

    assert DatabaseSettings().db_ca_file == tmp_path / "ca.pem"


def test_storage_settings_request_aes256_by_default() -> None:
    settings = StorageSettings()

    assert settings.s3_sse == "AES256"
    assert settings.s3_kms_key_id is None


@pytest.mark.parametrize("algorithm", ["HS256", "none", "RSA-OAEP"])
def test_settings_refuse_symmetric_or_unknown_algorithms(algorithm: str) -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(
            service_name="extractor",
            issuer="https://idp.invalid/realms/a2a-mesh",
            allowed_algorithms=("RS256", algorithm),
            db_ca_file=CA_FILE,
        )


def test_settings_accept_only_dpop_bound_tokens_by_default() -> None:
    settings = ServiceSettings(
        service_name="extractor", issuer=REALM, db_ca_file=CA_FILE
    )

    assert settings.accept_bearer_tokens is False


@pytest.mark.parametrize(
    ("values", "base_url"),
    [
        ({}, "http://127.0.0.1:8000"),
        (
            {"tls_certfile": "cert.pem", "tls_keyfile": "key.pem", "port": 8443},
            "https://127.0.0.1:8443",
        ),
        (
            {"public_url": "https://mesh.example/extractor/"},
            "https://mesh.example/extractor",
        ),
    ],
    ids=["listen-address", "listen-address-tls", "configured"],
)
def test_settings_public_base_url_is_configured_or_where_the_service_listens(
    values: dict[str, object], base_url: str
) -> None:
    settings = ServiceSettings.model_validate(
        {"service_name": "extractor", "issuer": REALM, "db_ca_file": CA_FILE, **values}
    )

    assert settings.public_base_url == base_url


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"tls_certfile": "cert.pem"}, "MESH_TLS_KEYFILE"),
        ({"tls_client_certfile": "client.pem"}, "MESH_TLS_CLIENT_KEYFILE"),
        ({"tls_client_ca_file": "ca.pem"}, "needs HTTPS"),
    ],
    ids=["server-cert-without-key", "client-cert-without-key", "mtls-without-https"],
)
def test_settings_refuse_half_a_tls_configuration(
    values: dict[str, str], problem: str
) -> None:
    # Half a pair would silently mean plain HTTP or no client certificate.
    raw = {"service_name": "extractor", "issuer": REALM, "db_ca_file": CA_FILE}
    with pytest.raises(ValidationError, match=problem):
        ServiceSettings.model_validate(raw | values)
