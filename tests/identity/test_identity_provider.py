"""The identity stand-in end to end over ASGI: discovery, JWKS and tokens."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from pydantic import ValidationError

from services.identity.app import IdentityState, create_app
from services.identity.clients import ClientSecrets
from services.identity.dpop import TokenRequestProofs, UsedProofs, UsedProofsFull
from services.identity.keys import RealmKeys, generate_keys, jwk_thumbprint
from services.identity.realm import DEFAULT_REALM_FILE, RealmError, load_realm
from services.identity.settings import IdentitySettings
from shared.auth.dpop import DpopKey, b64url_sha256
from shared.errors import DependencyUnavailable
from shared.peer_certificate import PEER_CERTIFICATE
from shared.secrets import StaticSecretStore

REALM = "a2a-mesh"
PUBLIC_URL = "http://idp.test:8080"
ISSUER = f"{PUBLIC_URL}/realms/{REALM}"
TOKEN_PATH = f"/realms/{REALM}/protocol/openid-connect/token"
TOKEN_URL = f"{ISSUER}/protocol/openid-connect/token"
PREFIX = "a2a-mesh/clients/"
CLIENT_IDS = [
    "orchestrator",
    "extractor",
    "validator",
    "archivist",
    "mesh-admin",
    "lambda-trigger",
    "document-processor",
    "viewer",
    "no-roles",
]
SECRETS = {f"{PREFIX}{cid}": f"secret-of-{cid}" for cid in CLIENT_IDS}
INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "Invalid client or Invalid client credentials",
}
UNSUPPORTED_GRANT = {
    "error": "unsupported_grant_type",
    "error_description": "Unsupported grant_type",
}


def invalid_dpop_proof(description: str) -> dict[str, str]:
    return {"error": "invalid_dpop_proof", "error_description": description}


class RecordingStore:
    """A ``SecretStore`` whose values can change, counting reads and refreshes."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.reads = 0
        self.refreshes = 0

    async def get(self, secret_id: str) -> str:
        self.reads += 1
        try:
            return self.values[secret_id]
        except KeyError:
            raise DependencyUnavailable("secrets-manager") from None

    def refresh(self, secret_id: str) -> None:
        self.refreshes += 1


@pytest.fixture(scope="module")
def keys() -> RealmKeys:
    return generate_keys()


def make_settings(
    realm_file: Path = DEFAULT_REALM_FILE, refresh_interval: float = 5.0
) -> IdentitySettings:
    return IdentitySettings(
        public_url=PUBLIC_URL,
        realm_file=realm_file,
        secrets_prefix=PREFIX,
        secret_refresh_interval=refresh_interval,
    )


def form(client_id: str, secret: str | None = None) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret if secret is not None else f"secret-of-{client_id}",
    }


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def client_for(
    app: Any, host: str = "127.0.0.1", base_url: str = "http://idp.test"
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 50123))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
async def idp(keys: RealmKeys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(), StaticSecretStore(SECRETS), keys=keys)
    async with client_for(app) as client:
        yield client


async def request_token(
    idp: httpx.AsyncClient,
    client_id: str,
    *,
    scope: str | None = None,
    key: DpopKey | None = None,
) -> httpx.Response:
    """A token request, naming ``scope`` and with a proof of ``key`` if given."""
    data = form(client_id) | ({} if scope is None else {"scope": scope})
    headers = {} if key is None else {"DPoP": key.proof("POST", TOKEN_URL)}
    return await idp.post(TOKEN_PATH, data=data, headers=headers)


def claims_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    return jwt.decode(
        response.json()["access_token"], options={"verify_signature": False}
    )


async def token_claims(
    idp: httpx.AsyncClient,
    client_id: str,
    *,
    scope: str | None = None,
    key: DpopKey | None = None,
) -> dict[str, Any]:
    return claims_of(await request_token(idp, client_id, scope=scope, key=key))


