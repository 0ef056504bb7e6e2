"""TokenVerifier: one test per way a token is accepted or refused."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import respx

from shared.auth.dpop import DpopKey
from shared.auth.jwks import JwksCache
from shared.auth.principal import Principal
from shared.auth.verifier import TokenVerifier
from shared.errors import Unauthenticated
from tests.shared.kit import (
    AUDIENCE,
    ISSUER,
    JWKS_URL,
    SigningKey,
    b64_json,
    bound_claims,
    claims,
    hmac_signed,
    jwks,
    make_verifier,
    mock_client,
    rsa_key,
    sign,
    unsigned,
)


@pytest.fixture(scope="module")
def ps256_key() -> SigningKey:
    return rsa_key("ps-1", "PS256")


@pytest.fixture
async def keys(
    router: respx.MockRouter,
    rsa_signing_key: SigningKey,
    ec_signing_key: SigningKey,
    ps256_key: SigningKey,
) -> AsyncIterator[JwksCache]:
    router.get(JWKS_URL).respond(json=jwks(rsa_signing_key, ec_signing_key, ps256_key))
    async with mock_client(router) as http:
        cache = JwksCache(http, JWKS_URL)
        await cache.refresh()
        yield cache


@pytest.fixture
def verifier(keys: JwksCache) -> TokenVerifier:
    return make_verifier(keys)


async def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    assert caught.value.code == -32001
    assert caught.value.http_status == 401
    assert caught.value.data == {"reason": caught.value.reason}
    return caught.value.reason


async def test_verify_valid_rs256_token_returns_principal(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    payload = claims(realm_access={"roles": ["orchestrator", "viewer"]})

    principal = await verifier.verify(sign(rsa_signing_key, payload))

    assert principal == Principal(
        subject=payload["sub"],
        client_id="orchestrator",
        roles=frozenset({"orchestrator", "viewer"}),
        jti=payload["jti"],
        expires_at=payload["exp"],
        issued_at=payload["iat"],
        username="service-account-orchestrator",
        key_thumbprint=None,
    )


async def test_verify_valid_es256_token_returns_principal(
    verifier: TokenVerifier, ec_signing_key: SigningKey
) -> None:
    principal = await verifier.verify(sign(ec_signing_key))

    assert principal.client_id == "orchestrator"
    assert principal.roles == frozenset({"orchestrator"})


async def test_verify_valid_ps256_token_returns_principal(
    verifier: TokenVerifier, ps256_key: SigningKey
) -> None:
    principal = await verifier.verify(sign(ps256_key))

    assert principal.roles == frozenset({"orchestrator"})


async def test_verify_token_without_realm_access_has_no_roles(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    principal = await verifier.verify(sign(rsa_signing_key, claims(realm_access=None)))

    assert principal.roles == frozenset()


async def test_verify_token_keeps_only_string_roles(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    payload = claims(realm_access={"roles": ["viewer", 7, None, {"x": 1}]})

    principal = await verifier.verify(sign(rsa_signing_key, payload))

    assert principal.roles == frozenset({"viewer"})


@pytest.mark.parametrize("roles", ["admin", {"admin": True}], ids=["string", "object"])
async def test_verify_roles_claim_not_a_list_gives_no_roles(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, roles: object
) -> None:
    payload = claims(realm_access={"roles": roles})

    principal = await verifier.verify(sign(rsa_signing_key, payload))

    assert principal.roles == frozenset()


async def test_verify_token_without_azp_uses_client_id_claim(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    payload = claims(azp=None, client_id="lambda")

    principal = await verifier.verify(sign(rsa_signing_key, payload))

    assert principal.client_id == "lambda"


async def test_verify_token_without_azp_or_client_id_raises_missing_claim(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(azp=None))

    assert await refusal(verifier, token) == "missing_claim"


async def test_verify_expired_token_raises_unauthenticated_expired(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    past = int(time.time()) - 3600
    token = sign(rsa_signing_key, claims(iat=past - 300, exp=past))

    assert await refusal(verifier, token) == "expired"


async def test_verify_token_expired_within_leeway_returns_principal(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(exp=int(time.time()) - 5))

    principal = await verifier.verify(token)

    assert principal.client_id == "orchestrator"


async def test_verify_token_with_future_nbf_raises_not_yet_valid(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(nbf=int(time.time()) + 3600))

    assert await refusal(verifier, token) == "not_yet_valid"


async def test_verify_token_issued_in_the_future_raises_not_yet_valid(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(iat=int(time.time()) + 3600))

    assert await refusal(verifier, token) == "not_yet_valid"


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "tomorrow"), ("iat", "now"), ("nbf", [1]), ("sub", 42)],
)
async def test_verify_claim_of_wrong_type_raises_invalid_token(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, claim: str, value: object
) -> None:
    token = sign(rsa_signing_key, claims(**{claim: value}))

    assert await refusal(verifier, token) == "invalid_token"


async def test_verify_wrong_issuer_raises_wrong_issuer(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(iss="https://evil.test/realms/a2a-mesh"))

    assert await refusal(verifier, token) == "wrong_issuer"


async def test_verify_wrong_audience_raises_wrong_audience(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(aud="archivist"))

    assert await refusal(verifier, token) == "wrong_audience"


async def test_verify_audience_list_without_ours_raises_wrong_audience(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(aud=["archivist", "account"]))

    assert await refusal(verifier, token) == "wrong_audience"


async def test_verify_audience_list_containing_ours_returns_principal(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(aud=["account", AUDIENCE]))

    principal = await verifier.verify(token)

    assert principal.client_id == "orchestrator"


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub", "jti"])
async def test_verify_token_missing_required_claim_raises_missing_claim(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, claim: str
) -> None:
    token = sign(rsa_signing_key, claims(**{claim: None}))

    assert await refusal(verifier, token) == "missing_claim"


@pytest.mark.parametrize("jti", ["", 42, "x" * 257], ids=["empty", "number", "long"])
async def test_verify_token_whose_jti_cannot_name_it_is_refused(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, jti: object
) -> None:
    # A token that cannot be named cannot be revoked.
    token = sign(rsa_signing_key, claims(jti=jti))

    assert await refusal(verifier, token) == "invalid_token"


async def test_verify_token_signed_by_another_key_raises_bad_signature(
    verifier: TokenVerifier, stranger_key: SigningKey
) -> None:
    assert await refusal(verifier, sign(stranger_key)) == "bad_signature"


async def test_verify_token_with_tampered_payload_raises_bad_signature(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    header, _, signature = sign(rsa_signing_key).split(".")
    forged = b64_json(claims(realm_access={"roles": ["admin"]}))

    assert await refusal(verifier, f"{header}.{forged}.{signature}") == (
        "bad_signature"
    )


async def test_verify_unknown_kid_raises_unknown_key(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, headers={"kid": "rotated-away"})

    assert await refusal(verifier, token) == "unknown_key"


@pytest.mark.parametrize("header", [{}, {"kid": ""}], ids=["absent", "empty"])
async def test_verify_token_without_usable_kid_raises_unknown_key(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, header: dict[str, Any]
) -> None:
    token = sign(rsa_signing_key, headers=header)

    assert await refusal(verifier, token) == "unknown_key"


async def test_verify_non_string_kid_raises_malformed_token(
    verifier: TokenVerifier,
) -> None:
    token = unsigned({"alg": "RS256", "typ": "JWT", "kid": 5}, claims())

    assert await refusal(verifier, token) == "malformed_token"


async def test_verify_token_with_a_critical_header_extension_is_refused(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    # RFC 7515 4.1.11: an extension marked critical that we do not know is a no.
    token = jwt.encode(
        claims(),
        rsa_signing_key.private,
        algorithm="RS256",
        headers={"kid": rsa_signing_key.kid, "crit": ["exp"], "exp": 1},
    )

    assert await refusal(verifier, token) == "malformed_token"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_verify_alg_none_raises_algorithm_not_allowed(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, alg: str
) -> None:
    token = unsigned({"alg": alg, "typ": "JWT", "kid": rsa_signing_key.kid}, claims())

    assert await refusal(verifier, token) == "algorithm_not_allowed"


async def test_verify_hs256_keyed_with_public_pem_raises_algorithm_not_allowed(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_signing_key.kid}
    token = hmac_signed(rsa_signing_key.public_pem(), header, claims())

    assert await refusal(verifier, token) == "algorithm_not_allowed"


async def test_verify_es256_header_with_rsa_kid_raises_algorithm_not_allowed(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, ec_signing_key: SigningKey
) -> None:
    token = sign(ec_signing_key, headers={"kid": rsa_signing_key.kid})

    assert await refusal(verifier, token) == "algorithm_not_allowed"


async def test_verify_rs256_header_with_ec_kid_raises_algorithm_not_allowed(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, ec_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, headers={"kid": ec_signing_key.kid})

    assert await refusal(verifier, token) == "algorithm_not_allowed"


async def test_verify_algorithm_outside_allow_list_raises_algorithm_not_allowed(
    keys: JwksCache, ec_signing_key: SigningKey
) -> None:
    verifier = make_verifier(keys, algorithms=("RS256",))

    assert await refusal(verifier, sign(ec_signing_key)) == "algorithm_not_allowed"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        f"{b64_json([1, 2])}.{b64_json({})}.",
        "eyJhbGciOiJSUzI1NiJ9",
    ],
    ids=["empty", "one-part", "garbage-parts", "header-not-object", "header-only"],
)
async def test_verify_malformed_token_raises_malformed_token(
    verifier: TokenVerifier, token: str
) -> None:
    assert await refusal(verifier, token) == "malformed_token"


async def test_verify_undecodable_payload_raises_malformed_token(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    header, _, signature = sign(rsa_signing_key).split(".")

    assert await refusal(verifier, f"{header}.!!!.{signature}") == "malformed_token"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
async def test_verify_time_claim_given_as_a_string_is_invalid_token(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, claim: str
) -> None:
    payload = claims()
    payload[claim] = str(int(payload.get(claim) or payload["iat"]))

    assert await refusal(verifier, sign(rsa_signing_key, payload)) == "invalid_token"


async def test_verify_token_living_longer_than_the_maximum_raises_lifetime_too_long(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    now = int(time.time())
    token = sign(rsa_signing_key, claims(iat=now, exp=now + 3601))

    assert await refusal(verifier, token) == "lifetime_too_long"


async def test_verify_token_living_exactly_the_maximum_returns_principal(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    now = int(time.time())
    token = sign(rsa_signing_key, claims(iat=now, exp=now + 3600))

    principal = await verifier.verify(token)

    assert (principal.issued_at, principal.expires_at) == (now, now + 3600)


async def test_verify_maximum_lifetime_comes_from_the_verifier(
    keys: JwksCache, rsa_signing_key: SigningKey
) -> None:
    verifier = TokenVerifier(
        keys,
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
        max_lifetime_seconds=300,
    )
    now = int(time.time())
    token = sign(rsa_signing_key, claims(iat=now, exp=now + 301))

    assert await refusal(verifier, token) == "lifetime_too_long"


async def test_verify_bound_token_carries_the_key_thumbprint(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    key = DpopKey()

    principal = await verifier.verify(sign(rsa_signing_key, bound_claims(key)))

    assert principal.key_thumbprint == key.thumbprint


async def test_verify_bound_token_of_type_dpop_returns_principal(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    # Keycloak types its DPoP-bound access tokens "DPoP".
    key = DpopKey()
    token = sign(rsa_signing_key, bound_claims(key, typ="DPoP"))

    principal = await verifier.verify(token)

    assert principal.key_thumbprint == key.thumbprint


async def test_verify_token_of_type_dpop_without_a_key_raises_invalid_token(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    # Taken as unbound, it would pass where bearer tokens are accepted.
    token = sign(rsa_signing_key, claims(typ="DPoP"))

    assert await refusal(verifier, token) == "invalid_token"


@pytest.mark.parametrize("typ", ["ID", "Refresh", "Logout"])
async def test_verify_token_that_is_not_an_access_token_raises_invalid_token(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, typ: str
) -> None:
    token = sign(rsa_signing_key, claims(typ=typ))

    assert await refusal(verifier, token) == "invalid_token"


@pytest.mark.parametrize(
    "cnf",
    [{}, {"jkt": ""}, {"jkt": 7}, "jkt", {"x5t#S256": ""}, {"other": "abc"}],
    ids=[
        "empty",
        "blank-jkt",
        "jkt-not-a-string",
        "not-an-object",
        "blank-certificate",
        "unknown-method",
    ],
)
async def test_verify_confirmation_that_names_no_key_raises_invalid_token(
    verifier: TokenVerifier, rsa_signing_key: SigningKey, cnf: object
) -> None:
    # Read as "unbound", such a token would pass as a bearer token.
    token = sign(rsa_signing_key, claims(cnf=cnf))

    assert await refusal(verifier, token) == "invalid_token"


async def test_verify_certificate_confirmation_is_read_for_the_gate(
    verifier: TokenVerifier, rsa_signing_key: SigningKey
) -> None:
    token = sign(rsa_signing_key, claims(cnf={"x5t#S256": "thumb"}))

    principal = await verifier.verify(token)

    assert (principal.certificate_thumbprint, principal.key_thumbprint) == (
        "thumb",
        None,
    )
