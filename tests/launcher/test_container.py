"""The container entry point's checks, before anything is started."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from certs.authority import ensure_dev_certs
from services.archivist.settings import ArchivistSettings
from services.extractor.settings import ExtractorSettings
from services.launcher.container import (
    DEFAULT_PORTS,
    EntrypointError,
    health_url,
    serve,
    write_pem_files,
)
from services.orchestrator.settings import OrchestratorSettings
from services.validator.settings import ValidatorSettings


def test_default_ports_are_the_settings_defaults() -> None:
    classes: dict[str, type[BaseSettings]] = {
        "orchestrator": OrchestratorSettings,
        "extractor": ExtractorSettings,
        "validator": ValidatorSettings,
        "archivist": ArchivistSettings,
    }

    assert {
        name: str(settings.model_fields["port"].default)
        for name, settings in classes.items()
    } == DEFAULT_PORTS


def test_health_finds_the_port_from_the_service_name() -> None:
    url = health_url({"MESH_SERVICE_NAME": "validator"})

    assert url == "http://127.0.0.1:8003/health"


def test_health_over_https_when_the_certificate_comes_as_pem() -> None:
    url = health_url({"MESH_PORT": "9100", "MESH_TLS_CERT_PEM": "..."})

    assert url == "https://127.0.0.1:9100/health"


def test_serve_without_a_name_says_how_to_give_one() -> None:
    with pytest.raises(EntrypointError, match="set MESH_SERVICE_NAME"):
        serve("")


@pytest.mark.parametrize(
    ("variable", "kind"),
    [("MESH_CA_PEM", "certificates"), ("MESH_TLS_KEY_PEM", "a private key")],
)
def test_text_that_is_not_pem_is_refused_by_its_variable(
    variable: str, kind: str, tmp_path: Path
) -> None:
    environ = {variable: "garbage", "MESH_RUNTIME_DIR": str(tmp_path / "run")}

    with pytest.raises(EntrypointError) as refused:
        write_pem_files(environ)

    assert str(refused.value) == f"{variable} does not hold {kind} in PEM"
    assert not (tmp_path / "run").exists()


def test_a_key_where_a_certificate_belongs_is_refused(tmp_path: Path) -> None:
    made = ensure_dev_certs(tmp_path / "certs", ["validator"])
    environ = {
        "MESH_TLS_CERT_PEM": made.server("validator").key_path.read_text(),
        "MESH_RUNTIME_DIR": str(tmp_path / "run"),
    }

    with pytest.raises(EntrypointError, match="MESH_TLS_CERT_PEM"):
        write_pem_files(environ)
