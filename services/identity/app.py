"""The stand-in's HTTP surface, under Keycloak's paths and with its responses.

    GET  /realms/{realm}/.well-known/openid-configuration
    GET  /realms/{realm}/protocol/openid-connect/certs
    POST /realms/{realm}/protocol/openid-connect/token   client_credentials only
    GET  /health

There is no authorization endpoint, no user login and no refresh token: the
mesh only ever uses the client-credentials grant, so discovery advertises
nothing else. A token request may name optional client scopes (``scope``),
which choose its audiences, and may carry a DPoP proof, which binds the token
to the caller's key (see ``scopes`` and ``dpop``).
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.identity.clients import ClientSecrets
from services.identity.credentials import presented_credentials, read_form
from services.identity.dpop import PROOF_SIGNING_ALGORITHMS, TokenRequestProofs
from services.identity.errors import NO_STORE, OAuthError, invalid_client
from services.identity.keys import SIGNING_ALGORITHM, RealmKeys, generate_keys
from services.identity.realm import Client, Realm, load_realm
from services.identity.scopes import DEFAULT_GRANTED, Grant, grant
from services.identity.settings import IdentitySettings
from shared.auth.dpop import b64url_sha256
from shared.errors import DependencyUnavailable
from shared.logging import jti_prefix, log_event
from shared.peer_certificate import peer_certificate
from shared.secrets import SecretsManagerStore, SecretStore

logger = logging.getLogger(__name__)

CLIENT_CREDENTIALS = "client_credentials"


class IdentityState:
    """What the endpoints share: settings, realm, keys, secrets and used proofs."""

    def __init__(
        self,
        settings: IdentitySettings,
        realm: Realm,
        keys: RealmKeys,
        client_secrets: ClientSecrets | None,
    ) -> None:
        self.settings = settings
        self.realm = realm
        self.keys = keys
        self.client_secrets = client_secrets
        self.proofs = TokenRequestProofs()

    def realm_named(self, name: str) -> Realm:
        """The realm, if ``name`` is it; Keycloak's 404 otherwise."""
        if name != self.realm.name:
            raise OAuthError(404, "Realm does not exist", None, reason="unknown_realm")
        return self.realm


def create_app(
    settings: IdentitySettings,
    secrets: SecretStore | None = None,
    *,
    keys: RealmKeys | None = None,
) -> FastAPI:
    """Build the stand-in; without ``secrets``, Secrets Manager is used."""
    realm = load_realm(settings.realm_file)
    client_secrets = None if secrets is None else _client_secrets(settings, secrets)
    state = IdentityState(
        settings=settings,
        realm=realm,
        keys=keys or generate_keys(settings.signing_key_file),
        client_secrets=client_secrets,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.client_secrets is None:
            store = SecretsManagerStore(settings.aws_endpoint())
            state.client_secrets = _client_secrets(settings, store)
        log_event(
            logger,
            "identity.started",
            realm=realm.name,
            issuer=settings.issuer(realm.name),
            clients=len(realm.clients),
            kid=state.keys.kid,
        )
        yield

    app = FastAPI(title="a2a-mesh identity stand-in", lifespan=lifespan)
    app.state.identity = state
    app.add_exception_handler(OAuthError, _render_oauth_error)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/realms/{realm_name}/.well-known/openid-configuration")
    async def discovery(realm_name: str) -> dict[str, Any]:
        issuer = settings.issuer(state.realm_named(realm_name).name)
        return {
            "issuer": issuer,
            "token_endpoint": token_endpoint(issuer),
            "jwks_uri": f"{issuer}/protocol/openid-connect/certs",
            "grant_types_supported": [CLIENT_CREDENTIALS],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [SIGNING_ALGORITHM],
            "scopes_supported": list(DEFAULT_GRANTED),
            "dpop_signing_alg_values_supported": list(PROOF_SIGNING_ALGORITHMS),
        }

    @app.get("/realms/{realm_name}/protocol/openid-connect/certs")
    async def certs(realm_name: str) -> dict[str, Any]:
        state.realm_named(realm_name)
        return state.keys.jwks

    @app.post("/realms/{realm_name}/protocol/openid-connect/token")
    async def token(realm_name: str, request: Request) -> JSONResponse:
        try:
            client, body, jti = await _issue(state, realm_name, request)
        except OAuthError as exc:
            log_event(
                logger,
                "token.refused",
                level=exc.level,
                client_id=exc.client_id,
                outcome="refused",
                reason=exc.reason,
            )
            return exc.response()

        log_event(
            logger,
            "token.issued",
            client_id=client.client_id,
            outcome="issued",
            jti=jti_prefix(jti),
        )
        return JSONResponse(body, headers=NO_STORE)

    return app


def token_endpoint(issuer: str) -> str:
    """The token endpoint's URL, as discovery gives it and DPoP proofs name it."""
    return f"{issuer}/protocol/openid-connect/token"


def _client_secrets(settings: IdentitySettings, store: SecretStore) -> ClientSecrets:
    return ClientSecrets(
        store,
        settings.secrets_prefix,
        min_refresh_interval=settings.secret_refresh_interval,
    )


async def _render_oauth_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, OAuthError):
        raise exc
    return exc.response()


