"""The whole mesh as local processes: PostgreSQL with TLS, the S3 and Secrets
Manager endpoint, the identity provider and the four services.

Every process gets a free port on 127.0.0.1 and HTTPS with a certificate from
a throwaway development CA. ``LocalMesh`` stops everything it started, in
reverse order, also when starting fails half-way.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from certs.authority import DevCertificates, ensure_dev_certs
from services.identity.realm import load_realm
from services.launcher.aws import (
    LOCAL_AWS_ENV,
    LOCAL_CREDENTIALS,
    aws_process,
    seed,
)
from services.launcher.caller import MeshCaller
from services.launcher.errors import StartupFailed
from services.launcher.pg_setup import find_postgres_bin
from services.launcher.ports import free_port
from services.launcher.postgres import PostgresCluster
from services.launcher.processes import ManagedProcess, python_module
from shared.secrets import AwsEndpoint
from shared.tls import client_context

REALM = "a2a-mesh"
BUCKET = "a2a-mesh-documents"
REGION = "eu-west-3"
DB_NAME = "mesh"
DB_USER = "mesh"
DB_PASSWORD_SECRET = "a2a-mesh/db-password"  # noqa: S105 (a secret's id)
CLIENT_SECRET_PREFIX = "a2a-mesh/clients/"  # noqa: S105 (a prefix of ids)
AGENTS = ("extractor", "validator", "archivist")
SERVICES = ("identity", *AGENTS, "orchestrator")
REPLICABLE = (*AGENTS, "orchestrator")
_START_TIMEOUT = 60.0

EnvBuilder = Callable[[str, int], dict[str, str]]


@dataclass
class MeshAddresses:
    """Where the running mesh answers; filled in as it starts."""

    ca_file: Path
    urls: dict[str, str] = field(default_factory=dict)
    """Every process by name: ``archivist``, ``archivist-2``, ..."""
    replica_urls: dict[str, list[str]] = field(default_factory=dict)
    """Every process of each agent and of the orchestrator, the first first."""

    @property
    def issuer(self) -> str:
        return f"{self.urls['identity']}/realms/{REALM}"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"


class LocalMesh:
    """Starts and stops the mesh; use as a context manager."""

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        log_level: str = "INFO",
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        keep: bool = False,
        replicas: Mapping[str, int] | None = None,
        mutual_tls: bool = True,
    ) -> None:
        """``replicas`` starts more processes of an agent or the orchestrator,
        named ``archivist-2`` and so on, each on its own port, all sharing the
        database and the bucket. An agent's further replicas answer under the
        first one's public URL as if a load balancer stood in front of them
        all; each orchestrator replica is the edge under its own URL, and
        callers spread their requests over ``replica_urls`` themselves."""
        unknown = sorted(set(replicas or {}) - set(REPLICABLE))
        if unknown:
            raise ValueError(f"replicas of {', '.join(unknown)} are not supported")
        self._own_dir = work_dir is None and not keep
        self._keep = keep
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="a2a-mesh-"))
        self.log_dir = self.work_dir / "logs"
        self._log_level = log_level
        self._env_overrides = {
            name: dict(env) for name, env in (service_env or {}).items()
        }
        self._replicas = dict(replicas or {})
        self.mutual_tls = mutual_tls
        self.client_secrets: dict[str, str] = {}
        self.processes: dict[str, ManagedProcess] = {}
        self.database: PostgresCluster | None = None
        self.certs_dir = self.work_dir / "certs"
        self.signing_key_file = self.certs_dir / "realm-signing.key"
        self.addresses = MeshAddresses(ca_file=self.certs_dir / "ca.pem")
        self.aws = AwsEndpoint(REGION, None, str(self.addresses.ca_file))
        self._db_address = ("127.0.0.1", 0)
        self._db_password = secrets.token_urlsafe(24)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        bin_dir = find_postgres_bin()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        certs = ensure_dev_certs(self.certs_dir, SERVICES)

        self._start_database(certs, bin_dir)
        self._start_aws(certs)
        self._start_service("identity", "services.identity", self._identity_env)
        for name in REPLICABLE:
            self._start_replicas(name)

    def _start_database(self, certs: DevCertificates, bin_dir: Path) -> None:
        database = PostgresCluster(
            certs.server("postgres"),
            certs.ca.cert_path,
            bin_dir=bin_dir,
            keep=self._keep,
        )
        self.database = database
        database.start()
        asyncio.run(database.create_database(DB_NAME, DB_USER, self._db_password))
        self._db_address = (database.host, database.port)

    def _start_aws(self, certs: DevCertificates) -> None:
        port = free_port()
        process = aws_process(
            port, certs.server("s3"), env=self._base_env(), log_dir=self.log_dir
        )
        self._launch(process, f"https://127.0.0.1:{port}/moto-api/")
        self.addresses.urls["aws"] = f"https://127.0.0.1:{port}"
        self.aws = AwsEndpoint(
            REGION,
            self.addresses.urls["aws"],
            str(certs.ca.cert_path),
            credentials=LOCAL_CREDENTIALS,
        )

        realm = load_realm()
        self.client_secrets = {
            client_id: secrets.token_urlsafe(32) for client_id in realm.clients
        }
        seed(self.aws, BUCKET, secret_entries(self.client_secrets, self._db_password))

    def _start_replicas(self, service: str) -> None:
        names = [service] + [
            f"{service}-{number}"
            for number in range(2, self._replicas.get(service, 1) + 1)
        ]
        for name in names:
            env_of = self._service_env if name == service else self._replica_env
            self._start_service(name, f"services.{service}", env_of)
        self.addresses.replica_urls[service] = [
            self.addresses.urls[name] for name in names
        ]

    def _start_service(self, name: str, module: str, env_of: EnvBuilder) -> None:
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        self.addresses.urls[name] = url
        process = ManagedProcess(
            name, python_module(module), env=env_of(name, port), log_dir=self.log_dir
        )
        self._launch(process, f"{url}/health")

    def _launch(self, process: ManagedProcess, health_url: str) -> None:
        self.processes[process.name] = process
        process.start()
        process.wait_healthy(
            health_url,
            ca_file=self.addresses.ca_file,
            timeout=_START_TIMEOUT,
            certificate=self.client_certificate,
        )

    def restart(self, name: str, env: Mapping[str, str] | None = None) -> None:
        """Start a stopped or killed service again on its port (fault tests),
        with ``env`` over its environment if given."""
        process = self.processes[name]
        process.stop()
        if env:
            process.update_env(env)
        process.start()
        process.wait_healthy(
            f"{self.url(name)}/health",
            ca_file=self.ca_file,
            timeout=_START_TIMEOUT,
            certificate=self.client_certificate,
        )

    def caller(self, client_id: str, *, url: str | None = None) -> MeshCaller:
        """A caller of the orchestrator (the first replica unless ``url``
        names another), authenticated as a realm client."""
        return MeshCaller(
            url or self.url("orchestrator"),
            token_url=self.addresses.token_url,
            client_id=client_id,
            client_secret=self.client_secrets[client_id],
            ca_file=self.ca_file,
        )

    def url(self, name: str) -> str:
        return self.addresses.urls[name]

    @property
    def client_certificate(self) -> tuple[Path, Path]:
        """The certificate the launcher and tests present to the agents: the
        orchestrator's, since it is the one client the agents expect."""
        return self._client_pair("orchestrator")

    def tls_context(self) -> ssl.SSLContext:
        """A client context for any service of this mesh, agents included."""
        return client_context(self.ca_file, certificate=self.client_certificate)

    @property
    def ca_file(self) -> Path:
        return self.addresses.ca_file

    def service_environment(self, name: str, port: int) -> dict[str, str]:
        """The environment a further process of service ``name`` would get,
        listening on ``port``: for tests that start one themselves."""
        return self._service_env(name, port)

    def stop(self) -> None:
        """Stop every process started, newest first, then remove the files."""
        for process in reversed(list(self.processes.values())):
            process.stop()
        if self.database is not None:
            self.database.stop()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _base_env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MESH_", "AWS_"))
        }
        env.update(LOCAL_AWS_ENV)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _tls_pair(self, name: str) -> tuple[str, str]:
        # ensure_dev_certs names each server's files after the server.
        return str(self.certs_dir / f"{name}.pem"), str(self.certs_dir / f"{name}.key")

    def _client_pair(self, name: str) -> tuple[Path, Path]:
        # ... and each client's after the client, with "-client".
        stem = self.certs_dir / f"{name}-client"
        return stem.with_suffix(".pem"), stem.with_suffix(".key")

    def _identity_env(self, name: str, port: int) -> dict[str, str]:
        cert, key = self._tls_pair(name)
        return (
            self._base_env()
            | {
                "MESH_IDP_PORT": str(port),
                "MESH_IDP_TLS_CERTFILE": cert,
                "MESH_IDP_TLS_KEYFILE": key,
                "MESH_IDP_TLS_CLIENT_CA_FILE": str(self.addresses.ca_file),
                "MESH_IDP_SECRETS_PREFIX": CLIENT_SECRET_PREFIX,
                "MESH_IDP_AWS_REGION": REGION,
                "MESH_IDP_AWS_ENDPOINT_URL": self.addresses.urls["aws"],
                "MESH_IDP_AWS_CA_BUNDLE": str(self.addresses.ca_file),
                "MESH_IDP_LOG_LEVEL": self._log_level,
                "MESH_IDP_SIGNING_KEY_FILE": str(self.signing_key_file),
            }
            | self._env_overrides.get(name, {})
        )

    def _service_env(self, name: str, port: int) -> dict[str, str]:
        cert, key = self._tls_pair(name)
        ca = str(self.addresses.ca_file)
        client_cert, client_key = self._client_pair(name)
        env = self._base_env() | {
            "MESH_PORT": str(port),
            "MESH_TLS_CERTFILE": cert,
            "MESH_TLS_KEYFILE": key,
            "MESH_TLS_CLIENT_CERTFILE": str(client_cert),
            "MESH_TLS_CLIENT_KEYFILE": str(client_key),
            "MESH_CA_FILE": ca,
            "MESH_ISSUER": self.addresses.issuer,
            "MESH_LOG_LEVEL": self._log_level,
            "MESH_AWS_REGION": REGION,
            "MESH_AWS_ENDPOINT_URL": self.addresses.urls["aws"],
            "MESH_AWS_CA_BUNDLE": ca,
            "MESH_S3_BUCKET": BUCKET,
            "MESH_DB_HOST": self._db_address[0],
            "MESH_DB_PORT": str(self._db_address[1]),
            "MESH_DB_NAME": DB_NAME,
            "MESH_DB_USER": DB_USER,
            "MESH_DB_CA_FILE": ca,
        }
        if name == "orchestrator":
            for agent in AGENTS:
                env[f"MESH_{agent.upper()}_URL"] = self.addresses.urls[agent]
        elif self.mutual_tls:
            # The agents are internal: only holders of a mesh certificate
            # complete a handshake. The orchestrator is the edge.
            env["MESH_TLS_CLIENT_CA_FILE"] = ca
        return env | self._env_overrides.get(name, {})

    def _replica_env(self, name: str, port: int) -> dict[str, str]:
        service = name.rsplit("-", 1)[0]
        env = self._service_env(service, port)
        if service in AGENTS:
            # The orchestrator calls the first URL only: DPoP proofs name it.
            env["MESH_PUBLIC_URL"] = self.addresses.urls[service]
        return env


def secret_entries(
    client_secrets: Mapping[str, str], db_password: str
) -> dict[str, str]:
    """What Secrets Manager holds for the mesh: each realm client's secret
    and the database password, under the ids the services read."""
    entries = {
        f"{CLIENT_SECRET_PREFIX}{client_id}": secret
        for client_id, secret in client_secrets.items()
    }
    entries[DB_PASSWORD_SECRET] = db_password
    return entries


__all__ = ["LocalMesh", "MeshAddresses", "StartupFailed", "secret_entries"]
