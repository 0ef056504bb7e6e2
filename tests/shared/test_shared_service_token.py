"""ServiceTokenProvider: caching, renewal, sharing, secret rotation, refusals."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import respx

import shared.auth.service_token as service_token_module
from shared.auth.dpop import DpopKey, ProofVerifier
from shared.auth.service_token import AccessToken, ServiceTokenProvider
from shared.errors import DependencyUnavailable
from shared.retry import Backoff
from shared.secrets import StaticSecretStore
from tests.shared.kit import TOKEN_URL, Clock, mock_client

CLIENT_ID = "orchestrator"
SECRET_ID = "a2a-mesh/clients/orchestrator"
# Tries of the identity provider, with no wait between them.
INSTANT = Backoff(attempts=3, base=0.0, cap=0.0)
DOWN = [httpx.ConnectError("down")] * INSTANT.attempts


class RotatingSecrets:
    """A secret store whose value changes once it is re-read after ``refresh``."""

    def __init__(self, *values: str) -> None:
        self._values = list(values)
        self.refreshed: list[str] = []

    async def get(self, secret_id: str) -> str:
        return self._values[0]

    def refresh(self, secret_id: str) -> None:
        self.refreshed.append(secret_id)
        if len(self._values) > 1:
            self._values.pop(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(service_token_module, "time", fake)
    return fake


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with mock_client(router) as client:
        yield client


def provider(
    http: httpx.AsyncClient,
    secrets: Any | None = None,
    *,
    scope: str | None = None,
    dpop_key: DpopKey | None = None,
) -> ServiceTokenProvider:
    return ServiceTokenProvider(
        http,
        token_url=TOKEN_URL,
        client_id=CLIENT_ID,
        secret_id=SECRET_ID,
        secrets=secrets or RotatingSecrets("s3cret-1"),
        renew_margin_seconds=30,
        scope=scope,
        dpop_key=dpop_key,
        backoff=INSTANT,
    )


def bearer(value: str) -> AccessToken:
    return AccessToken(value, "Bearer")


def issued(
    token: str,
    expires_in: int = 300,
    kind: str = "Bearer",
) -> httpx.Response:
    body = {"access_token": token, "expires_in": expires_in, "token_type": kind}
    return httpx.Response(200, json=body)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def test_token_is_cached(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL).mock(return_value=issued("tok-1"))
    tokens = provider(http)

    first = await tokens.token()
    clock.advance(60)
    second = await tokens.token()

    assert first == second == bearer("tok-1")
    assert route.call_count == 1


async def test_token_is_renewed_after_expiry_margin(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [issued("tok-1", 300), issued("tok-2", 300)]
    tokens = provider(http)
    await tokens.token()

    clock.advance(269)
    assert await tokens.token() == bearer("tok-1")

    clock.advance(2)
    assert await tokens.token() == bearer("tok-1")  # still valid; renewal starts
    await settle()
    assert await tokens.token() == bearer("tok-2")
    assert route.call_count == 2


async def test_token_short_lifetime_is_renewed_at_half_life(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [issued("tok-1", 20), issued("tok-2", 20)]
    tokens = provider(http)
    await tokens.token()

    clock.advance(9)
    assert await tokens.token() == bearer("tok-1")

    clock.advance(2)
    await tokens.token()
    await settle()
    assert await tokens.token() == bearer("tok-2")


async def test_token_concurrent_callers_share_one_request(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        for _ in range(5):
            await asyncio.sleep(0)
        return issued("tok-shared")

    route = router.post(TOKEN_URL).mock(side_effect=slow)
    tokens = provider(http)

    values = await asyncio.gather(*(tokens.token() for _ in range(50)))

    assert set(values) == {bearer("tok-shared")}
    assert route.call_count == 1


async def test_token_invalidate_forces_a_new_request(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [issued("tok-1"), issued("tok-2")]
    tokens = provider(http)
    await tokens.token()

    tokens.invalidate()

    assert await tokens.token() == bearer("tok-2")
    assert route.call_count == 2


async def test_token_request_uses_basic_auth_and_client_credentials_grant(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL).mock(return_value=issued("tok-1"))

    await provider(http, RotatingSecrets("s3cret-1")).token()

    sent = route.calls.last.request
    assert sent.headers["authorization"] == basic(CLIENT_ID, "s3cret-1")
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.content == b"grant_type=client_credentials"


async def test_token_refused_secret_is_refreshed_once_and_retried(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [
        httpx.Response(401, json={"error": "unauthorized_client"}),
        issued("tok-after-rotation"),
    ]
    secrets = RotatingSecrets("old-secret", "new-secret")

    token = await provider(http, secrets).token()

    assert token == bearer("tok-after-rotation")
    assert secrets.refreshed == [SECRET_ID]
    first, second = (call.request for call in route.calls)
    assert first.headers["authorization"] == basic(CLIENT_ID, "old-secret")
    assert second.headers["authorization"] == basic(CLIENT_ID, "new-secret")


async def test_token_still_refused_after_refresh_raises_dependency_unavailable(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL).mock(
        return_value=httpx.Response(401, json={"error": "unauthorized_client"})
    )
    secrets = RotatingSecrets("old-secret", "new-secret")

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http, secrets).token()

    assert caught.value.dependency == "identity-provider"
    assert caught.value.data == {"dependency": "identity-provider"}
    assert route.call_count == 2
    assert secrets.refreshed == [SECRET_ID]


@pytest.mark.parametrize("status", [400, 403, 429, 500])
async def test_token_other_refusal_raises_dependency_unavailable_without_retry(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock, status: int
) -> None:
    route = router.post(TOKEN_URL).mock(
        return_value=httpx.Response(status, json={"error": "invalid_request"})
    )
    secrets = RotatingSecrets("s3cret-1")

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http, secrets).token()

    assert caught.value.dependency == "identity-provider"
    assert route.call_count == 1
    assert secrets.refreshed == []


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(502, text="<html>Bad gateway</html>"),
        httpx.Response(500, json=["unexpected"]),
        httpx.Response(500, json={"error": {"nested": True}}),
    ],
    ids=["not-json", "json-list", "error-not-a-string"],
)
async def test_token_refusal_with_odd_body_raises_dependency_unavailable(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    response: httpx.Response,
) -> None:
    router.post(TOKEN_URL).mock(return_value=response)

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http).token()

    assert caught.value.dependency == "identity-provider"


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")],
    ids=["connect-error", "timeout"],
)
async def test_token_connection_error_raises_dependency_unavailable_identity_provider(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock, error: Exception
) -> None:
    router.post(TOKEN_URL).mock(side_effect=error)

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http).token()

    assert caught.value.dependency == "identity-provider"
    assert caught.value.code == -32013
    assert isinstance(caught.value.__cause__, httpx.TransportError)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>login</html>"),
        httpx.Response(200, json={"token_type": "Bearer", "expires_in": 300}),
        httpx.Response(200, json=["tok-1"]),
    ],
    ids=["not-json", "no-access-token", "not-an-object"],
)
async def test_token_malformed_success_reply_raises_dependency_unavailable(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    response: httpx.Response,
) -> None:
    router.post(TOKEN_URL).mock(return_value=response)

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http).token()

    assert caught.value.dependency == "identity-provider"


async def test_token_secret_unavailable_raises_dependency_unavailable(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http, StaticSecretStore({})).token()

    assert caught.value.dependency == "secrets-manager"


async def test_token_still_valid_is_used_while_the_provider_is_down(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL).mock(
        side_effect=[issued("tok-1"), *DOWN, issued("tok-2")]
    )
    tokens = provider(http)
    await tokens.token()

    clock.advance(280)  # past renewal (300 - 30), before expiry
    during_outage = await tokens.token()
    await settle()
    clock.advance(1)
    before_retry = await tokens.token()
    await settle()
    clock.advance(5)
    await tokens.token()
    await settle()
    after_retry = await tokens.token()

    assert [t.value for t in (during_outage, before_retry, after_retry)] == [
        "tok-1",
        "tok-1",
        "tok-2",
    ]
    assert route.call_count == 2 + INSTANT.attempts


async def test_expired_token_is_not_used_while_the_provider_is_down(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    router.post(TOKEN_URL).mock(side_effect=[issued("tok-1"), *DOWN])
    tokens = provider(http)
    await tokens.token()

    clock.advance(300)

    with pytest.raises(DependencyUnavailable) as raised:
        await tokens.token()
    assert raised.value.dependency == "identity-provider"


async def test_no_caller_waits_for_the_renewal_of_a_valid_token(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    release = asyncio.Event()
    answers = iter([issued("tok-1")])

    async def issue(request: httpx.Request) -> httpx.Response:
        first = next(answers, None)
        if first is not None:
            return first
        await release.wait()
        return issued("tok-2")

    route = router.post(TOKEN_URL).mock(side_effect=issue)
    tokens = provider(http)
    await tokens.token()
    clock.advance(280)

    during = [await asyncio.wait_for(tokens.token(), timeout=1) for _ in range(3)]
    release.set()
    await settle()

    assert during == [bearer("tok-1")] * 3
    assert await tokens.token() == bearer("tok-2")
    assert route.call_count == 2


async def test_token_request_for_an_audience_asks_for_its_scope(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL).mock(return_value=issued("tok-1"))

    await provider(http, scope="extractor-audience").token()

    assert route.calls.last.request.content == (
        b"grant_type=client_credentials&scope=extractor-audience"
    )


async def test_token_request_without_a_key_carries_no_proof(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL).mock(return_value=issued("tok-1"))

    await provider(http).token()

    assert "dpop" not in route.calls.last.request.headers


async def test_token_request_with_a_key_carries_a_proof_of_that_key(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    key = DpopKey()
    route = router.post(TOKEN_URL).mock(return_value=issued("tok-1", kind="DPoP"))

    await provider(http, dpop_key=key).token()

    # What the identity provider checks: the token endpoint, POST, no token yet.
    proof = ProofVerifier().verify(
        route.calls.last.request.headers["dpop"], method="POST", url=TOKEN_URL
    )
    assert proof.thumbprint == key.thumbprint


async def test_proof_names_the_public_token_endpoint_when_called_directly(
    router: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    public_url = (
        "https://mesh.example.com/realms/a2a-mesh/protocol/openid-connect/token"
    )
    route = router.post(TOKEN_URL).mock(return_value=issued("tok-1", kind="DPoP"))
    tokens = ServiceTokenProvider(
        http,
        token_url=TOKEN_URL,
        proof_url=public_url,
        client_id=CLIENT_ID,
        secret_id=SECRET_ID,
        secrets=RotatingSecrets("s3cret-1"),
        dpop_key=DpopKey(),
    )

    await tokens.token()

    # Sent to the internal address, the proof still names the public one,
    # which is the URL Keycloak compares it with.
    assert str(route.calls.last.request.url) == TOKEN_URL
    proof = route.calls.last.request.headers["dpop"]
    ProofVerifier().verify(proof, method="POST", url=public_url)


async def test_token_bound_to_the_key_is_sent_with_the_dpop_scheme(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    router.post(TOKEN_URL).mock(return_value=issued("tok-1", kind="DPoP"))

    token = await provider(http, dpop_key=DpopKey()).token()

    assert token == AccessToken("tok-1", "DPoP")


async def test_token_type_is_read_without_regard_to_case(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    router.post(TOKEN_URL).mock(return_value=issued("tok-1", kind="dpop"))

    token = await provider(http, dpop_key=DpopKey()).token()

    assert token.scheme == "DPoP"


async def test_token_not_bound_despite_the_key_raises_dependency_unavailable(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    # Every receiver would refuse it; better one clear failure here.
    router.post(TOKEN_URL).mock(return_value=issued("tok-1", kind="Bearer"))

    with pytest.raises(DependencyUnavailable) as caught:
        await provider(http, dpop_key=DpopKey()).token()

    assert caught.value.dependency == "identity-provider"
    assert caught.value.message == "token was not DPoP-bound"


async def test_every_token_request_carries_a_fresh_proof(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock
) -> None:
    route = router.post(TOKEN_URL)
    route.side_effect = [
        issued("tok-1", kind="DPoP"),
        issued("tok-2", kind="DPoP"),
    ]
    tokens = provider(http, dpop_key=DpopKey())
    await tokens.token()
    tokens.invalidate()
    await tokens.token()

    first, second = (
        jwt.decode(call.request.headers["dpop"], options={"verify_signature": False})
        for call in route.calls
    )
    assert first["jti"] != second["jti"]


async def settle() -> None:
    """Let a background renewal run to its end (the HTTP side is mocked)."""
    for _ in range(20):
        await asyncio.sleep(0)
