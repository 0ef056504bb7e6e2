"""The two images' build files and the Keycloak start script, run for real
with a stand-in for kc.sh (there is no Keycloak on this machine)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "deploy" / "keycloak" / "start.sh"


def pem(label: str, body: str) -> str:
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def fake_keycloak(home: Path) -> None:
    """A kc.sh that reports its arguments and TLS environment, then exits."""
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "kc.sh"
    script.write_text(
        "#!/bin/bash\n"
        'echo "args=$*"\n'
        'echo "cert=${KC_HTTPS_CERTIFICATE_FILE:-}"\n'
        'echo "key=${KC_HTTPS_CERTIFICATE_KEY_FILE:-}"\n'
        'echo "pem_left=${KC_TLS_KEY_PEM:-}${KC_TLS_CERT_PEM:-}"\n'
    )
    script.chmod(0o755)


def test_keycloak_start_writes_the_injected_pem_to_private_files(
    tmp_path: Path,
) -> None:
    fake_keycloak(tmp_path / "kc")
    runtime = tmp_path / "run"
    env = {
        "PATH": os.environ["PATH"],
        "KC_HOME": str(tmp_path / "kc"),
        "MESH_RUNTIME_DIR": str(runtime),
        "KC_TLS_CERT_PEM": pem("CERTIFICATE", "AAAA"),
        "KC_TLS_KEY_PEM": pem("PRIVATE KEY", "BBBB"),
    }

    started = subprocess.run(
        ["/bin/bash", str(START)], env=env, capture_output=True, text=True, check=True
    )

    report = dict(line.split("=", 1) for line in started.stdout.splitlines())
    assert report["args"] == "start --optimized --import-realm"
    assert report["cert"] == str(runtime / "server.pem")
    assert report["key"] == str(runtime / "server.key")
    # Keycloak itself never sees the key as an environment variable.
    assert report["pem_left"] == ""
    key = runtime / "server.key"
    assert key.read_text() == env["KC_TLS_KEY_PEM"] + "\n"
    assert key.stat().st_mode & 0o777 == 0o600


def test_keycloak_start_leaves_mounted_files_alone(tmp_path: Path) -> None:
    fake_keycloak(tmp_path / "kc")
    env = {
        "PATH": os.environ["PATH"],
        "KC_HOME": str(tmp_path / "kc"),
        "MESH_RUNTIME_DIR": str(tmp_path / "run"),
        "KC_HTTPS_CERTIFICATE_FILE": "/run/mesh/server.pem",
    }

    started = subprocess.run(
        ["/bin/bash", str(START)], env=env, capture_output=True, text=True, check=True
    )

    assert "cert=/run/mesh/server.pem" in started.stdout.splitlines()
    assert not (tmp_path / "run").exists()


def test_keycloak_image_bakes_in_the_realm_and_builds_the_mesh_options() -> None:
    dockerfile = (ROOT / "deploy" / "keycloak" / "Dockerfile").read_text()

    assert "services/identity/realm-export.json" in dockerfile
    assert "/opt/keycloak/data/import/" in dockerfile
    for option in ("KC_DB=postgres", "KC_HEALTH_ENABLED=true", "KC_FEATURES=dpop"):
        assert option in dockerfile
    assert "USER 1000" in dockerfile


def test_the_keycloak_build_context_lets_in_what_its_dockerfile_copies() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()

    assert "!deploy/keycloak/" in ignored
    assert "!services/" in ignored