async def test_health_returns_ok(idp: httpx.AsyncClient) -> None:
    response = await idp.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_discovery_names_issuer_endpoints_and_methods(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.get(f"/realms/{REALM}/.well-known/openid-configuration")

    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == ISSUER
    assert document["token_endpoint"] == f"{ISSUER}/protocol/openid-connect/token"
    assert document["jwks_uri"] == f"{ISSUER}/protocol/openid-connect/certs"
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]


async def test_discovery_advertises_dpop_proof_algorithms(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.get(f"/realms/{REALM}/.well-known/openid-configuration")

    assert response.json()["dpop_signing_alg_values_supported"] == [
        "ES256",
        "RS256",
        "PS256",
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/realms/other/.well-known/openid-configuration"),
        ("GET", "/realms/other/protocol/openid-connect/certs"),
        ("POST", "/realms/other/protocol/openid-connect/token"),
    ],
)
async def test_unknown_realm_returns_keycloak_404(
    idp: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await idp.request(method, path, data=form("orchestrator"))

    assert response.status_code == 404
    assert response.json() == {"error": "Realm does not exist"}


async def test_certs_publish_one_signing_key_and_one_encryption_key(
    idp: httpx.AsyncClient, keys: RealmKeys
) -> None:
    response = await idp.get(f"/realms/{REALM}/protocol/openid-connect/certs")

    assert response.status_code == 200
    by_use = {jwk["use"]: jwk for jwk in response.json()["keys"]}
    assert sorted(by_use) == ["enc", "sig"]

    sig = by_use["sig"]
    assert sig["kty"] == "RSA"
    assert sig["alg"] == "RS256"
    assert sig["kid"] == keys.kid == jwk_thumbprint(n=sig["n"], e=sig["e"])
    assert sig["e"] == "AQAB"
    assert "d" not in sig

    enc = by_use["enc"]
    assert enc["alg"] == "RSA-OAEP"
    assert enc["kid"] != sig["kid"]
    assert "d" not in enc


async def test_token_via_form_returns_keycloak_response(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.post(TOKEN_PATH, data=form("document-processor"))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "access_token",
        "expires_in",
        "refresh_expires_in",
        "token_type",
        "not-before-policy",
        "scope",
    }
    assert body["expires_in"] == 300
    assert body["refresh_expires_in"] == 0
    assert body["token_type"] == "Bearer"
    assert body["not-before-policy"] == 0
    assert body["scope"] == "profile email"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


async def test_token_via_basic_decodes_form_urlencoded_credentials(
    keys: RealmKeys,
) -> None:
    awkward = "p:a+s%s/w é"
    store = StaticSecretStore({**SECRETS, f"{PREFIX}viewer": awkward})
    app = create_app(make_settings(), store, keys=keys)

    async with client_for(app) as idp:
        response = await idp.post(
            TOKEN_PATH,
            data={"grant_type": "client_credentials"},
            headers=basic("viewer", awkward),
        )

    assert response.status_code == 200
    claims = jwt.decode(
        response.json()["access_token"], options={"verify_signature": False}
    )
    assert claims["azp"] == "viewer"


async def test_token_signature_verifies_against_jwks(idp: httpx.AsyncClient) -> None:
    jwks = (await idp.get(f"/realms/{REALM}/protocol/openid-connect/certs")).json()
    signing = next(jwk for jwk in jwks["keys"] if jwk["use"] == "sig")
    response = await idp.post(TOKEN_PATH, data=form("document-processor"))
    token = response.json()["access_token"]

    claims = jwt.decode(
        token,
        jwt.PyJWK(signing).key,
        algorithms=["RS256"],
        audience="orchestrator",
        issuer=ISSUER,
    )

    assert jwt.get_unverified_header(token) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": signing["kid"],
    }
    assert claims["aud"] == "orchestrator"
    assert claims["realm_access"] == {"roles": ["document-processor"]}


