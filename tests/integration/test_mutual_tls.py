"""Mutual TLS on the internal hops: the agents complete a handshake only with
a client certificate from the mesh CA, and the mesh's clients check the
server's certificate and name. The orchestrator, the edge, takes any TLS
client (the load balancer does not present a certificate).

The whole session mesh runs this way, so every corpus and attack test also
shows the orchestrator's calls to the agents working over mutual TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.authority import create_ca, issue_client_cert
from services.launcher.mesh import LocalMesh
from shared.auth.dpop import b64url_sha256
from shared.tls import client_context
from tests.helpers.tokens import TokenForge

pytestmark = pytest.mark.integration

AGENTS = ["extractor", "validator", "archivist"]
# What a refused handshake looks like to httpx: the server hangs up, or
# (TLS 1.3) answers the first read with an alert.
REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)


async def _health(url: str, verify: ssl.SSLContext | bool) -> httpx.Response:
    async with httpx.AsyncClient(verify=verify, timeout=10) as http:
        return await http.get(f"{url}/health")


@pytest.mark.parametrize("agent", AGENTS)
async def test_agent_answers_a_client_with_a_mesh_certificate(
    mesh: LocalMesh, agent: str
) -> None:
    response = await _health(mesh.url(agent), mesh.tls_context())

    assert response.status_code == 200


@pytest.mark.parametrize("agent", AGENTS)
async def test_agent_refuses_tls_without_a_client_certificate(
    mesh: LocalMesh, agent: str
) -> None:
    with pytest.raises(REFUSED):
        await _health(mesh.url(agent), client_context(mesh.ca_file))


@pytest.mark.parametrize("agent", AGENTS)
async def test_agent_refuses_plain_http(mesh: LocalMesh, agent: str) -> None:
    plain = mesh.url(agent).replace("https://", "http://")

    try:
        response = await _health(plain, verify=False)
    except REFUSED:
        return
    # uvicorn may answer the garbled handshake with a 400; never with health.
    assert response.status_code != 200


async def test_agent_refuses_a_client_certificate_from_another_ca(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    stranger_ca = create_ca(tmp_path)
    stranger = issue_client_cert(stranger_ca, tmp_path, "orchestrator")
    context = client_context(
        mesh.ca_file, certificate=(stranger.cert_path, stranger.key_path)
    )

    with pytest.raises(REFUSED):
        await _health(mesh.url("extractor"), context)


async def test_client_refuses_a_server_certificate_for_another_name(
    mesh: LocalMesh,
) -> None:
    # The extractor's certificate names extractor, localhost and 127.0.0.1;
    # a client that meant to reach another host must not accept it.
    port = int(mesh.url("extractor").rsplit(":", 1)[1])

    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=mesh.tls_context(),
            server_hostname="validator",
        )


async def test_edge_takes_a_tls_client_without_a_certificate(
    mesh: LocalMesh,
) -> None:
    response = await _health(mesh.url("orchestrator"), client_context(mesh.ca_file))

    assert response.status_code == 200


async def test_forged_alb_certificate_header_is_refused_at_the_edge(
    mesh: LocalMesh,
) -> None:
    # The orchestrator trusts no proxy here: a caller claiming the ALB saw
    # a client certificate is refused before anything else is looked at.
    async with httpx.AsyncClient(verify=mesh.tls_context()) as http:
        response = await http.post(
            f"{mesh.url('orchestrator')}/a2a",
            headers={"X-Amzn-Mtls-Clientcert-Leaf": "-----BEGIN%20CERTIFICATE-----"},
            content=b"{}",
        )

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == -32001
    assert error["data"] == {"reason": "untrusted_certificate_header"}


def _thumbprint(pem_file: Path) -> str:
    certificate = x509.load_pem_x509_certificate(pem_file.read_bytes())
    return b64url_sha256(certificate.public_bytes(serialization.Encoding.DER))


async def _archive_as(
    mesh: LocalMesh, token: str, context: ssl.SSLContext
) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "get_document",
        "params": {"s3_key": "uploads/none/missing.txt"},
    }
    async with httpx.AsyncClient(verify=context, timeout=10) as http:
        return await http.post(
            f"{mesh.url('archivist')}/a2a",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )


async def test_certificate_bound_token_works_over_its_own_certificate(
    mesh: LocalMesh, forge: TokenForge
) -> None:
    # RFC 8705 end to end: the agent reads the client certificate of the
    # TLS connection itself and matches the token's cnf.x5t#S256.
    bound = {"x5t#S256": _thumbprint(mesh.client_certificate[0])}
    token = forge.valid("archivist", ["orchestrator"], cnf=bound)

    response = await _archive_as(mesh, token, mesh.tls_context())

    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32010  # reached the method


async def test_token_bound_to_certificate_a_over_certificate_b_is_refused(
    mesh: LocalMesh, forge: TokenForge
) -> None:
    # Certificate B is a genuine mesh certificate, just not the token's.
    other = mesh.certs_dir / "validator-client.pem"
    token = forge.valid(
        "archivist", ["orchestrator"], cnf={"x5t#S256": _thumbprint(other)}
    )

    response = await _archive_as(mesh, token, mesh.tls_context())

    assert response.status_code == 401
    assert response.json()["error"]["data"] == {"reason": "certificate_mismatch"}


@pytest.mark.parametrize(
    ("address_of", "expected_name", "accepted"),
    [("extractor", "extractor", True), ("validator", "extractor", False)],
    ids=["the-extractor-itself", "another-mesh-server-posing-as-it"],
)
async def test_agent_called_by_address_must_show_its_own_name(
    mesh: LocalMesh, address_of: str, expected_name: str, accepted: bool
) -> None:
    # Every mesh certificate names 127.0.0.1; called by address, the client
    # checks the agent's own name instead (what AgentClient sends as SNI).
    async with httpx.AsyncClient(verify=mesh.tls_context(), timeout=10) as http:
        call = http.get(
            f"{mesh.url(address_of)}/health",
            extensions={"sni_hostname": expected_name},
        )
        if accepted:
            assert (await call).status_code == 200
        else:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await call
