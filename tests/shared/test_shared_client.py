"""AgentClient: results, remote errors carried through, one retry on a refused
token, transport and reply failures mapped to DependencyUnavailable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from shared.auth.dpop import DpopKey, ProofVerifier
from shared.auth.service_token import ServiceTokenProvider
from shared.client import AgentClient, pinned_server_name
from shared.errors import DependencyUnavailable, RemoteError
from shared.logging import correlation_id
from shared.retry import Backoff
from shared.secrets import StaticSecretStore
from tests.shared.kit import TOKEN_URL, mock_client

PEER_URL = "https://extractor.test:8002/a2a"
# Retries without waits (test_shared_client_retry.py is about retrying).
INSTANT = Backoff(attempts=3, base=0.0, cap=0.0)


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with mock_client(router) as client:
        yield client


@pytest.fixture
def token_route(router: respx.MockRouter) -> respx.Route:
    route = router.post(TOKEN_URL)
    route.side_effect = [issued("tok-1"), issued("tok-2")]
    return route


@pytest.fixture
def agent(http: httpx.AsyncClient) -> AgentClient:
    tokens = ServiceTokenProvider(
        http,
        token_url=TOKEN_URL,
        client_id="orchestrator",
        secret_id="a2a-mesh/clients/orchestrator",
        secrets=StaticSecretStore({"a2a-mesh/clients/orchestrator": "s3cret"}),
    )
    return AgentClient(
        "extractor",
        "https://extractor.test:8002/",
        http=http,
        tokens=tokens,
        backoff=INSTANT,
    )


@pytest.fixture
def dpop_key() -> DpopKey:
    return DpopKey()


@pytest.fixture
def bound_agent(http: httpx.AsyncClient, dpop_key: DpopKey) -> AgentClient:
    """The client as the mesh runs it: tokens bound to its DPoP key."""
    tokens = ServiceTokenProvider(
        http,
        token_url=TOKEN_URL,
        client_id="orchestrator",
        secret_id="a2a-mesh/clients/orchestrator",
        secrets=StaticSecretStore({"a2a-mesh/clients/orchestrator": "s3cret"}),
        scope="extractor-audience",
        dpop_key=dpop_key,
    )
    return AgentClient(
        "extractor",
        "https://extractor.test:8002",
        http=http,
        tokens=tokens,
        backoff=INSTANT,
    )


def issued(token: str, kind: str = "Bearer") -> httpx.Response:
    body = {"access_token": token, "expires_in": 300, "token_type": kind}
    return httpx.Response(200, json=body)


def proof_of(request: httpx.Request, token: str) -> str:
    """The jti of the request's proof, if it holds for exactly this request."""
    return (
        ProofVerifier()
        .verify(
            request.headers["dpop"],
            method="POST",
            url=PEER_URL,
            access_token=token,
            body=request.content,
        )
        .jti
    )


def rpc_result(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"jsonrpc": "2.0", "result": result, "id": 1})


def rpc_error(code: int, status: int = 200, data: Any = None) -> httpx.Response:
    error: dict[str, Any] = {"code": code, "message": "refused"}
    if data is not None:
        error["data"] = data
    return httpx.Response(status, json={"jsonrpc": "2.0", "error": error, "id": 1})


async def test_call_returns_result(
    router: respx.MockRouter, agent: AgentClient, token_route: respx.Route
) -> None:
    peer = router.post(PEER_URL).mock(return_value=rpc_result({"pages": 2}))

    result = await agent.call("extract_document", {"s3_key": "uploads/a.pdf"})

    assert result == {"pages": 2}
    sent = peer.calls.last.request
    body = json.loads(sent.content)
    assert body["jsonrpc"] == "2.0"
    assert body["method"] == "extract_document"
    assert body["params"] == {"s3_key": "uploads/a.pdf"}
    assert isinstance(body["id"], int)
    assert sent.headers["authorization"] == "Bearer tok-1"


async def test_call_jsonrpc_error_raises_remote_error_with_code_and_data(
    router: respx.MockRouter, agent: AgentClient, token_route: respx.Route
) -> None:
    data = {"reason": "missing_object", "s3_key": "uploads/a.pdf"}
    router.post(PEER_URL).mock(return_value=rpc_error(-32010, data=data))

    with pytest.raises(RemoteError) as caught:
        await agent.call("extract_document", {"s3_key": "uploads/a.pdf"})

    assert caught.value.remote_code == -32010
    assert caught.value.data == data
    assert caught.value.to_jsonrpc() == {
        "code": -32010,
        "message": "refused",
        "data": data,
    }


async def test_call_unauthenticated_from_peer_invalidates_token_and_retries_once(
    router: respx.MockRouter, agent: AgentClient, token_route: respx.Route
) -> None:
    peer = router.post(PEER_URL)
    peer.side_effect = [
        rpc_error(-32001, status=401, data={"reason": "expired"}),
        rpc_result("ok"),
    ]

    assert await agent.call("get_document", {"document_id": "d-1"}) == "ok"

    assert token_route.call_count == 2
    first, second = (call.request for call in peer.calls)
    assert first.headers["authorization"] == "Bearer tok-1"
    assert second.headers["authorization"] == "Bearer tok-2"


async def test_call_unauthenticated_twice_raises_remote_error_after_one_retry(
    router: respx.MockRouter, agent: AgentClient, token_route: respx.Route
) -> None:
    peer = router.post(PEER_URL).mock(return_value=rpc_error(-32001, status=401))

    with pytest.raises(RemoteError) as caught:
        await agent.call("get_document", {"document_id": "d-1"})

    assert caught.value.remote_code == -32001
    assert peer.call_count == 2