async def test_token_claims_have_keycloak_shape(idp: httpx.AsyncClient) -> None:
    claims = await token_claims(idp, "lambda-trigger")

    assert claims["exp"] - claims["iat"] == 300
    assert claims["iss"] == ISSUER
    assert claims["typ"] == "Bearer"
    assert claims["azp"] == "lambda-trigger"
    assert claims["client_id"] == "lambda-trigger"
    assert claims["preferred_username"] == "service-account-lambda-trigger"
    assert claims["scope"] == "profile email"
    assert claims["email_verified"] is False
    assert claims["clientHost"] == "127.0.0.1"
    assert claims["clientAddress"] == "127.0.0.1"
    assert len(claims["jti"]) == 36
    assert "resource_access" not in claims
    assert "cnf" not in claims


async def test_token_subject_is_stable_and_distinct_per_client(
    idp: httpx.AsyncClient,
) -> None:
    first = await token_claims(idp, "lambda-trigger")
    second = await token_claims(idp, "lambda-trigger")
    other = await token_claims(idp, "viewer")

    assert first["sub"] == second["sub"]
    assert first["jti"] != second["jti"]
    assert other["sub"] != first["sub"]


async def test_token_with_one_audience_carries_it_as_a_string(
    idp: httpx.AsyncClient,
) -> None:
    claims = await token_claims(idp, "document-processor")

    assert claims["aud"] == "orchestrator"
    assert claims["realm_access"] == {"roles": ["document-processor"]}


async def test_token_of_admin_without_scope_names_only_the_orchestrator(
    idp: httpx.AsyncClient,
) -> None:
    claims = await token_claims(idp, "mesh-admin")

    assert claims["aud"] == "orchestrator"
    assert claims["scope"] == "profile email"
    assert claims["realm_access"] == {"roles": ["admin"]}


async def test_token_without_realm_roles_omits_realm_access(
    idp: httpx.AsyncClient,
) -> None:
    claims = await token_claims(idp, "no-roles")

    assert claims["aud"] == "orchestrator"
    assert "realm_access" not in claims


async def test_token_of_agent_without_audience_mappers_has_no_aud(
    idp: httpx.AsyncClient,
) -> None:
    claims = await token_claims(idp, "extractor", key=DpopKey())

    assert "aud" not in claims
    assert "realm_access" not in claims


async def test_token_with_one_scope_names_that_service_only(
    idp: httpx.AsyncClient,
) -> None:
    claims = await token_claims(
        idp, "orchestrator", scope="extractor-audience", key=DpopKey()
    )

    assert claims["aud"] == "extractor"
    assert claims["realm_access"] == {"roles": ["orchestrator"]}


async def test_token_with_two_scopes_names_both_services_as_a_list(
    idp: httpx.AsyncClient,
) -> None:
    claims = await token_claims(
        idp,
        "orchestrator",
        scope="extractor-audience archivist-audience",
        key=DpopKey(),
    )

    assert claims["aud"] == ["extractor", "archivist"]


async def test_token_with_scope_adds_it_to_the_default_audience(
    idp: httpx.AsyncClient,
) -> None:
    claims = await token_claims(idp, "mesh-admin", scope="validator-audience")

    assert claims["aud"] == ["orchestrator", "validator"]


async def test_token_of_scoped_client_without_scope_has_no_aud(
    idp: httpx.AsyncClient,
) -> None:
    claims = await token_claims(idp, "orchestrator", key=DpopKey())

    assert "aud" not in claims


async def test_token_scope_lists_the_granted_optional_scopes(
    idp: httpx.AsyncClient,
) -> None:
    response = await request_token(
        idp, "orchestrator", scope="validator-audience", key=DpopKey()
    )

    assert response.json()["scope"] == "profile email validator-audience"
    assert claims_of(response)["scope"] == "profile email validator-audience"


async def test_token_with_built_in_scopes_only_is_issued_as_without(
    idp: httpx.AsyncClient,
) -> None:
    response = await request_token(idp, "viewer", scope="openid profile email")

    assert response.json()["scope"] == "profile email"
    assert claims_of(response)["aud"] == "orchestrator"