async def _issue(
    state: IdentityState, realm_name: str, request: Request
) -> tuple[Client, dict[str, Any], str]:
    """Check one token request; return the client, the response body and jti."""
    realm = state.realm_named(realm_name)
    if _https_required(realm, request):
        raise OAuthError(403, "invalid_request", "HTTPS required", reason="https")

    form = await read_form(request)
    if form.get("grant_type") != CLIENT_CREDENTIALS:
        raise OAuthError(
            400,
            "unsupported_grant_type",
            "Unsupported grant_type",
            reason="unsupported_grant_type",
        )

    client_id, secret = presented_credentials(request, form)
    client = realm.clients.get(client_id)
    if client is None:
        raise invalid_client("unknown_client", client_id[:64])
    if not client.enabled or client.secret_ref is None:
        raise invalid_client("client_not_confidential_or_disabled", client_id)

    if not await _secret_matches(state, client_id, secret):
        raise invalid_client("bad_secret", client_id)

    if not client.service_accounts_enabled:
        raise OAuthError(
            400,
            "unauthorized_client",
            "Client not enabled to retrieve service account",
            reason="service_accounts_disabled",
            client_id=client_id,
        )

    # The proof is checked only now that the client is authenticated, so that
    # no stranger can fill the record of used proofs.
    issuer = state.settings.issuer(realm.name)
    jkt = state.proofs.thumbprint(request, client, token_endpoint(issuer))
    x5t = _certificate_thumbprint(client, request)
    granted = grant(client, form.get("scope", ""))

    claims = _claims(state, realm, client, request, granted, jkt, x5t)
    access_token = jwt.encode(
        claims,
        state.keys.signing_key,
        algorithm=SIGNING_ALGORITHM,
        headers={"kid": state.keys.kid},
    )
    body = {
        "access_token": access_token,
        "expires_in": realm.access_token_lifespan,
        "refresh_expires_in": 0,
        "token_type": claims["typ"],
        "not-before-policy": 0,
        "scope": granted.scope,
    }
    return client, body, claims["jti"]


async def _secret_matches(state: IdentityState, client_id: str, secret: str) -> bool:
    if state.client_secrets is None:
        raise RuntimeError("the app's lifespan has not run: no secret store")

    try:
        return await state.client_secrets.verify(client_id, secret)
    except DependencyUnavailable as exc:
        raise OAuthError(
            503,
            "temporarily_unavailable",
            "Client credentials cannot be checked now",
            reason="secret_store_unavailable",
            client_id=client_id,
            level=logging.ERROR,
        ) from exc


def _https_required(realm: Realm, request: Request) -> bool:
    """Keycloak's ``sslRequired``: "external" lets private addresses use HTTP."""
    if realm.ssl_required == "none" or request.url.scheme == "https":
        return False
    if realm.ssl_required == "all":
        return True

    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not (address.is_private or address.is_loopback)


def _claims(
    state: IdentityState,
    realm: Realm,
    client: Client,
    request: Request,
    granted: Grant,
    jkt: str | None,
    x5t: str | None = None,
) -> dict[str, Any]:
    """A client-credentials access token's claims, in Keycloak's shape.

    ``jkt`` is the thumbprint of the key a DPoP proof showed, None for a
    Bearer token.
    """
    now = int(time.time())
    address = request.client.host if request.client else "unknown"

    claims: dict[str, Any] = {
        "exp": now + realm.access_token_lifespan,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": state.settings.issuer(realm.name),
    }
    # Keycloak writes a single audience as a string, several as a list.
    if len(granted.audiences) == 1:
        claims["aud"] = granted.audiences[0]
    elif granted.audiences:
        claims["aud"] = list(granted.audiences)

    claims |= {
        "sub": client.subject,
        # Keycloak types a bound token "DPoP", here and in the response.
        "typ": "Bearer" if jkt is None else "DPoP",
        "azp": client.client_id,
        "scope": granted.scope,
        "email_verified": False,
        "clientHost": address,
        "clientAddress": address,
        "client_id": client.client_id,
        "preferred_username": f"service-account-{client.client_id}",
    }
    # Keycloak leaves realm_access out when the account has no realm roles.
    if client.roles:
        claims["realm_access"] = {"roles": list(client.roles)}
    confirmation = {"jkt": jkt, "x5t#S256": x5t}
    if jkt is not None or x5t is not None:
        claims["cnf"] = {k: v for k, v in confirmation.items() if v is not None}
    return claims


def _certificate_thumbprint(client: Client, request: Request) -> str | None:
    """RFC 8705: the thumbprint of the client certificate the token request
    came with, for a client whose tokens are bound to it."""
    if not client.certificate_bound:
        return None
    certificate = peer_certificate(request.scope)
    if certificate is None:
        raise OAuthError(
            400,
            "invalid_request",
            "Client Certification missing for MTLS HoK Token Binding",
            reason="certificate_missing",
            client_id=client.client_id,
        )
    return b64url_sha256(certificate)
