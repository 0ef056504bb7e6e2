"""What the image runs: ``a2a-mesh serve <service>`` and ``a2a-mesh health``.

On ECS the TLS material arrives as secrets injected into the environment,
while the services read certificates from files. ``serve`` writes each PEM it
finds to a private file, points the matching setting at it, drops the PEM
from the environment and replaces itself with the service, which so becomes
the process that receives SIGTERM. With files mounted (docker compose), it
changes nothing.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shared.tls import client_context

SERVICES = ("orchestrator", "extractor", "validator", "archivist", "identity")
# Each service's own default port (its settings class), when none is set.
DEFAULT_PORTS = {
    "orchestrator": "8001",
    "extractor": "8002",
    "validator": "8003",
    "archivist": "8004",
}

RUNTIME_DIR_VARIABLE = "MESH_RUNTIME_DIR"
DEFAULT_RUNTIME_DIR = Path("/run/mesh")

# Variable holding a PEM -> (the file it is written to, the setting naming it).
PEM_VARIABLES: Mapping[str, tuple[str, str]] = {
    "MESH_CA_PEM": ("ca.pem", "MESH_CA_FILE"),
    "MESH_TLS_CERT_PEM": ("server.pem", "MESH_TLS_CERTFILE"),
    "MESH_TLS_KEY_PEM": ("server.key", "MESH_TLS_KEYFILE"),
    "MESH_TLS_CLIENT_CERT_PEM": ("client.pem", "MESH_TLS_CLIENT_CERTFILE"),
    "MESH_TLS_CLIENT_KEY_PEM": ("client.key", "MESH_TLS_CLIENT_KEYFILE"),
}

# Read by the entry point, not by the services' settings.
ENTRYPOINT_VARIABLES = frozenset({RUNTIME_DIR_VARIABLE, *PEM_VARIABLES})

_PROBE_TIMEOUT_SECONDS = 5.0


class EntrypointError(Exception):
    """The container cannot start the service as configured."""


def runtime_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(RUNTIME_DIR_VARIABLE, str(DEFAULT_RUNTIME_DIR)))


def file_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The file settings the PEM variables in ``environ`` stand for."""
    folder = runtime_dir(environ)
    return {
        setting: str(folder / file_name)
        for variable, (file_name, setting) in PEM_VARIABLES.items()
        if environ.get(variable)
    }


def write_pem_files(environ: MutableMapping[str, str]) -> None:
    """Write each PEM variable to its file (0600), set the file setting and
    remove the PEM from ``environ``. A file setting given as well is
    refused: two sources for one certificate leave doubt which is used."""
    settings = file_settings(environ)
    clashes = sorted(s for s in settings if environ.get(s))
    if clashes:
        raise EntrypointError(f"set either the PEM or the file: {', '.join(clashes)}")

    if not settings:
        return
    for variable in PEM_VARIABLES:
        if environ.get(variable):
            _check_pem(variable, environ[variable])

    folder = runtime_dir(environ)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for variable, (file_name, setting) in PEM_VARIABLES.items():
        pem = environ.pop(variable, "")
        if not pem:
            continue
        path = folder / file_name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(pem if pem.endswith("\n") else pem + "\n")
        environ[setting] = str(path)


def _check_pem(variable: str, pem: str) -> None:
    """Refuse text that is not the PEM the variable promises, naming the
    variable: the service would otherwise fail deep inside its TLS set-up."""
    data = pem.encode()
    try:
        if variable.endswith("_KEY_PEM"):
            serialization.load_pem_private_key(data, password=None)
        else:
            x509.load_pem_x509_certificates(data)
    except (ValueError, TypeError):
        kind = "a private key" if variable.endswith("_KEY_PEM") else "certificates"
        raise EntrypointError(f"{variable} does not hold {kind} in PEM") from None


def serve(service: str) -> None:
    """Become ``service``: write the TLS files, then exec its module."""
    if not service:
        raise EntrypointError("name the service, or set MESH_SERVICE_NAME")
    if service not in SERVICES:
        raise EntrypointError(
            f"unknown service {service!r}; one of: {', '.join(SERVICES)}"
        )
    environment = dict(os.environ)
    write_pem_files(environment)
    argv = [sys.executable, "-m", f"services.{service}"]
    os.execve(sys.executable, argv, environment)  # noqa: S606 (our own module)


def health_url(environ: Mapping[str, str]) -> str:
    """The service's own ``/health``, as its settings make it listen."""
    settings = {**environ, **file_settings(environ)}
    scheme = "https" if settings.get("MESH_TLS_CERTFILE") else "http"
    port = settings.get("MESH_PORT") or DEFAULT_PORTS.get(
        settings.get("MESH_SERVICE_NAME", "")
    )
    if not port:
        raise EntrypointError("set MESH_PORT or MESH_SERVICE_NAME, or give the URL")
    return f"{scheme}://127.0.0.1:{port}/health"


def probe(url: str, environ: Mapping[str, str]) -> str:
    """GET ``url`` with the mesh CA and this service's client certificate
    (an agent's listener asks for one); the status line, or an error."""
    settings = {**environ, **file_settings(environ)}
    certificate = None
    if settings.get("MESH_TLS_CLIENT_CERTFILE"):
        certificate = (
            settings["MESH_TLS_CLIENT_CERTFILE"],
            settings.get("MESH_TLS_CLIENT_KEYFILE", ""),
        )
    context = None
    if url.startswith("https://"):
        context = client_context(settings.get("MESH_CA_FILE"), certificate=certificate)
    try:
        with urllib.request.urlopen(  # noqa: S310 (http or https only, checked)
            _checked(url), timeout=_PROBE_TIMEOUT_SECONDS, context=context
        ) as response:
            return f"{response.status} {response.reason}"
    except urllib.error.HTTPError as exc:
        raise EntrypointError(f"{url}: {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, ssl.SSLError, OSError) as exc:
        raise EntrypointError(f"{url}: {exc}") from None


def _checked(url: str) -> str:
    if not url.startswith(("https://", "http://")):
        raise EntrypointError(f"not an http(s) URL: {url}")
    return url