@pytest.mark.parametrize(
    ("client_id", "scope"),
    [
        ("viewer", "extractor-audience"),
        ("mesh-admin", "validator-audience superuser"),
        ("mesh-admin", "orchestrator-audience"),
    ],
)
async def test_token_with_scope_not_offered_to_client_returns_400_invalid_scope(
    idp: httpx.AsyncClient, client_id: str, scope: str
) -> None:
    response = await request_token(idp, client_id, scope=scope)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_scope",
        "error_description": f"Invalid scopes: {scope}",
    }


async def test_token_for_dpop_bound_client_without_proof_returns_400(
    idp: httpx.AsyncClient,
) -> None:
    response = await request_token(idp, "orchestrator", scope="extractor-audience")

    assert response.status_code == 400
    assert response.json() == invalid_dpop_proof("DPoP proof is missing")
    assert response.headers["cache-control"] == "no-store"


async def test_token_with_good_proof_is_bound_to_the_key(
    idp: httpx.AsyncClient,
) -> None:
    key = DpopKey()

    response = await request_token(idp, "orchestrator", key=key)

    assert response.json()["token_type"] == "DPoP"
    claims = claims_of(response)
    assert claims["cnf"] == {"jkt": key.thumbprint}
    assert claims["typ"] == "DPoP"


async def test_token_for_unbound_client_with_proof_is_bound_too(
    idp: httpx.AsyncClient,
) -> None:
    key = DpopKey()

    response = await request_token(idp, "document-processor", key=key)

    assert response.json()["token_type"] == "DPoP"
    assert claims_of(response)["cnf"] == {"jkt": key.thumbprint}


@pytest.mark.parametrize(
    "url",
    [
        f"{ISSUER}/protocol/openid-connect/certs",
        # Where the request went by its Host header: the issuer's URL counts.
        f"http://idp.test{TOKEN_PATH}",
    ],
)
async def test_token_with_proof_for_another_url_returns_400(
    idp: httpx.AsyncClient, url: str
) -> None:
    proof = DpopKey().proof("POST", url)

    response = await idp.post(
        TOKEN_PATH, data=form("orchestrator"), headers={"DPoP": proof}
    )

    assert response.status_code == 400
    assert response.json() == invalid_dpop_proof("DPoP HTTP URL mismatch")


async def test_token_with_proof_for_another_method_returns_400(
    idp: httpx.AsyncClient,
) -> None:
    proof = DpopKey().proof("GET", TOKEN_URL)

    response = await idp.post(
        TOKEN_PATH, data=form("orchestrator"), headers={"DPoP": proof}
    )

    assert response.status_code == 400
    assert response.json() == invalid_dpop_proof("DPoP HTTP method mismatch")


async def test_token_with_stale_proof_returns_400(idp: httpx.AsyncClient) -> None:
    proof = DpopKey().proof("POST", TOKEN_URL, issued_at=int(time.time()) - 120)

    response = await idp.post(
        TOKEN_PATH, data=form("orchestrator"), headers={"DPoP": proof}
    )

    assert response.status_code == 400
    assert response.json() == invalid_dpop_proof("DPoP proof is not active")


async def test_token_with_replayed_proof_returns_400(idp: httpx.AsyncClient) -> None:
    headers = {"DPoP": DpopKey().proof("POST", TOKEN_URL)}

    first = await idp.post(TOKEN_PATH, data=form("orchestrator"), headers=headers)
    second = await idp.post(TOKEN_PATH, data=form("orchestrator"), headers=headers)

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json() == invalid_dpop_proof("DPoP proof has already been used")


async def test_token_with_private_key_in_proof_returns_400(
    idp: httpx.AsyncClient,
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private, as_dict=True)
    assert "d" in jwk
    claims = {
        "jti": uuid.uuid4().hex,
        "htm": "POST",
        "htu": TOKEN_URL,
        "iat": int(time.time()),
    }
    proof = jwt.encode(
        claims, private, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk}
    )

    response = await idp.post(
        TOKEN_PATH, data=form("orchestrator"), headers={"DPoP": proof}
    )

    assert response.status_code == 400
    assert response.json() == invalid_dpop_proof("Invalid key in DPoP header")


