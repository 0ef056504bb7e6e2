"""AgentClient under failure: connection errors and 502/503/504 are tried again
with a fresh proof each time, nothing else is; what still fails counts once
against the circuit breaker, which then fails calls without sending them until
the service's /ready answers 200."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx

from shared.auth.dpop import DpopKey, ProofVerifier
from shared.auth.service_token import ServiceTokenProvider
from shared.circuit import CircuitBreaker
from shared.client import AgentClient
from shared.errors import DependencyUnavailable, RemoteError
from shared.retry import Backoff
from shared.secrets import StaticSecretStore
from tests.shared.kit import TOKEN_URL, mock_client

BASE_URL = "https://extractor.test:8002"
PEER_URL = f"{BASE_URL}/a2a"
READY_URL = f"{BASE_URL}/ready"
# Three tries with no wait between them: the tests are about which failures
# are tried again, not about how long the waits are.
INSTANT = Backoff(attempts=3, base=0.0, cap=0.0)
THRESHOLD = 2


@dataclass(frozen=True)
class FixedBackoff(Backoff):
    """A backoff whose every wait is ``wait``, to see that it is waited."""

    wait: float = 0.0

    def delay(self, retry: int) -> float:
        return self.wait


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with mock_client(router) as client:
        yield client


@pytest.fixture
def token_route(router: respx.MockRouter) -> respx.Route:
    return router.post(TOKEN_URL).mock(return_value=issued("tok-1"))


@pytest.fixture
def peer(router: respx.MockRouter) -> respx.Route:
    return router.post(PEER_URL)


@pytest.fixture
def breaker() -> CircuitBreaker:
    return CircuitBreaker("extractor", threshold=THRESHOLD)


def make_agent(
    http: httpx.AsyncClient,
    breaker: CircuitBreaker,
    backoff: Backoff = INSTANT,
) -> AgentClient:
    """The client as the mesh runs it: tokens bound to its DPoP key."""
    tokens = ServiceTokenProvider(
        http,
        token_url=TOKEN_URL,
        client_id="orchestrator",
        secret_id="a2a-mesh/clients/orchestrator",
        secrets=StaticSecretStore({"a2a-mesh/clients/orchestrator": "s3cret"}),
        scope="extractor-audience",
        dpop_key=DpopKey(),
        backoff=INSTANT,
    )
    return AgentClient(
        "extractor",
        BASE_URL,
        http=http,
        tokens=tokens,
        backoff=backoff,
        breaker=breaker,
    )


@pytest.fixture
def agent(http: httpx.AsyncClient, breaker: CircuitBreaker) -> AgentClient:
    return make_agent(http, breaker)


def issued(token: str) -> httpx.Response:
    body = {"access_token": token, "expires_in": 300, "token_type": "DPoP"}
    return httpx.Response(200, json=body)


def rpc_result(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"jsonrpc": "2.0", "result": result, "id": 1})


def rpc_error(code: int, status: int = 200) -> httpx.Response:
    error = {"code": code, "message": "refused"}
    return httpx.Response(status, json={"jsonrpc": "2.0", "error": error, "id": 1})


def proof_jti(request: httpx.Request) -> str:
    """The jti of the request's proof, checked as the receiver checks it."""
    return (
        ProofVerifier()
        .verify(
            request.headers["dpop"],
            method="POST",
            url=PEER_URL,
            access_token="tok-1",
            body=request.content,
        )
        .jti
    )


def failure(kind: str) -> httpx.Response | Exception:
    errors: dict[str, httpx.Response | Exception] = {
        "connect-error": httpx.ConnectError("refused"),
        "closed-before-reply": httpx.RemoteProtocolError("server disconnected"),
        "502": httpx.Response(502, text="<h1>Bad gateway</h1>"),
        "503": httpx.Response(503, text="stopping"),
        "504": httpx.Response(504, text="<h1>Gateway timeout</h1>"),
    }
    return errors[kind]


