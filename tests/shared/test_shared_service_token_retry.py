"""ServiceTokenProvider under an identity provider that fails: connection
errors and 502/503/504 are tried again with a fresh proof per try, nothing
else is, and what still fails is DependencyUnavailable for the provider."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import respx

from shared.auth.dpop import DpopKey, ProofVerifier
from shared.auth.service_token import AccessToken, ServiceTokenProvider
from shared.errors import DependencyUnavailable
from shared.retry import Backoff
from shared.secrets import StaticSecretStore
from tests.shared.kit import TOKEN_URL, mock_client

SECRET_ID = "a2a-mesh/clients/orchestrator"
INSTANT = Backoff(attempts=3, base=0.0, cap=0.0)


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


def provider(
    http: httpx.AsyncClient, backoff: Backoff = INSTANT
) -> ServiceTokenProvider:
    return ServiceTokenProvider(
        http,
        token_url=TOKEN_URL,
        client_id="orchestrator",
        secret_id=SECRET_ID,
        secrets=StaticSecretStore({SECRET_ID: "s3cret"}),
        scope="extractor-audience",
        dpop_key=DpopKey(),
        backoff=backoff,
    )


def issued(token: str) -> httpx.Response:
    body = {"access_token": token, "expires_in": 300, "token_type": "DPoP"}
    return httpx.Response(200, json=body)


def failure(kind: str) -> httpx.Response | Exception:
    errors: dict[str, httpx.Response | Exception] = {
        "connect-error": httpx.ConnectError("refused"),
        "closed-before-reply": httpx.RemoteProtocolError("server disconnected"),
        "502": httpx.Response(502, text="<h1>Bad gateway</h1>"),
        "503": httpx.Response(503, json={"error": "temporarily_unavailable"}),
        "504": httpx.Response(504, text="<h1>Gateway timeout</h1>"),
    }
    return errors[kind]


RETRYABLE = ["connect-error", "closed-before-reply", "502", "503", "504"]


@pytest.mark.parametrize("kind", RETRYABLE)
async def test_token_request_is_tried_again_until_it_succeeds(
    router: respx.MockRouter, http: httpx.AsyncClient, kind: str
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [failure(kind), failure(kind), issued("tok-1")]

    token = await provider(http).token()

    assert token == AccessToken("tok-1", "DPoP")
    assert route.call_count == 3
    # A proof is single-use: each try carries its own, each valid on its own.
    proofs = [
        ProofVerifier().verify(
            call.request.headers["dpop"], method="POST", url=TOKEN_URL
        )
        for call in route.calls
    ]
    assert len({proof.jti for proof in proofs}) == 3


async def test_token_retries_wait_the_backoff_between_tries(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [failure("502"), failure("502"), issued("tok-1")]

    started = time.monotonic()
    await provider(http, FixedBackoff(attempts=3, wait=0.05)).token()

    assert time.monotonic() - started >= 0.09


@pytest.mark.parametrize("kind", ["connect-error", "503"])
async def test_token_exhausted_retries_raise_dependency_unavailable(
    router: respx.MockRouter, http: httpx.AsyncClient, kind: str
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [failure(kind)] * INSTANT.attempts

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http).token()

    assert caught.value.dependency == "identity-provider"
    assert route.call_count == INSTANT.attempts


async def test_token_exhausted_retries_keep_the_last_transport_error_as_cause(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("closed"),
    ]

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http).token()

    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


@pytest.mark.parametrize(
    "reply",
    [
        httpx.ReadTimeout("the identity provider may still be working"),
        httpx.Response(500, json={"error": "server_error"}),
        httpx.Response(400, json={"error": "invalid_request"}),
        httpx.Response(429, json={"error": "slow_down"}),
    ],
    ids=["read-timeout", "500", "400", "429"],
)
async def test_token_other_failures_are_not_tried_again(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    reply: httpx.Response | Exception,
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [reply, issued("a second try would succeed")]

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http).token()

    assert caught.value.dependency == "identity-provider"
    assert route.call_count == 1


async def test_token_refused_secret_during_an_outage_is_still_read_again(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    # The 503s are tried again; the 401 after them still leads to the
    # secret being read once more, and that request is tried again too.
    route = router.post(TOKEN_URL)
    route.side_effect = [
        failure("503"),
        httpx.Response(401, json={"error": "unauthorized_client"}),
        failure("connect-error"),
        issued("tok-1"),
    ]

    token = await provider(http).token()

    assert token.value == "tok-1"
    assert route.call_count == 4
