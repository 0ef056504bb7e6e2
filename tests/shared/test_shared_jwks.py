"""JwksCache: which keys it keeps, when it refetches, and what it does when the
identity provider misbehaves. Time is a fake clock, never slept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

import shared.auth.jwks as jwks_module
from shared.auth.jwks import JwksCache
from tests.shared.kit import JWKS_URL, Clock, SigningKey, jwks, mock_client, rsa_key


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(jwks_module, "time", fake)
    return fake


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async with mock_client(router) as client:
        yield client


@pytest.fixture(scope="module")
def rotated_key() -> SigningKey:
    return rsa_key("rsa-2")


def cache(http: httpx.AsyncClient, **options: float) -> JwksCache:
    return JwksCache(http, JWKS_URL, **options)


async def test_jwks_skips_encryption_keys_and_unknown_key_types(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
    ec_signing_key: SigningKey,
) -> None:
    encryption = {**rsa_key("enc-1").public_jwk(), "use": "enc", "alg": "RSA-OAEP"}
    document = {
        "keys": [
            rsa_signing_key.public_jwk(),
            ec_signing_key.public_jwk(),
            encryption,
            {"kid": "oct-1", "kty": "oct", "k": "c2VjcmV0", "use": "sig"},
            {"kid": "okp-1", "kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "RSA", "use": "sig"},
            "not-an-object",
        ]
    }
    router.get(JWKS_URL).respond(json=document)
    keys = cache(http)

    await keys.refresh()

    rsa = await keys.get("rsa-1")
    ec = await keys.get("ec-1")
    assert rsa is not None and rsa.key_type == "RSA"
    assert ec is not None and ec.key_type == "EC"
    for skipped in ("enc-1", "oct-1", "okp-1"):
        assert await keys.get(skipped) is None


async def test_jwks_key_that_fails_to_load_is_skipped(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
) -> None:
    broken = {"kid": "broken", "kty": "RSA", "use": "sig", "n": "!!", "e": "AQAB"}
    router.get(JWKS_URL).respond(json={"keys": [broken, rsa_signing_key.public_jwk()]})
    keys = cache(http)

    await keys.refresh()

    assert await keys.get("broken") is None
    assert await keys.get("rsa-1") is not None


async def test_jwks_unknown_kid_triggers_refetch(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
    rotated_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL)
    route.side_effect = [
        httpx.Response(200, json=jwks(rsa_signing_key)),
        httpx.Response(200, json=jwks(rsa_signing_key, rotated_key)),
    ]
    keys = cache(http)
    await keys.refresh()
    clock.advance(11)

    found = await keys.get("rsa-2")

    assert found is not None
    assert route.call_count == 2


async def test_jwks_known_kid_is_served_without_fetch(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL).respond(json=jwks(rsa_signing_key))
    keys = cache(http)
    await keys.refresh()
    clock.advance(100)

    for _ in range(5):
        assert await keys.get("rsa-1") is not None

    assert route.call_count == 1


async def test_jwks_first_get_without_startup_fetch_loads_keys(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL).respond(json=jwks(rsa_signing_key))
    keys = cache(http)

    assert await keys.get("rsa-1") is not None
    assert keys.loaded
    assert route.call_count == 1


def slow_jwks(clock: Clock, document: dict[str, Any], *, takes: float) -> Any:
    """A JWKS response that yields to the event loop and lets ``takes`` pass."""

    async def respond(request: httpx.Request) -> httpx.Response:
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(takes)
        return httpx.Response(200, json=document)

    return respond


async def test_jwks_200_concurrent_unknown_kid_cause_one_fetch(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
    rotated_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL)
    route.side_effect = [
        httpx.Response(200, json=jwks(rsa_signing_key)),
        slow_jwks(clock, jwks(rsa_signing_key, rotated_key), takes=0.5),
    ]
    keys = cache(http)
    await keys.refresh()
    clock.advance(11)

    found = await asyncio.gather(*(keys.get("rsa-2") for _ in range(200)))

    assert all(key is not None for key in found)
    assert route.call_count == 2


async def test_jwks_200_concurrent_gets_on_cold_cache_cause_one_fetch(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL)
    route.side_effect = slow_jwks(clock, jwks(rsa_signing_key), takes=0.5)
    keys = cache(http)

    found = await asyncio.gather(*(keys.get("rsa-1") for _ in range(200)))

    assert all(key is not None for key in found)
    assert route.call_count == 1


async def test_jwks_concurrent_unknown_kid_share_a_fetch_slower_than_interval(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
    rotated_key: SigningKey,
) -> None:
    # The identity provider takes 15 s to answer (within the HTTP timeout):
    # the callers queued behind that fetch must use its result, not fetch again.
    route = router.get(JWKS_URL)
    route.side_effect = [
        httpx.Response(200, json=jwks(rsa_signing_key)),
        slow_jwks(clock, jwks(rsa_signing_key, rotated_key), takes=15),
        slow_jwks(clock, jwks(rsa_signing_key, rotated_key), takes=15),
    ]
    keys = cache(http, refresh_interval=10)
    await keys.refresh()
    clock.advance(11)

    found = await asyncio.gather(*(keys.get("rsa-2") for _ in range(200)))

    assert all(key is not None for key in found)
    assert route.call_count == 2


async def test_jwks_refetch_is_rate_limited_by_refresh_interval(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL).respond(json=jwks(rsa_signing_key))
    keys = cache(http, refresh_interval=10)
    await keys.refresh()

    clock.advance(5)
    assert await keys.get("unknown-1") is None
    assert await keys.get("unknown-2") is None
    assert route.call_count == 1

    clock.advance(6)
    assert await keys.get("unknown-3") is None
    assert route.call_count == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(503),
        httpx.Response(200, text="<html>maintenance</html>"),
    ],
    ids=["connect-error", "timeout", "http-503", "not-json"],
)
async def test_jwks_unreachable_idp_keeps_cached_keys(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
    failure: Exception | httpx.Response,
) -> None:
    route = router.get(JWKS_URL)
    route.side_effect = [httpx.Response(200, json=jwks(rsa_signing_key)), failure]
    keys = cache(http)
    await keys.refresh()
    clock.advance(11)

    assert await keys.get("rotated") is None

    assert route.call_count == 2
    assert keys.loaded
    assert await keys.get("rsa-1") is not None


async def test_jwks_keys_older_than_max_age_are_not_used(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL)
    route.side_effect = [
        httpx.Response(200, json=jwks(rsa_signing_key)),
        httpx.ConnectError("refused"),
    ]
    keys = cache(http, max_age=60)
    await keys.refresh()
    clock.advance(61)

    assert await keys.get("rsa-1") is None

    assert not keys.loaded
    assert route.call_count == 2


async def test_jwks_keys_older_than_max_age_are_refetched(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL).respond(json=jwks(rsa_signing_key))
    keys = cache(http, max_age=60)
    await keys.refresh()
    clock.advance(61)

    assert await keys.get("rsa-1") is not None

    assert keys.loaded
    assert route.call_count == 2


@pytest.mark.parametrize(
    "document",
    [[], {"keys": "none"}, {"nokeys": []}, {"keys": [1, "x", None]}],
    ids=["list", "keys-not-list", "no-keys-member", "entries-not-objects"],
)
async def test_jwks_malformed_document_yields_no_keys(
    router: respx.MockRouter, http: httpx.AsyncClient, clock: Clock, document: object
) -> None:
    router.get(JWKS_URL).respond(json=document)
    keys = cache(http)

    await keys.refresh()

    assert not keys.loaded
    assert await keys.get("rsa-1") is None


@pytest.mark.parametrize(
    "document",
    [[], {"keys": "none"}, {"error": "temporarily_unavailable"}],
    ids=["list", "keys-not-list", "no-keys-member"],
)
async def test_jwks_malformed_document_after_good_one_keeps_cached_keys(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
    document: object,
) -> None:
    route = router.get(JWKS_URL)
    route.side_effect = [
        httpx.Response(200, json=jwks(rsa_signing_key)),
        httpx.Response(200, json=document),
    ]
    keys = cache(http)
    await keys.refresh()
    clock.advance(11)

    assert await keys.get("rotated") is None

    assert route.call_count == 2
    assert await keys.get("rsa-1") is not None


async def test_jwks_valid_empty_key_set_replaces_cached_keys(
    router: respx.MockRouter,
    http: httpx.AsyncClient,
    clock: Clock,
    rsa_signing_key: SigningKey,
) -> None:
    route = router.get(JWKS_URL)
    route.side_effect = [
        httpx.Response(200, json=jwks(rsa_signing_key)),
        httpx.Response(200, json={"keys": []}),
    ]
    keys = cache(http)
    await keys.refresh()
    clock.advance(11)

    await keys.refresh(reason="test")

    assert route.call_count == 2
    assert not keys.loaded