def answer(reply: httpx.Response | Exception) -> httpx.Response:
    """``reply`` as a route's answer: returned, or raised if it is an error."""
    if isinstance(reply, Exception):
        raise reply
    return reply


RETRYABLE = ["connect-error", "closed-before-reply", "502", "503", "504"]


@pytest.mark.parametrize("kind", RETRYABLE)
async def test_retryable_failure_is_tried_again_until_it_succeeds(
    agent: AgentClient,
    peer: respx.Route,
    token_route: respx.Route,
    breaker: CircuitBreaker,
    kind: str,
) -> None:
    peer.side_effect = [failure(kind), failure(kind), rpc_result({"pages": 1})]

    result = await agent.call("extract_document", {"s3_key": "uploads/a.pdf"})

    assert result == {"pages": 1}
    assert peer.call_count == 3
    sent = [call.request for call in peer.calls]
    # Each try is a new request with a proof of its own, valid for its body.
    assert len({proof_jti(request) for request in sent}) == 3
    assert len({json.loads(request.content)["id"] for request in sent}) == 3
    assert {json.loads(r.content)["params"]["s3_key"] for r in sent} == {
        "uploads/a.pdf"
    }
    assert token_route.call_count == 1
    assert breaker.closed


async def test_retries_wait_the_backoff_between_tries(
    http: httpx.AsyncClient, peer: respx.Route, token_route: respx.Route
) -> None:
    agent = make_agent(
        http, CircuitBreaker("extractor"), FixedBackoff(attempts=3, wait=0.05)
    )
    peer.side_effect = [failure("503"), failure("503"), rpc_result("ok")]

    started = time.monotonic()
    await agent.call("extract_document", {})

    assert time.monotonic() - started >= 0.09


@pytest.mark.parametrize(
    ("reply", "raised"),
    [
        (
            httpx.ReadTimeout("the extractor may still be working"),
            DependencyUnavailable,
        ),
        (rpc_error(-32603, status=500), RemoteError),
        (httpx.Response(500, text="Internal Server Error"), DependencyUnavailable),
        (rpc_error(-32600, status=400), RemoteError),
        (rpc_error(-32003, status=429), RemoteError),
        (rpc_error(-32010), RemoteError),
        (rpc_error(-32013), RemoteError),
    ],
    ids=[
        "read-timeout",
        "500-jsonrpc",
        "500-not-json",
        "400",
        "429",
        "jsonrpc-error",
        "jsonrpc-dependency-unavailable",
    ],
)
async def test_other_failures_are_not_tried_again(
    agent: AgentClient,
    peer: respx.Route,
    token_route: respx.Route,
    reply: httpx.Response | Exception,
    raised: type[Exception],
) -> None:
    peer.side_effect = [reply, rpc_result("a second try would succeed")]

    with pytest.raises(raised):
        await agent.call("extract_document", {})

    assert peer.call_count == 1


async def test_read_timeout_is_not_retried_but_counts_against_the_breaker(
    agent: AgentClient,
    peer: respx.Route,
    token_route: respx.Route,
    breaker: CircuitBreaker,
) -> None:
    peer.side_effect = httpx.ReadTimeout("slow")

    for _ in range(THRESHOLD):
        with pytest.raises(DependencyUnavailable):
            await agent.call("extract_document", {})

    assert peer.call_count == THRESHOLD
    assert breaker.state == "open"