async def test_token_with_two_proofs_returns_400(idp: httpx.AsyncClient) -> None:
    key = DpopKey()
    headers = [
        ("DPoP", key.proof("POST", TOKEN_URL)),
        ("DPoP", key.proof("POST", TOKEN_URL)),
    ]

    response = await idp.post(TOKEN_PATH, data=form("orchestrator"), headers=headers)

    assert response.status_code == 400
    assert response.json() == invalid_dpop_proof("Multiple DPoP proofs")


async def test_token_with_bad_secret_and_bad_proof_returns_401_invalid_client(
    idp: httpx.AsyncClient,
) -> None:
    proof = DpopKey().proof("GET", TOKEN_URL)

    response = await idp.post(
        TOKEN_PATH, data=form("orchestrator", "wrong"), headers={"DPoP": proof}
    )

    assert response.status_code == 401
    assert response.json() == INVALID_CLIENT


async def test_token_when_used_proofs_are_full_returns_503(keys: RealmKeys) -> None:
    app = create_app(make_settings(), StaticSecretStore(SECRETS), keys=keys)
    state: IdentityState = app.state.identity
    state.proofs = TokenRequestProofs(UsedProofs(capacity=1))

    async with client_for(app) as idp:
        first = await request_token(idp, "orchestrator", key=DpopKey())
        second = await request_token(idp, "orchestrator", key=DpopKey())

    assert first.status_code == 200
    assert second.status_code == 503
    assert second.json() == {
        "error": "temporarily_unavailable",
        "error_description": "DPoP proofs cannot be checked now",
    }


async def test_token_with_bad_secret_returns_401_invalid_client(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.post(TOKEN_PATH, data=form("orchestrator", "wrong"))

    assert response.status_code == 401
    assert response.json() == INVALID_CLIENT
    assert response.headers["cache-control"] == "no-store"


async def test_token_with_bad_basic_secret_returns_401_invalid_client(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers=basic("orchestrator", "wrong"),
    )

    assert response.status_code == 401
    assert response.json() == INVALID_CLIENT


async def test_token_for_unknown_client_returns_401_invalid_client(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.post(TOKEN_PATH, data=form("nobody", "anything"))

    assert response.status_code == 401
    assert response.json() == INVALID_CLIENT


@pytest.mark.parametrize(
    "data",
    [
        {"grant_type": "client_credentials"},
        {"grant_type": "client_credentials", "client_id": "orchestrator"},
        {"grant_type": "client_credentials", "client_secret": "x"},
    ],
)
async def test_token_without_credentials_returns_401_invalid_client(
    idp: httpx.AsyncClient, data: dict[str, str]
) -> None:
    response = await idp.post(TOKEN_PATH, data=data)

    assert response.status_code == 401
    assert response.json() == INVALID_CLIENT


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode()],
)
async def test_token_with_malformed_basic_returns_401_invalid_client(
    idp: httpx.AsyncClient, authorization: str
) -> None:
    response = await idp.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": authorization},
    )

    assert response.status_code == 401
    assert response.json() == INVALID_CLIENT


async def test_token_with_basic_and_other_form_client_returns_401(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_id": "mesh-admin"},
        headers=basic("viewer", "secret-of-viewer"),
    )

    assert response.status_code == 401
    assert response.json() == INVALID_CLIENT


async def test_token_without_grant_type_returns_400_unsupported(
    idp: httpx.AsyncClient,
) -> None:
    data = form("orchestrator")
    del data["grant_type"]

    response = await idp.post(TOKEN_PATH, data=data)

    assert response.status_code == 400
    assert response.json() == UNSUPPORTED_GRANT


async def test_token_with_password_grant_returns_400_unsupported(
    idp: httpx.AsyncClient,
) -> None:
    data = form("orchestrator") | {"grant_type": "password", "username": "u"}

    response = await idp.post(TOKEN_PATH, data=data)

    assert response.status_code == 400
    assert response.json() == UNSUPPORTED_GRANT


