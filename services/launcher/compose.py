"""The docker compose set-up's own steps.

``a2a-mesh compose-init`` fills the shared volume with the certificates and
secrets, one folder per container, each file owned by the one user that
container runs as, so that no container can read another's private key.
Running it again keeps everything still valid: PostgreSQL and Keycloak only
take their passwords when they first initialise, so new ones would lock
them out.

``a2a-mesh local-aws`` runs the S3 and Secrets Manager endpoint (moto, over
TLS) and seeds it with the bucket and the secrets the services read.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from certs.authority import CertPair, DevCertificates, ensure_dev_certs
from services.identity.realm import load_realm
from services.launcher.aws import LOCAL_CREDENTIALS, seed
from services.launcher.errors import LauncherError
from services.launcher.mesh import BUCKET, secret_entries
from shared.secrets import AwsEndpoint
from shared.tls import client_context

MESH_SERVICES = ("orchestrator", "extractor", "validator", "archivist")
SERVERS_ONLY = ("aws", "keycloak", "proxy")

# The users the containers run as: this image's (see the Dockerfile), the
# official Keycloak image's, the official PostgreSQL (Debian) image's, and
# root for nginx, whose master process reads the key before dropping rights.
MESH_UID = 10001
KEYCLOAK_UID = 1000
POSTGRES_UID = 999
ROOT_UID = 0

DEMO_CLIENT = "document-processor"
AWS_PORT = 4566
# Inside its container the endpoint serves the compose network.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
AWS_READY_FILE = Path("/tmp/a2a-mesh-aws-seeded")  # noqa: S108 (the container's own /tmp)
REGION = "eu-west-3"

_PASSWORDS = ("db-password", "keycloak-db-password", "keycloak-admin-password")
_START_OVER = "to start over, remove the volume (docker compose down -v)"
_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Secrets:
    passwords: Mapping[str, str]
    client_secrets: Mapping[str, str]
    """Client id -> secret, for every client of the realm."""


def init(out: Path) -> list[Path]:
    """Make or refresh every folder of the volume; the folders written."""
    authority = out / ".authority"
    authority.mkdir(mode=0o700, parents=True, exist_ok=True)
    certificates = ensure_dev_certs(
        authority, MESH_SERVICES, servers_only=SERVERS_ONLY, days=90
    )
    values = _load_or_create_secrets(authority / "secrets.json")

    folders = [
        *(_service_folder(out, name, certificates) for name in MESH_SERVICES),
        _postgres_folder(out, certificates, values),
        _keycloak_folder(out, certificates, values),
        _server_folder(out, "proxy", certificates, ROOT_UID),
        _aws_folder(out, certificates, values),
        _client_folder(out, certificates, values),
    ]
    return folders


def _load_or_create_secrets(path: Path) -> Secrets:
    stored: dict[str, dict[str, str]] = {"passwords": {}, "clients": {}}
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            _check_stored(stored)
        except (ValueError, TypeError) as exc:
            raise LauncherError(f"{path} is damaged ({exc}); {_START_OVER}") from None
    elif (path.parent.parent / "postgres" / "db-password").exists():
        # The databases keep the passwords they started with: new ones now
        # would lock every service out.
        raise LauncherError(
            f"{path} is missing but passwords are in use; {_START_OVER}"
        )

    passwords = stored["passwords"]
    for name in _PASSWORDS:
        passwords.setdefault(name, secrets.token_urlsafe(32))
    clients = stored["clients"]
    for client_id in load_realm().clients:
        clients.setdefault(client_id, secrets.token_urlsafe(32))

    _write(path, json.dumps(stored, indent=2), ROOT_UID)
    return Secrets(passwords=passwords, client_secrets=clients)


def _check_stored(stored: object) -> None:
    if not isinstance(stored, dict):
        raise TypeError("not a JSON object")
    for part in ("passwords", "clients"):
        values = stored.get(part)
        if not isinstance(values, dict) or not all(
            isinstance(v, str) for v in values.values()
        ):
            raise TypeError(f"{part} is not an object of strings")


def _server_folder(
    out: Path, name: str, certificates: DevCertificates, owner: int
) -> Path:
    folder = _folder(out / name, owner)
    _copy(certificates.ca.cert_path, folder / "ca.pem", owner)
    _copy_pair(certificates.server(name), folder, "server", owner)
    return folder


def _service_folder(out: Path, name: str, certificates: DevCertificates) -> Path:
    folder = _server_folder(out, name, certificates, MESH_UID)
    _copy_pair(certificates.client(name), folder, "client", MESH_UID)
    return folder


def _postgres_folder(out: Path, certificates: DevCertificates, values: Secrets) -> Path:
    folder = _server_folder(out, "postgres", certificates, POSTGRES_UID)
    for name in ("db-password", "keycloak-db-password"):
        _write(folder / name, values.passwords[name], POSTGRES_UID)
    return folder


def _keycloak_folder(out: Path, certificates: DevCertificates, values: Secrets) -> Path:
    """Keycloak replaces the realm file's ``${MESH_CLIENT_SECRET_*}`` from
    its environment, which its start command reads from ``keycloak.env``."""
    folder = _server_folder(out, "keycloak", certificates, KEYCLOAK_UID)
    realm = load_realm()
    lines = [
        f"KC_DB_PASSWORD={values.passwords['keycloak-db-password']}",
        f"KC_BOOTSTRAP_ADMIN_PASSWORD={values.passwords['keycloak-admin-password']}",
    ]
    for client_id, client in realm.clients.items():
        if client.secret_ref:
            lines.append(f"{client.secret_ref}={values.client_secrets[client_id]}")
    _write(folder / "keycloak.env", "\n".join(lines) + "\n", KEYCLOAK_UID)
    return folder


def _aws_folder(out: Path, certificates: DevCertificates, values: Secrets) -> Path:
    folder = _folder(out / "aws", MESH_UID)
    _copy(certificates.ca.cert_path, folder / "ca.pem", MESH_UID)
    _copy_pair(certificates.server("aws"), folder, "server", MESH_UID)
    seeded = secret_entries(values.client_secrets, values.passwords["db-password"])
    _write(folder / "seed.json", json.dumps(seeded, indent=2), MESH_UID)
    return folder


def _client_folder(out: Path, certificates: DevCertificates, values: Secrets) -> Path:
    """What ``docker compose run demo`` needs to call the mesh as a client."""
    folder = _folder(out / "client", MESH_UID)
    _copy(certificates.ca.cert_path, folder / "ca.pem", MESH_UID)
    secret = values.client_secrets[DEMO_CLIENT]
    _write(folder / f"{DEMO_CLIENT}.secret", secret, MESH_UID)
    return folder


def _folder(path: Path, owner: int) -> Path:
    # Run as root on a shared volume: never follow a planted link.
    if path.is_symlink():
        raise LauncherError(f"{path} is a symbolic link; refusing to write there")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _own(path, owner, 0o700)
    return path


def _copy_pair(pair: CertPair, folder: Path, stem: str, owner: int) -> None:
    _copy(pair.cert_path, folder / f"{stem}.pem", owner)
    _copy(pair.key_path, folder / f"{stem}.key", owner)


def _copy(source: Path, target: Path, owner: int) -> None:
    _write(target, source.read_text(encoding="utf-8"), owner)


def _write(path: Path, text: str, owner: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError as exc:
        raise LauncherError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        _own(handle.fileno(), owner, 0o600)


def _own(target: Path | int, owner: int, mode: int) -> None:
    """Give ``target`` (an open file, or a folder checked not to be a link)
    to ``owner``. Only root can; run as anyone else (the tests), the files
    stay the caller's, with the same modes."""
    if os.geteuid() == 0:
        os.chown(target, owner, owner)
    os.chmod(target, mode)


