"""Typed settings, read from ``MESH_*`` environment variables at start-up.

Each service composes the pieces it needs (``ServiceSettings``, which includes
``DatabaseSettings``, plus ``StorageSettings`` if it reads S3) and passes the
result to its ``create_app(settings)``; nothing is read at import time.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_CONFIG = SettingsConfigDict(env_prefix="MESH_", extra="ignore", frozen=True)

# Signatures by the identity provider's public keys only: never HMAC, never none.
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)


def _list_of_names(value: object) -> object:
    """A JSON list, or names separated by commas (what a CloudFormation
    ``!Join`` or a shell makes most easily)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return tuple(json.loads(text))
    return tuple(name.strip() for name in text.split(",") if name.strip())


NameList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_list_of_names)]


class DatabaseSettings(BaseSettings):
    """PostgreSQL over TLS with the server certificate and host name verified."""

    model_config = _CONFIG

    db_host: str = "127.0.0.1"
    db_port: int = Field(5432, ge=1, le=65535)
    db_name: str = "mesh"
    db_user: str = "mesh"
    db_password_secret_id: str = "a2a-mesh/db-password"  # noqa: S105 (an id)
    db_ca_file: Path
    """CA bundle that signs the server certificate (the RDS bundle on AWS)."""
    db_pool_min: int = Field(1, ge=0)
    db_pool_max: int = Field(10, ge=1)
    db_connect_timeout_seconds: float = Field(10.0, gt=0)
    db_command_timeout_seconds: float = Field(10.0, gt=0)
    """Longest wait for a connection and a query together; then -32013."""


class ServiceSettings(DatabaseSettings):
    """What every service needs: where it listens, how it trusts callers, and
    the database that holds the security state all replicas share."""

    model_config = _CONFIG

    service_name: str
    version: str = "0.1.0"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = None
    """The base URL callers use; advertised in the agent card."""
    development: bool = False
    log_level: str = "INFO"

    issuer: str
    """The realm URL, e.g. ``https://idp.example/realms/a2a-mesh``."""
    jwks_url: str | None = None
    """Where the signing keys are fetched; defaults to the issuer's."""
    token_url: str | None = None
    """Where this service asks for its own tokens; defaults to the issuer's.
    Behind a load balancer the issuer is the public URL while the services
    reach the identity provider directly."""
    audience: str | None = None
    """The audience this service accepts; defaults to its client id."""
    allowed_algorithms: NameList = ("RS256", "PS256", "ES256")
    jwks_refresh_interval_seconds: float = Field(10.0, ge=0)
    jwks_max_age_seconds: float = Field(3600.0, gt=0)
    policy_file: Path | None = None
    """The security policy (roles, callers, token rules, limits); the
    shipped ``shared/auth/policy.toml`` when unset."""
    accept_bearer_tokens: bool = False
    """Whether tokens not bound to a DPoP key are accepted at all."""

    client_id: str | None = None
    """This service's own client at the identity provider; defaults to its name."""
    client_secret_id: str | None = None
    """Secrets Manager id of the client secret."""
    token_renew_margin_seconds: float = Field(30.0, ge=0)

    aws_region: str = "eu-west-3"
    aws_endpoint_url: str | None = None
    aws_ca_bundle: str | None = None
    secrets_ttl_seconds: float = Field(300.0, ge=0)

    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    """Serve HTTPS when both are set."""
    ca_file: str | None = None
    """CA bundle for HTTPS to the identity provider and other services."""
    tls_client_ca_file: str | None = None
    """Require callers to present a certificate signed by this CA (mutual
    TLS): set on the internal listeners, not on the orchestrator's edge."""
    tls_client_certfile: str | None = None
    tls_client_keyfile: str | None = None
    """This service's client certificate, presented to the services it calls."""
    trusted_proxies: NameList = ()
    """Addresses or CIDR blocks of the load balancer: only from these are
    ``X-Forwarded-For``/``-Proto`` believed."""
    trust_alb_client_certificates: bool = False
    """Read the ALB's mutual-TLS headers (``X-Amzn-Mtls-Clientcert[-Leaf]``)
    from the trusted proxies; refused from anyone when off."""

    shutdown_grace_seconds: int = Field(5, ge=1, le=25)
    """On SIGTERM, how long open requests may take before connections close."""

    http_timeout_seconds: float = Field(30.0, gt=0)

    @field_validator("allowed_algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: tuple[str, ...]) -> tuple[str, ...]:
        unsupported = set(algorithms) - SUPPORTED_ALGORITHMS
        if unsupported:
            raise ValueError(f"unsupported algorithms: {sorted(unsupported)}")
        return algorithms

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in proxies:
            ipaddress.ip_network(proxy.strip(), strict=False)
        return proxies

    @model_validator(mode="after")
    def _tls_pairs(self) -> ServiceSettings:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("set both MESH_TLS_CERTFILE and MESH_TLS_KEYFILE")
        if bool(self.tls_client_certfile) != bool(self.tls_client_keyfile):
            raise ValueError(
                "set both MESH_TLS_CLIENT_CERTFILE and MESH_TLS_CLIENT_KEYFILE"
            )
        if self.trust_alb_client_certificates and not self.trusted_proxies:
            raise ValueError(
                "MESH_TRUST_ALB_CLIENT_CERTIFICATES needs MESH_TRUSTED_PROXIES"
            )
        if self.tls_client_ca_file and not self.tls_certfile:
            raise ValueError("MESH_TLS_CLIENT_CA_FILE needs HTTPS (MESH_TLS_CERTFILE)")
        return self

    @property
    def client_certificate(self) -> tuple[str, str] | None:
        if self.tls_client_certfile and self.tls_client_keyfile:
            return self.tls_client_certfile, self.tls_client_keyfile
        return None

    @property
    def realm_url(self) -> str:
        return self.issuer.rstrip("/")

    @property
    def public_base_url(self) -> str:
        """The base URL callers address, which DPoP proofs must name: the
        configured one behind a proxy, never one guessed from headers."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def jwks_endpoint(self) -> str:
        return self.jwks_url or f"{self.realm_url}/protocol/openid-connect/certs"

    @property
    def token_endpoint(self) -> str:
        return self.token_url or self.issuer_token_endpoint

    @property
    def issuer_token_endpoint(self) -> str:
        """The token endpoint as callers outside the mesh know it."""
        return f"{self.realm_url}/protocol/openid-connect/token"

    @property
    def own_client_id(self) -> str:
        return self.client_id or self.service_name

    @property
    def accepted_audience(self) -> str:
        return self.audience or self.own_client_id

    @property
    def own_secret_id(self) -> str:
        return self.client_secret_id or f"a2a-mesh/clients/{self.own_client_id}"


class StorageSettings(BaseSettings):
    """The S3 bucket holding documents."""

    model_config = _CONFIG

    s3_bucket: str = "a2a-mesh-documents"
    s3_sse: str = "AES256"
    """Server-side encryption requested on every put: ``AES256`` or ``aws:kms``."""
    s3_kms_key_id: str | None = None