async def test_token_with_json_body_returns_400_unsupported(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.post(TOKEN_PATH, json=form("orchestrator"))

    assert response.status_code == 400
    assert response.json() == UNSUPPORTED_GRANT


async def test_token_with_repeated_parameter_returns_400_invalid_request(
    idp: httpx.AsyncClient,
) -> None:
    body = "grant_type=client_credentials&client_id=viewer&client_id=mesh-admin"

    response = await idp.post(
        TOKEN_PATH,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "duplicated parameter",
    }


async def test_token_with_oversized_form_returns_400_invalid_request(
    idp: httpx.AsyncClient,
) -> None:
    response = await idp.post(TOKEN_PATH, data=form("viewer") | {"pad": "x" * 20000})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def write_realm(tmp_path: Path, change: dict[str, dict[str, Any]]) -> Path:
    raw = json.loads(DEFAULT_REALM_FILE.read_text(encoding="utf-8"))
    for client in raw["clients"]:
        client.update(change.get(client["clientId"], {}))
    path = tmp_path / "realm.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


async def test_token_for_client_without_service_account_returns_400(
    tmp_path: Path, keys: RealmKeys
) -> None:
    realm_file = write_realm(tmp_path, {"viewer": {"serviceAccountsEnabled": False}})
    app = create_app(make_settings(realm_file), StaticSecretStore(SECRETS), keys=keys)

    async with client_for(app) as idp:
        response = await idp.post(TOKEN_PATH, data=form("viewer"))

    assert response.status_code == 400
    assert response.json() == {
        "error": "unauthorized_client",
        "error_description": "Client not enabled to retrieve service account",
    }


async def test_token_for_disabled_client_returns_401_invalid_client(
    tmp_path: Path, keys: RealmKeys
) -> None:
    realm_file = write_realm(tmp_path, {"viewer": {"enabled": False}})
    app = create_app(make_settings(realm_file), StaticSecretStore(SECRETS), keys=keys)

    async with client_for(app) as idp:
        response = await idp.post(TOKEN_PATH, data=form("viewer"))

    assert response.status_code == 401
    assert response.json() == INVALID_CLIENT


async def test_token_when_secret_store_fails_returns_503(keys: RealmKeys) -> None:
    app = create_app(make_settings(), StaticSecretStore({}), keys=keys)

    async with client_for(app) as idp:
        response = await idp.post(TOKEN_PATH, data=form("viewer"))

    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"


async def test_token_over_http_from_external_address_returns_403(
    keys: RealmKeys,
) -> None:
    app = create_app(make_settings(), StaticSecretStore(SECRETS), keys=keys)

    async with client_for(app, host="100.64.0.7") as idp:
        response = await idp.post(TOKEN_PATH, data=form("viewer"))

    assert response.status_code == 403
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "HTTPS required",
    }


async def test_token_over_https_from_external_address_is_issued(
    keys: RealmKeys,
) -> None:
    app = create_app(make_settings(), StaticSecretStore(SECRETS), keys=keys)

    async with client_for(app, "100.64.0.7", "https://idp.test") as idp:
        response = await idp.post(TOKEN_PATH, data=form("viewer"))

    assert response.status_code == 200


async def test_token_after_rotation_is_issued_with_the_new_secret(
    keys: RealmKeys,
) -> None:
    store = RecordingStore(SECRETS)
    app = create_app(make_settings(refresh_interval=0), store, keys=keys)

    async with client_for(app) as idp:
        first = await idp.post(TOKEN_PATH, data=form("viewer"))
        store.values[f"{PREFIX}viewer"] = "rotated"
        second = await idp.post(TOKEN_PATH, data=form("viewer", "rotated"))
        old = await idp.post(TOKEN_PATH, data=form("viewer"))

    assert first.status_code == 200
    assert second.status_code == 200
    assert old.status_code == 401
    assert store.refreshes == 2


async def test_client_secrets_are_read_once_then_cached() -> None:
    store = RecordingStore(SECRETS)
    secrets = ClientSecrets(store, PREFIX)

    assert await secrets.verify("viewer", "secret-of-viewer")
    assert await secrets.verify("viewer", "secret-of-viewer")

    assert store.reads == 1