@pytest.mark.parametrize("kind", ["connect-error", "503"])
async def test_exhausted_retries_raise_dependency_unavailable_and_count_once(
    agent: AgentClient,
    peer: respx.Route,
    token_route: respx.Route,
    breaker: CircuitBreaker,
    kind: str,
) -> None:
    peer.mock(side_effect=lambda request: answer(failure(kind)))

    with pytest.raises(DependencyUnavailable) as caught:
        await agent.call("extract_document", {})

    assert caught.value.dependency == "extractor"
    assert peer.call_count == INSTANT.attempts
    # Three tries were one failed call: below the threshold of two.
    assert breaker.closed
    if kind == "connect-error":
        assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_breaker_opens_after_the_threshold_then_fails_fast_sending_nothing(
    agent: AgentClient,
    peer: respx.Route,
    token_route: respx.Route,
    breaker: CircuitBreaker,
) -> None:
    peer.side_effect = httpx.ConnectError("refused")
    for _ in range(THRESHOLD):
        with pytest.raises(DependencyUnavailable):
            await agent.call("extract_document", {})
    sent = peer.call_count
    asked_for_tokens = token_route.call_count

    assert breaker.state == "open"
    for _ in range(5):
        with pytest.raises(DependencyUnavailable) as caught:
            await agent.call("extract_document", {})

    assert peer.call_count == sent == THRESHOLD * INSTANT.attempts
    assert token_route.call_count == asked_for_tokens
    assert caught.value.dependency == "extractor"
    assert caught.value.message == (
        f"extractor is unavailable ({THRESHOLD} failed calls in a row)"
    )


async def test_a_success_between_failures_keeps_the_breaker_closed(
    agent: AgentClient,
    peer: respx.Route,
    token_route: respx.Route,
    breaker: CircuitBreaker,
) -> None:
    down = [httpx.ConnectError("refused")] * INSTANT.attempts
    peer.side_effect = [*down, rpc_result("ok"), *down, rpc_result("ok")]

    with pytest.raises(DependencyUnavailable):
        await agent.call("extract_document", {})
    await agent.call("extract_document", {})
    with pytest.raises(DependencyUnavailable):
        await agent.call("extract_document", {})

    assert breaker.closed
    assert await agent.call("extract_document", {}) == "ok"


async def test_ready_reports_200_as_ready(
    agent: AgentClient, router: respx.MockRouter
) -> None:
    router.get(READY_URL).respond(200, json={"status": "ready"})

    assert await agent.ready() == (True, "")


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (httpx.Response(503, json={"status": "not ready"}), "not ready (HTTP 503)"),
        (httpx.Response(500), "not ready (HTTP 500)"),
        (httpx.ConnectError("refused"), "unreachable: ConnectError"),
        (httpx.ReadTimeout("slow"), "unreachable: ReadTimeout"),
    ],
    ids=["503", "500", "connect-error", "read-timeout"],
)
async def test_ready_reports_why_the_service_is_not_ready(
    agent: AgentClient,
    router: respx.MockRouter,
    answer: httpx.Response | Exception,
    detail: str,
) -> None:
    router.get(READY_URL).mock(side_effect=[answer])

    assert await agent.ready() == (False, detail)


async def test_watch_closes_an_open_breaker_when_ready_answers_200(
    agent: AgentClient,
    router: respx.MockRouter,
    peer: respx.Route,
    token_route: respx.Route,
    breaker: CircuitBreaker,
) -> None:
    ready = router.get(READY_URL)
    ready.side_effect = [httpx.Response(503), httpx.Response(503)] + [
        httpx.Response(200)
    ] * 50
    peer.mock(return_value=rpc_result("ok"))
    breaker.probed(False, "not ready (HTTP 503)")

    watching = asyncio.create_task(agent.watch(interval=0.01))
    try:
        await until(lambda: breaker.closed)
    finally:
        watching.cancel()

    assert ready.call_count >= 3
    assert await agent.call("extract_document", {}) == "ok"


async def test_watch_opens_the_breaker_when_the_service_is_not_ready(
    agent: AgentClient, router: respx.MockRouter, breaker: CircuitBreaker
) -> None:
    ready = router.get(READY_URL).respond(503, json={"status": "not ready"})

    watching = asyncio.create_task(agent.watch(interval=0.01))
    try:
        await until(lambda: not breaker.closed)
    finally:
        watching.cancel()

    assert breaker.reason == "not ready (HTTP 503)"
    with pytest.raises(DependencyUnavailable):
        await agent.call("extract_document", {})
    # No route answers /a2a here: only the probes were sent.
    assert len(router.calls) == ready.call_count


async def until(condition: Callable[[], bool], *, seconds: float = 2.0) -> None:
    """Wait for ``condition()`` to hold, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)
