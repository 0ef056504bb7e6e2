"""The image's commands, run as the containers run them, against the real mesh:
``serve`` with TLS material given as PEM variables (as ECS injects secrets),
``health`` as the health checks call it, ``local-aws`` as the compose endpoint
and ``submit`` as a client of the running mesh."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.launcher.aws import LOCAL_AWS_ENV, LOCAL_CREDENTIALS
from services.launcher.compose import init
from services.launcher.mesh import LocalMesh
from services.launcher.ports import free_port
from shared.secrets import AwsEndpoint

pytestmark = pytest.mark.integration

A2A_MESH = shutil.which("a2a-mesh") or str(Path(sys.executable).parent / "a2a-mesh")


def run(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [A2A_MESH, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "AWS_"))}


def test_health_probes_an_agent_with_the_services_client_certificate(
    mesh: LocalMesh,
) -> None:
    certificate, key = mesh.client_certificate
    env = clean_environment() | {
        "MESH_CA_FILE": str(mesh.ca_file),
        "MESH_TLS_CLIENT_CERTFILE": str(certificate),
        "MESH_TLS_CLIENT_KEYFILE": str(key),
    }

    probed = run("health", f"{mesh.url('extractor')}/health", env=env)

    assert probed.returncode == 0, probed.stderr
    assert probed.stdout.strip() == "200 OK"


def test_health_fails_where_the_agent_refuses_the_handshake(mesh: LocalMesh) -> None:
    env = clean_environment() | {"MESH_CA_FILE": str(mesh.ca_file)}

    probed = run("health", f"{mesh.url('extractor')}/health", env=env)

    # No client certificate: the agent ends the handshake, the check fails.
    assert probed.returncode == 2
    assert "a2a-mesh health:" in probed.stderr


def test_serve_takes_tls_material_from_pem_variables_and_stops_on_sigterm(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    port = free_port()
    env = mesh.service_environment("validator", port)
    files = {
        "MESH_CA_PEM": env.pop("MESH_CA_FILE"),
        "MESH_TLS_CERT_PEM": env.pop("MESH_TLS_CERTFILE"),
        "MESH_TLS_KEY_PEM": env.pop("MESH_TLS_KEYFILE"),
        "MESH_TLS_CLIENT_CERT_PEM": env.pop("MESH_TLS_CLIENT_CERTFILE"),
        "MESH_TLS_CLIENT_KEY_PEM": env.pop("MESH_TLS_CLIENT_KEYFILE"),
    }
    env |= {name: Path(path).read_text() for name, path in files.items()}
    env["MESH_TLS_CLIENT_CA_FILE"] = str(mesh.ca_file)
    env["MESH_RUNTIME_DIR"] = str(tmp_path / "run")
    log = (tmp_path / "validator.log").open("w")
    service = subprocess.Popen(
        [A2A_MESH, "serve", "validator"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        probed = wait_for_health(env)
        written = sorted(p.name for p in (tmp_path / "run").iterdir())
        modes = {(tmp_path / "run" / n).stat().st_mode & 0o777 for n in written}
        environ = Path(f"/proc/{service.pid}/environ").read_bytes().split(b"\0")

        service.send_signal(signal.SIGTERM)
        code = service.wait(timeout=20)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        log.close()

    assert probed.returncode == 0, (tmp_path / "validator.log").read_text()[-2000:]
    assert written == ["ca.pem", "client.key", "client.pem", "server.key", "server.pem"]
    assert modes == {0o600}
    # The service process holds file paths, not the private keys themselves.
    assert not [v for v in environ if v.startswith(b"MESH_TLS_KEY_PEM=")]
    assert b"MESH_TLS_KEYFILE=" + str(tmp_path / "run/server.key").encode() in environ
    # A stop that went as planned: the graceful shutdown, then exit status 0.
    assert code == 0
    assert "Application shutdown complete" in (tmp_path / "validator.log").read_text()


def wait_for_health(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 30
    while True:
        probed = run("health", env=env, timeout=10)
        if probed.returncode == 0 or time.monotonic() > deadline:
            return probed
        time.sleep(0.3)


def test_serve_refuses_a_certificate_given_twice(tmp_path: Path) -> None:
    env = clean_environment() | {
        "MESH_TLS_CERT_PEM": "-----BEGIN CERTIFICATE-----",
        "MESH_TLS_CERTFILE": "/elsewhere/server.pem",
        "MESH_RUNTIME_DIR": str(tmp_path),
    }

    refused = run("serve", "validator", env=env)

    assert refused.returncode == 2
    assert "MESH_TLS_CERTFILE" in refused.stderr
    assert list(tmp_path.iterdir()) == []


def local_aws_arguments(folder: Path, port: int, ready: Path) -> list[str]:
    return [
        "local-aws",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ready-file",
        str(ready),
    ]


def test_local_aws_serves_tls_and_holds_the_secrets_init_made(tmp_path: Path) -> None:
    init(tmp_path / "volume")
    folder = tmp_path / "volume" / "aws"
    port = free_port()
    ready = tmp_path / "seeded"
    env = clean_environment() | LOCAL_AWS_ENV
    log = (tmp_path / "local-aws.log").open("w")
    endpoint_process = subprocess.Popen(
        [A2A_MESH, *local_aws_arguments(folder, port, ready)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        endpoint = AwsEndpoint(
            "eu-west-3",
            f"https://127.0.0.1:{port}",
            str(folder / "ca.pem"),
            credentials=LOCAL_CREDENTIALS,
        )
        manager = endpoint.client("secretsmanager")
        seeded = json.loads((folder / "seed.json").read_text())
        stored = {
            name: manager.get_secret_value(SecretId=name)["SecretString"]
            for name in seeded
        }
        buckets = [b["Name"] for b in endpoint.client("s3").list_buckets()["Buckets"]]

        was_ready = ready.exists()
        endpoint_process.send_signal(signal.SIGTERM)
        endpoint_process.wait(timeout=20)
    finally:
        if endpoint_process.poll() is None:
            endpoint_process.kill()
            endpoint_process.wait()
        log.close()

    assert was_ready
    assert stored == seeded
    db_password = (tmp_path / "volume" / "postgres" / "db-password").read_text()
    assert stored["a2a-mesh/db-password"] == db_password
    assert buckets == ["a2a-mesh-documents"]
    # Stopped, it takes its ready mark with it.
    assert not ready.exists()


def test_local_aws_refuses_a_port_in_use_and_marks_nothing_ready(
    tmp_path: Path,
) -> None:
    init(tmp_path / "volume")
    ready = tmp_path / "seeded"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        refused = run(
            *local_aws_arguments(tmp_path / "volume" / "aws", port, ready),
            env=clean_environment() | LOCAL_AWS_ENV,
        )

    assert refused.returncode == 2
    assert refused.stderr.startswith(
        f"a2a-mesh local-aws: cannot listen on 127.0.0.1:{port}"
    )
    assert not ready.exists()


def test_local_aws_names_a_broken_seed_file(tmp_path: Path) -> None:
    init(tmp_path / "volume")
    seed_file = tmp_path / "volume" / "aws" / "seed.json"
    seed_file.write_text('{"a2a-mesh/db-password": ')

    refused = run(
        *local_aws_arguments(seed_file.parent, free_port(), tmp_path / "seeded"),
        env=clean_environment() | LOCAL_AWS_ENV,
    )

    assert refused.returncode == 2
    assert f"cannot read {seed_file}" in refused.stderr
    assert "Traceback" not in refused.stderr


def submit_arguments(mesh: LocalMesh, secret: Path) -> list[str]:
    return [
        "submit",
        "--url",
        mesh.url("orchestrator"),
        "--token-url",
        mesh.addresses.token_url,
        "--secret-file",
        str(secret),
        "--ca-file",
        str(mesh.ca_file),
    ]


def test_submit_processes_documents_as_a_client_of_the_running_mesh(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    secret = tmp_path / "document-processor.secret"
    secret.write_text(mesh.client_secrets["document-processor"])
    sample = Path(__file__).resolve().parents[2] / "services/launcher/samples"

    submitted = run(
        *submit_arguments(mesh, secret),
        str(sample / "sample_invoice.pdf"),
        str(sample / "libreoffice-writer-password.pdf"),
        "--json",
        env=clean_environment(),
        timeout=120,
    )

    assert submitted.returncode == 0, submitted.stderr
    report = json.loads(submitted.stdout)
    statuses = {row["file"]: row["status"] for row in report["documents"]}
    assert statuses == {
        "sample_invoice.pdf": "completed",
        "libreoffice-writer-password.pdf": "failed",
    }


def test_submit_says_in_one_line_when_the_client_is_refused(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    secret = tmp_path / "wrong.secret"
    secret.write_text("not-the-secret")
    sample = Path(__file__).resolve().parents[2] / "services/launcher/samples"

    refused = run(
        *submit_arguments(mesh, secret),
        str(sample / "sample_invoice.pdf"),
        env=clean_environment(),
        timeout=60,
    )

    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "a2a-mesh submit: CallerError: token request refused (401)"
    )
