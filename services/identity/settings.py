"""Settings of the identity stand-in, read from ``MESH_IDP_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.identity.realm import DEFAULT_REALM_FILE
from shared.secrets import AwsEndpoint


class IdentitySettings(BaseSettings):
    """Where the stand-in listens, how callers reach it, where secrets live."""

    model_config = SettingsConfigDict(env_prefix="MESH_IDP_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8080
    # The base URL as callers see it; the issuer is derived from it, so it
    # must match what receivers expect. Empty means http://{host}:{port}.
    public_url: str = ""
    realm_file: Path = DEFAULT_REALM_FILE
    secrets_prefix: str = "a2a-mesh/clients/"
    # A wrong secret re-reads the client's secret (it may have been rotated),
    # at most once per this many seconds per client.
    secret_refresh_interval: float = Field(default=5.0, ge=0)
    aws_region: str = "eu-west-3"
    aws_endpoint_url: str | None = None
    aws_ca_bundle: str | None = None
    # Serve HTTPS when both are set (uvicorn's own TLS).
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_client_ca_file: str | None = None
    """Ask callers for a client certificate from this CA (optional for them):
    tokens of certificate-bound clients are bound to it (RFC 8705)."""
    # A PEM file for the RS256 signing key, kept across restarts; created when
    # missing. Empty means a fresh key at every start.
    signing_key_file: Path | None = None
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check(self) -> IdentitySettings:
        if not self.public_url:
            scheme = "https" if self.tls_certfile else "http"
            self.public_url = f"{scheme}://{self.host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")

        if not self.public_url.startswith(("http://", "https://")):
            raise ValueError("public_url must be an http:// or https:// URL")

        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        return self

    def aws_endpoint(self) -> AwsEndpoint:
        """The Secrets Manager endpoint to read client secrets from."""
        return AwsEndpoint(
            region=self.aws_region,
            endpoint_url=self.aws_endpoint_url,
            ca_bundle=self.aws_ca_bundle,
        )

    def issuer(self, realm: str) -> str:
        """The ``iss`` of tokens of ``realm``: Keycloak's form of it."""
        return f"{self.public_url}/realms/{realm}"