async def test_client_secrets_refresh_at_most_once_per_interval() -> None:
    now = [1000.0]
    store = RecordingStore(SECRETS)
    secrets = ClientSecrets(
        store, PREFIX, min_refresh_interval=5.0, clock=lambda: now[0]
    )
    assert await secrets.verify("viewer", "secret-of-viewer")

    assert not await secrets.verify("viewer", "guess-1")
    assert store.refreshes == 0

    now[0] += 5.0
    assert not await secrets.verify("viewer", "guess-2")
    assert not await secrets.verify("viewer", "guess-3")
    assert store.refreshes == 1
    assert store.reads == 2


@pytest.mark.parametrize("presented", ["", "secret-of-viewer"])
async def test_client_secrets_refuse_empty_secrets(presented: str) -> None:
    store = RecordingStore({f"{PREFIX}viewer": ""})
    secrets = ClientSecrets(store, PREFIX, min_refresh_interval=0)

    assert not await secrets.verify("viewer", presented)


async def test_token_events_are_logged_without_secrets_or_tokens(
    idp: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.identity.app")

    issued = await idp.post(TOKEN_PATH, data=form("document-processor"))
    refused = await idp.post(TOKEN_PATH, data=form("viewer", "wrong-secret"))

    assert issued.status_code == 200
    assert refused.status_code == 401
    events = {
        record.getMessage(): getattr(record, "mesh_fields", {})
        for record in caplog.records
    }
    jti = jwt.decode(
        issued.json()["access_token"], options={"verify_signature": False}
    )["jti"]
    assert events["token.issued"] == {
        "client_id": "document-processor",
        "outcome": "issued",
        "jti": jti[:8],
    }
    assert events["token.refused"] == {
        "client_id": "viewer",
        "outcome": "refused",
        "reason": "bad_secret",
    }
    logged = json.dumps(list(events.values()))
    assert "secret-of" not in logged
    assert "wrong-secret" not in logged
    assert issued.json()["access_token"] not in logged
    assert jti not in logged


async def test_dpop_refusal_is_logged_with_reason_and_without_proof(
    idp: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.identity.app")
    proof = DpopKey().proof("POST", TOKEN_URL)
    headers = {"DPoP": proof}

    await idp.post(TOKEN_PATH, data=form("orchestrator"), headers=headers)
    replayed = await idp.post(TOKEN_PATH, data=form("orchestrator"), headers=headers)

    assert replayed.status_code == 400
    refusals = [
        getattr(record, "mesh_fields", {})
        for record in caplog.records
        if record.getMessage() == "token.refused"
    ]
    assert refusals == [
        {"client_id": "orchestrator", "outcome": "refused", "reason": "dpop_replayed"}
    ]
    logged = json.dumps([getattr(r, "mesh_fields", {}) for r in caplog.records])
    assert proof not in logged
    assert proof.split(".")[1] not in logged


async def test_lifespan_builds_secrets_manager_store_when_none_given(
    keys: RealmKeys,
) -> None:
    app = create_app(make_settings(), keys=keys)
    state: IdentityState = app.state.identity
    assert state.client_secrets is None

    async with app.router.lifespan_context(app):
        assert isinstance(state.client_secrets, ClientSecrets)


def test_used_proofs_refuse_a_second_use() -> None:
    used = UsedProofs(clock=lambda: 1000.0)

    assert used.first_use("proof-1", 1065.0)
    assert not used.first_use("proof-1", 1065.0)


def test_used_proofs_forget_a_proof_once_stale() -> None:
    now = [1000.0]
    used = UsedProofs(clock=lambda: now[0])
    used.first_use("proof-1", 1065.0)

    now[0] = 1065.0

    assert used.first_use("proof-2", 1130.0)
    assert len(used) == 1


def test_used_proofs_refuse_new_proofs_rather_than_forget_fresh_ones() -> None:
    now = [1000.0]
    used = UsedProofs(capacity=1, clock=lambda: now[0])
    used.first_use("proof-1", 1065.0)

    with pytest.raises(UsedProofsFull):
        used.first_use("proof-2", 1065.0)
    assert not used.first_use("proof-1", 1065.0)

    now[0] = 1065.0
    assert used.first_use("proof-2", 1130.0)


def test_realm_file_parses_with_every_secret_a_placeholder() -> None:
    realm = load_realm()

    assert realm.name == REALM
    assert sorted(realm.clients) == sorted(CLIENT_IDS)
    for client in realm.clients.values():
        suffix = client.client_id.upper().replace("-", "_")
        assert client.secret_ref == f"MESH_CLIENT_SECRET_{suffix}"
    assert "secret-of" not in DEFAULT_REALM_FILE.read_text(encoding="utf-8")


def test_settings_read_env_and_derive_public_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESH_IDP_PORT", "18080")
    monkeypatch.delenv("MESH_IDP_PUBLIC_URL", raising=False)

    settings = IdentitySettings()

    assert settings.public_url == "http://127.0.0.1:18080"
    assert settings.issuer(REALM) == f"http://127.0.0.1:18080/realms/{REALM}"


def test_settings_strip_trailing_slash_of_public_url() -> None:
    settings = IdentitySettings(public_url="https://idp.example/")

    assert settings.public_url == "https://idp.example"


@pytest.mark.parametrize(
    "overrides",
    [{"public_url": "idp.example"}, {"tls_certfile": "cert.pem"}],
)
def test_settings_refuse_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        IdentitySettings(**overrides)


# RFC 8705, as Keycloak's "OAuth 2.0 Mutual TLS Certificate Bound Access
# Tokens": the token is bound to the client certificate of the token request.
CERTIFICATE = b"the DER bytes of the caller's client certificate"
BOUND_TO_CERTIFICATE = {
    "document-processor": {
        "attributes": {"tls.client.certificate.bound.access.tokens": "true"}
    }
}


def with_peer_certificate(app: Any, certificate: bytes | None) -> Any:
    """The app as uvicorn with PeerCertificateProtocol serves it over mTLS."""

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "state": {**scope.get("state", {})}}
            scope["state"][PEER_CERTIFICATE] = certificate
        await app(scope, receive, send)

    return serve


async def test_token_of_certificate_bound_client_names_its_certificate(
    tmp_path: Path, keys: RealmKeys
) -> None:
    realm_file = write_realm(tmp_path, BOUND_TO_CERTIFICATE)
    app = create_app(make_settings(realm_file), StaticSecretStore(SECRETS), keys=keys)

    async with client_for(with_peer_certificate(app, CERTIFICATE)) as idp:
        response = await idp.post(TOKEN_PATH, data=form("document-processor"))

    assert response.status_code == 200
    assert claims_of(response)["cnf"] == {"x5t#S256": b64url_sha256(CERTIFICATE)}
    assert response.json()["token_type"] == "Bearer"


async def test_certificate_bound_client_without_a_certificate_returns_400(
    tmp_path: Path, keys: RealmKeys
) -> None:
    realm_file = write_realm(tmp_path, BOUND_TO_CERTIFICATE)
    app = create_app(make_settings(realm_file), StaticSecretStore(SECRETS), keys=keys)

    async with client_for(with_peer_certificate(app, None)) as idp:
        response = await idp.post(TOKEN_PATH, data=form("document-processor"))

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "Client Certification missing for MTLS HoK Token Binding",
    }


async def test_token_of_a_client_not_bound_to_certificates_ignores_one(
    keys: RealmKeys,
) -> None:
    app = create_app(make_settings(), StaticSecretStore(SECRETS), keys=keys)

    async with client_for(with_peer_certificate(app, CERTIFICATE)) as idp:
        response = await idp.post(TOKEN_PATH, data=form("document-processor"))

    assert "cnf" not in claims_of(response)


def test_realm_certificate_binding_attribute_must_be_true_or_false(
    tmp_path: Path,
) -> None:
    realm_file = write_realm(
        tmp_path,
        {
            "viewer": {
                "attributes": {"tls.client.certificate.bound.access.tokens": "yes"}
            }
        },
    )

    with pytest.raises(RealmError, match="must be"):
        load_realm(realm_file)