def local_aws(
    folder: Path,
    *,
    host: str = ALL_INTERFACES,
    port: int = AWS_PORT,
    ready_file: Path = AWS_READY_FILE,
) -> int:
    """Run moto over TLS until it exits, seeding it once it answers; then
    ``ready_file`` tells the health check it is ready."""
    ready_file.unlink(missing_ok=True)
    seed_file = folder / "seed.json"
    values = _seed_values(seed_file)
    _check_port_free(host, port)
    argv = [
        sys.executable,
        "-m",
        "services.launcher.s3_server",
        "-H",
        host,
        "-p",
        str(port),
        "-c",
        str(folder / "server.pem"),
        "-k",
        str(folder / "server.key"),
    ]
    server = subprocess.Popen(argv)  # noqa: S603 (our own interpreter and module)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    url = f"https://127.0.0.1:{port}"
    try:
        _wait_until_answering(f"{url}/moto-api/", folder / "ca.pem", server)
        endpoint = AwsEndpoint(
            REGION, url, str(folder / "ca.pem"), credentials=LOCAL_CREDENTIALS
        )
        seed(endpoint, BUCKET, values)
        if server.poll() is not None:
            raise LauncherError(f"moto exited with code {server.returncode}")
        ready_file.write_text("seeded\n", encoding="utf-8")
        print(f"local-aws: seeded {len(values)} secrets and {BUCKET}", flush=True)  # noqa: T201
        return server.wait()
    finally:
        # Whatever ends this process ends the server holding the secrets.
        if server.poll() is None:
            server.terminate()
            server.wait()
        ready_file.unlink(missing_ok=True)


def _seed_values(path: Path) -> dict[str, str]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LauncherError(f"cannot read {path}: {exc}") from None
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise LauncherError(f"{path} must map secret ids to strings")
    return values


def _check_port_free(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise LauncherError(f"port {port} is not a TCP port")
    probe = socket.socket()
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise LauncherError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


def _wait_until_answering(
    url: str, ca_file: Path, server: subprocess.Popen[bytes]
) -> None:
    context = client_context(ca_file)
    deadline = time.monotonic() + _WAIT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise LauncherError(f"moto exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):  # noqa: S310 (https, fixed)
                return
        except (urllib.error.URLError, ssl.SSLError, OSError):
            time.sleep(0.2)
    raise LauncherError(f"moto did not answer at {url} within {_WAIT_SECONDS:.0f}s")
