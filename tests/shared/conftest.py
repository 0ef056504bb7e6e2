"""Fixtures for the shared/ unit tests: keys, a mocked HTTP router, the security
gate over an in-memory store, a moto server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from moto.server import ThreadedMotoServer

from shared.auth.gate import SecurityGate
from shared.auth.jwks import JwksCache
from shared.auth.verifier import TokenVerifier
from shared.secrets import AwsEndpoint
from tests.shared.kit import (
    JWKS_URL,
    MemoryStore,
    SigningKey,
    ec_key,
    jwks,
    make_gate,
    make_verifier,
    mock_client,
    rsa_key,
)

REGION = "eu-west-3"


@pytest.fixture(scope="session")
def rsa_signing_key() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="session")
def ec_signing_key() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture(scope="session")
def stranger_key() -> SigningKey:
    """A key the identity provider never published, under its published kid."""
    return rsa_key("rsa-1")


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Routes for one mocked client: unmatched requests fail, unused routes fail."""
    with respx.mock(
        using=None, assert_all_mocked=True, assert_all_called=True
    ) as mocked:
        yield mocked


@pytest.fixture
async def mesh_verifier(
    router: respx.MockRouter, rsa_signing_key: SigningKey, ec_signing_key: SigningKey
) -> AsyncIterator[TokenVerifier]:
    """A verifier over a JWKS served by ``router``, loaded as at start-up."""
    router.get(JWKS_URL).respond(json=jwks(rsa_signing_key, ec_signing_key))
    async with mock_client(router) as http:
        keys = JwksCache(http, JWKS_URL)
        await keys.refresh()
        yield make_verifier(keys)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def gate(mesh_verifier: TokenVerifier, store: MemoryStore) -> SecurityGate:
    """The tiny app's gate: the test policy, bearer tokens accepted."""
    return make_gate(mesh_verifier, store)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto server on a free loopback port, for S3 and Secrets Manager."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, no metadata service, no profile files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-creds"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def aws(aws_env: None, moto_endpoint: str) -> AwsEndpoint:
    """The moto endpoint, emptied before each test."""
    httpx.post(f"{moto_endpoint}/moto-api/reset").raise_for_status()
    return AwsEndpoint(region=REGION, endpoint_url=moto_endpoint)


@pytest.fixture
def closed_port_endpoint(aws_env: None) -> AwsEndpoint:
    """An endpoint on a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return AwsEndpoint(region=REGION, endpoint_url=f"http://127.0.0.1:{port}")