async def test_call_forbidden_from_peer_is_not_retried(
    router: respx.MockRouter, agent: AgentClient
) -> None:
    tokens = router.post(TOKEN_URL).mock(return_value=issued("tok-1"))
    peer = router.post(PEER_URL).mock(return_value=rpc_error(-32002, status=403))

    with pytest.raises(RemoteError) as caught:
        await agent.call("archive_document", {})

    assert caught.value.remote_code == -32002
    assert peer.call_count == 1
    assert tokens.call_count == 1


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")],
    ids=["connect-error", "timeout"],
)
async def test_call_transport_error_raises_dependency_unavailable(
    router: respx.MockRouter,
    agent: AgentClient,
    token_route: respx.Route,
    error: Exception,
) -> None:
    router.post(PEER_URL).mock(side_effect=error)

    with pytest.raises(DependencyUnavailable) as caught:
        await agent.call("extract_document", {})

    assert caught.value.dependency == "extractor"
    assert caught.value.__cause__ is not None


async def test_call_non_json_reply_raises_dependency_unavailable(
    router: respx.MockRouter, agent: AgentClient, token_route: respx.Route
) -> None:
    router.post(PEER_URL).mock(return_value=httpx.Response(502, text="<h1>502</h1>"))

    with pytest.raises(DependencyUnavailable) as caught:
        await agent.call("extract_document", {})

    assert caught.value.dependency == "extractor"


@pytest.mark.parametrize(
    "body",
    [
        [],
        "ok",
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "error": "boom", "id": 1},
        {"jsonrpc": "2.0", "error": {"code": "-32001"}, "id": 1},
        {"jsonrpc": "2.0", "error": {"message": "no code"}, "id": 1},
    ],
    ids=[
        "list",
        "string",
        "no-result",
        "error-not-object",
        "code-not-int",
        "code-missing",
    ],
)
async def test_call_malformed_reply_raises_dependency_unavailable(
    router: respx.MockRouter, agent: AgentClient, token_route: respx.Route, body: Any
) -> None:
    router.post(PEER_URL).mock(return_value=httpx.Response(200, json=body))

    with pytest.raises(DependencyUnavailable) as caught:
        await agent.call("extract_document", {})

    assert caught.value.dependency == "extractor"


async def test_call_forwards_correlation_id_from_contextvar(
    router: respx.MockRouter, agent: AgentClient, token_route: respx.Route
) -> None:
    peer = router.post(PEER_URL).mock(return_value=rpc_result("ok"))

    token = correlation_id.set("cid-abc.123")
    try:
        await agent.call("extract_document", {})
    finally:
        correlation_id.reset(token)

    assert peer.calls.last.request.headers["x-correlation-id"] == "cid-abc.123"


async def test_call_without_correlation_id_sends_no_header(
    router: respx.MockRouter, agent: AgentClient, token_route: respx.Route
) -> None:
    peer = router.post(PEER_URL).mock(return_value=rpc_result("ok"))

    await agent.call("extract_document", {})

    assert "x-correlation-id" not in peer.calls.last.request.headers


async def test_call_with_a_bound_token_proves_the_key_over_the_exact_body(
    router: respx.MockRouter, bound_agent: AgentClient, dpop_key: DpopKey
) -> None:
    router.post(TOKEN_URL).mock(return_value=issued("tok-1", "DPoP"))
    peer = router.post(PEER_URL).mock(return_value=rpc_result("ok"))

    await bound_agent.call("extract_document", {"s3_key": "uploads/é.pdf"})

    sent = peer.calls.last.request
    assert sent.headers["authorization"] == "DPoP tok-1"
    # The receiver's check: URL, method, token hash and body hash all hold.
    proof = ProofVerifier().verify(
        sent.headers["dpop"],
        method="POST",
        url=PEER_URL,
        access_token="tok-1",
        body=sent.content,
    )
    assert proof.thumbprint == dpop_key.thumbprint


async def test_call_revoked_token_is_renewed_and_retried_with_a_fresh_proof(
    router: respx.MockRouter, bound_agent: AgentClient
) -> None:
    tokens = router.post(TOKEN_URL)
    tokens.side_effect = [issued("tok-1", "DPoP"), issued("tok-2", "DPoP")]
    peer = router.post(PEER_URL)
    peer.side_effect = [
        rpc_error(-32005, status=401, data={"reason": "token_revoked"}),
        rpc_result("ok"),
    ]

    assert await bound_agent.call("extract_document", {}) == "ok"

    first, second = (call.request for call in peer.calls)
    assert second.headers["authorization"] == "DPoP tok-2"
    assert proof_of(first, "tok-1") != proof_of(second, "tok-2")


@pytest.mark.parametrize(
    ("base_url", "pinned"),
    [
        ("https://127.0.0.1:8443", {"sni_hostname": "extractor"}),
        ("https://[::1]:8443", {"sni_hostname": "extractor"}),
        ("https://localhost:8443", {"sni_hostname": "extractor"}),
        ("https://extractor:8002", {}),
        ("https://extractor.a2a-mesh.local:8002", {}),
    ],
)
def test_agent_called_by_address_is_checked_against_its_name(
    base_url: str, pinned: dict[str, str]
) -> None:
    # Every mesh certificate names the loopback address; a name does not.
    assert pinned_server_name("extractor", base_url) == pinned
