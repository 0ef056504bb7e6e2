"""The stand-in's HTTP surface, under Keycloak's paths and with its responses.

    GET  /realms/{realm}/.well-known/openid-configuration
    GET  /realms/{realm}/protocol/openid-connect/certs
    POST /realms/{realm}/protocol/openid-connect/token   client_credentials only
    GET  /health

There is no authorization endpoint, no user login and no refresh token: the
mesh only ever uses the client-credentials grant, so discovery advertises
nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.identity.keys import SIGNING_ALGORITHM, RealmKeys, generate_keys
from services.identity.realm import Client, Realm, load_realm
from services.identity.settings import IdentitySettings
from shared.errors import DependencyUnavailable
from shared.logging import jti_prefix, log_event
from shared.secrets import SecretsManagerStore, SecretStore

logger = logging.getLogger(__name__)

CLIENT_CREDENTIALS = "client_credentials"
GRANTED_SCOPE = "profile email"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 16 * 1024
_MAX_FORM_FIELDS = 32
_INVALID_CLIENT = "Invalid client or Invalid client credentials"


class OAuthError(Exception):
    """A refusal, rendered as Keycloak renders it; ``reason`` is for the log."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str | None,
        *,
        reason: str,
        client_id: str | None = None,
        level: int = logging.WARNING,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.description = description
        self.reason = reason
        self.client_id = client_id
        self.level = level

    def response(self) -> JSONResponse:
        """The JSON body Keycloak answers with for this refusal."""
        body = {"error": self.error}
        if self.description is not None:
            body["error_description"] = self.description
        return JSONResponse(body, status_code=self.status, headers=NO_STORE)


def _invalid_client(reason: str, client_id: str | None = None) -> OAuthError:
    # One answer for every credential failure, so none reveals which clients exist.
    return OAuthError(
        401, "invalid_client", _INVALID_CLIENT, reason=reason, client_id=client_id
    )


class ClientSecrets:
    """Client secrets read lazily from a ``SecretStore``, re-read on mismatch.

    A presented secret that does not match makes the secret be read again
    (it may have been rotated), but at most once per ``min_refresh_interval``
    per client, so that wrong guesses cannot drive calls to Secrets Manager.
    """

    def __init__(
        self,
        store: SecretStore,
        prefix: str,
        *,
        min_refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._cache: dict[str, str] = {}
        self._read_at: dict[str, float] = {}

    async def verify(self, client_id: str, presented: str) -> bool:
        """Whether ``presented`` is the client's secret, tolerating a rotation."""
        if not presented:
            return False

        expected = self._cache.get(client_id)
        if expected is None:
            expected = await self._read(client_id)
        if _same_secret(presented, expected):
            return True

        last_read = self._read_at.get(client_id, float("-inf"))
        if self._clock() - last_read < self._min_refresh_interval:
            return False

        self._store.refresh(self._secret_id(client_id))
        return _same_secret(presented, await self._read(client_id))

    async def _read(self, client_id: str) -> str:
        value = await self._store.get(self._secret_id(client_id))
        self._cache[client_id] = value
        self._read_at[client_id] = self._clock()
        return value

    def _secret_id(self, client_id: str) -> str:
        return f"{self._prefix}{client_id}"


def _same_secret(presented: str, expected: str) -> bool:
    # compare_digest refuses non-ASCII str, so compare the encoded bytes.
    if not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


class IdentityState:
    """What the endpoints share: settings, realm, keys and the client secrets."""

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
            "token_endpoint": f"{issuer}/protocol/openid-connect/token",
            "jwks_uri": f"{issuer}/protocol/openid-connect/certs",
            "grant_types_supported": [CLIENT_CREDENTIALS],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [SIGNING_ALGORITHM],
            "scopes_supported": GRANTED_SCOPE.split(),
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

    form = await _read_form(request)
    if form.get("grant_type") != CLIENT_CREDENTIALS:
        raise OAuthError(
            400,
            "unsupported_grant_type",
            "Unsupported grant_type",
            reason="unsupported_grant_type",
        )

    client_id, secret = _presented_credentials(request, form)
    client = realm.clients.get(client_id)
    if client is None:
        raise _invalid_client("unknown_client", client_id[:64])
    if not client.enabled or client.secret_ref is None:
        raise _invalid_client("client_not_confidential_or_disabled", client_id)

    if not await _secret_matches(state, client_id, secret):
        raise _invalid_client("bad_secret", client_id)

    if not client.service_accounts_enabled:
        raise OAuthError(
            400,
            "unauthorized_client",
            "Client not enabled to retrieve service account",
            reason="service_accounts_disabled",
            client_id=client_id,
        )

    claims = _claims(state, realm, client, request)
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
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": GRANTED_SCOPE,
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


async def _read_form(request: Request) -> dict[str, str]:
    """The urlencoded body, bounded, with a repeated parameter refused."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != _FORM_TYPE:
        return {}

    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise OAuthError(
                400, "invalid_request", "Request too large", reason="form_too_large"
            )

    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError(
            400, "invalid_request", "Malformed form body", reason="form_malformed"
        ) from exc

    form: dict[str, str] = {}
    for name, value in pairs:
        # RFC 6749 §3.2: a parameter must not be repeated.
        if name in form:
            raise OAuthError(
                400, "invalid_request", "duplicated parameter", reason="duplicated"
            )
        form[name] = value
    return form


def _presented_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from HTTP Basic or, failing that, the form body."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
        if not client_id or not secret:
            raise _invalid_client("no_credentials", client_id[:64] or None)
        return client_id, secret

    client_id, secret = _parse_basic(encoded.strip())
    if form.get("client_id", client_id) != client_id:
        raise _invalid_client("conflicting_client_id", client_id)
    return client_id, secret


def _parse_basic(encoded: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before base64."""
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _invalid_client("malformed_basic") from exc

    raw_id, colon, raw_secret = decoded.partition(":")
    client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    if not colon or not client_id or not secret:
        raise _invalid_client("malformed_basic")
    return client_id, secret


def _claims(
    state: IdentityState, realm: Realm, client: Client, request: Request
) -> dict[str, Any]:
    """A client-credentials access token's claims, in Keycloak's shape."""
    now = int(time.time())
    address = request.client.host if request.client else "unknown"

    claims: dict[str, Any] = {
        "exp": now + realm.access_token_lifespan,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": state.settings.issuer(realm.name),
    }
    # Keycloak writes a single audience as a string, several as a list.
    if len(client.audiences) == 1:
        claims["aud"] = client.audiences[0]
    elif client.audiences:
        claims["aud"] = list(client.audiences)

    claims |= {
        "sub": client.subject,
        "typ": "Bearer",
        "azp": client.client_id,
        "scope": GRANTED_SCOPE,
        "email_verified": False,
        "clientHost": address,
        "clientAddress": address,
        "client_id": client.client_id,
        "preferred_username": f"service-account-{client.client_id}",
    }
    # Keycloak leaves realm_access out when the account has no realm roles.
    if client.roles:
        claims["realm_access"] = {"roles": list(client.roles)}
    return claims
