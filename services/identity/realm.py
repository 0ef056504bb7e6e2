"""Load a Keycloak realm-export file into the few facts the stand-in needs.

Only what shapes a client-credentials token is kept: the realm's name, token
lifespan and TLS rule, and per client its secret placeholder, the realm roles
of its service account, the audiences it always gets (from its own audience
mappers and its default client scopes), the optional client scopes it may ask
for with the audiences each adds, and whether its tokens must be DPoP-bound.
The file is checked on load, and a literal client secret in it is refused:
secrets live in Secrets Manager, the file only names a Keycloak environment
placeholder.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_REALM_FILE = Path(__file__).parent / "realm-export.json"

SSL_REQUIRED_VALUES = frozenset({"all", "external", "none"})

# Keycloak replaces ``${NAME}`` from the environment on import; a ``:default``
# would put a literal secret in the file, so it is not accepted.
_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")

# What Keycloak writes in place of a secret it does not export.
_EXPORT_MASK = "**********"

_AUDIENCE_MAPPER = "oidc-audience-mapper"

# The client attribute with which Keycloak makes a DPoP proof mandatory.
DPOP_BOUND_ATTRIBUTE = "dpop.bound.access.tokens"
CERTIFICATE_BOUND_ATTRIBUTE = "tls.client.certificate.bound.access.tokens"

# Client scopes Keycloak creates in every realm. A client may name them without
# the file defining them; none of them adds an audience, so they are ignored.
KEYCLOAK_BUILT_IN_SCOPES = frozenset(
    {
        "acr",
        "address",
        "basic",
        "email",
        "microprofile-jwt",
        "offline_access",
        "organization",
        "phone",
        "profile",
        "roles",
        "service_account",
        "web-origins",
    }
)


class RealmError(ValueError):
    """The realm file cannot be used; ``path`` names the offending member."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Client:
    """A Keycloak client as the token endpoint sees it."""

    client_id: str
    secret_ref: str | None
    roles: tuple[str, ...]
    # In every token of the client, whatever scope it asks for.
    default_audiences: tuple[str, ...]
    # Scope name -> the audiences the scope adds when the request names it.
    optional_scopes: dict[str, tuple[str, ...]]
    service_accounts_enabled: bool
    enabled: bool
    subject: str
    # A token request without a DPoP proof is refused.
    dpop_bound: bool
    certificate_bound: bool = False
    """RFC 8705: tokens bound to the client certificate of the token request."""


@dataclass(frozen=True)
class Realm:
    """A realm: its name, token lifespan, TLS rule and clients by id."""

    name: str
    access_token_lifespan: int
    clients: dict[str, Client]
    ssl_required: str = "external"


def service_account_subject(realm: str, client_id: str) -> str:
    """A stable ``sub`` for a service account whose user has no id in the file."""
    name = f"urn:keycloak:{realm}:service-account:{client_id}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def load_realm(path: Path | str = DEFAULT_REALM_FILE) -> Realm:
    """Read and check a realm-export file."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RealmError(str(path), f"cannot be read as JSON ({exc})") from exc

    return parse_realm(_object(raw, "$"))


def parse_realm(raw: dict[str, Any]) -> Realm:
    """Build a ``Realm`` from a realm export already parsed from JSON."""
    name = _string(raw.get("realm"), "realm")
    if raw.get("enabled") is not True:
        raise RealmError("enabled", "the realm must be enabled")

    lifespan = raw.get("accessTokenLifespan", 300)
    if not isinstance(lifespan, int) or isinstance(lifespan, bool) or lifespan <= 0:
        raise RealmError("accessTokenLifespan", "must be a positive integer")

    ssl_required = raw.get("sslRequired", "external")
    if ssl_required not in SSL_REQUIRED_VALUES:
        raise RealmError("sslRequired", f"must be one of {sorted(SSL_REQUIRED_VALUES)}")

    realm_roles = _realm_roles(raw)
    client_ids = _client_ids(raw)
    accounts = _service_accounts(raw, realm_roles, client_ids)
    scopes = _client_scopes(raw, client_ids)

    clients: dict[str, Client] = {}
    for index, item in enumerate(_list(raw.get("clients", []), "clients")):
        where = f"clients[{index}]"
        rep = _object(item, where)
        client_id = _string(rep.get("clientId"), f"{where}.clientId")
        user_id, roles = accounts.get(client_id, (None, ()))
        clients[client_id] = Client(
            client_id=client_id,
            secret_ref=_secret_ref(rep, where),
            roles=roles,
            default_audiences=_default_audiences(rep, where, client_ids, scopes),
            optional_scopes=_optional_scopes(rep, where, scopes),
            service_accounts_enabled=rep.get("serviceAccountsEnabled") is True,
            enabled=rep.get("enabled", True) is True,
            subject=user_id or service_account_subject(name, client_id),
            dpop_bound=_flag(rep, where, DPOP_BOUND_ATTRIBUTE),
            certificate_bound=_flag(rep, where, CERTIFICATE_BOUND_ATTRIBUTE),
        )

    return Realm(
        name=name,
        access_token_lifespan=lifespan,
        clients=clients,
        ssl_required=ssl_required,
    )


def _realm_roles(raw: dict[str, Any]) -> frozenset[str]:
    roles = _object(raw.get("roles", {}), "roles")
    names = set()
    for index, item in enumerate(_list(roles.get("realm", []), "roles.realm")):
        where = f"roles.realm[{index}]"
        names.add(_string(_object(item, where).get("name"), f"{where}.name"))
    return frozenset(names)


def _client_ids(raw: dict[str, Any]) -> frozenset[str]:
    ids: list[str] = []
    for index, item in enumerate(_list(raw.get("clients", []), "clients")):
        where = f"clients[{index}]"
        ids.append(_string(_object(item, where).get("clientId"), f"{where}.clientId"))

    duplicates = sorted({cid for cid in ids if ids.count(cid) > 1})
    if duplicates:
        raise RealmError("clients", f"duplicate clientId {duplicates}")
    return frozenset(ids)


def _service_accounts(
    raw: dict[str, Any], realm_roles: frozenset[str], client_ids: frozenset[str]
) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Per client id: its service-account user's id (if given) and realm roles."""
    accounts: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    for index, item in enumerate(_list(raw.get("users", []), "users")):
        where = f"users[{index}]"
        user = _object(item, where)
        client_id = user.get("serviceAccountClientId")
        if client_id is None:
            continue

        client_id = _string(client_id, f"{where}.serviceAccountClientId")
        if client_id not in client_ids:
            raise RealmError(where, f"service account of unknown client '{client_id}'")
        if client_id in accounts:
            raise RealmError(where, f"second service account for '{client_id}'")

        roles = tuple(
            _string(role, f"{where}.realmRoles")
            for role in _list(user.get("realmRoles", []), f"{where}.realmRoles")
        )
        unknown = sorted(set(roles) - realm_roles)
        if unknown:
            raise RealmError(f"{where}.realmRoles", f"unknown realm roles {unknown}")

        # Keycloak uses the user's id as ``sub``; keep it when the file fixes it.
        user_id = _string(user["id"], f"{where}.id") if "id" in user else None
        accounts[client_id] = (user_id, roles)
    return accounts


def _client_scopes(
    raw: dict[str, Any], client_ids: frozenset[str]
) -> dict[str, tuple[str, ...]]:
    """Per client scope the file defines: the audiences its mappers add."""
    scopes: dict[str, tuple[str, ...]] = {}
    for index, item in enumerate(_list(raw.get("clientScopes", []), "clientScopes")):
        where = f"clientScopes[{index}]"
        rep = _object(item, where)
        name = _string(rep.get("name"), f"{where}.name")
        if name in scopes:
            raise RealmError(f"{where}.name", f"second client scope named '{name}'")

        _string(rep.get("protocol", "openid-connect"), f"{where}.protocol")
        _object(rep.get("attributes", {}), f"{where}.attributes")
        scopes[name] = _audiences(rep, where, client_ids)
    return scopes


def _default_audiences(
    rep: dict[str, Any],
    where: str,
    client_ids: frozenset[str],
    scopes: dict[str, tuple[str, ...]],
) -> tuple[str, ...]:
    """The client's own audience mappers, then those of its default scopes."""
    audiences = list(_audiences(rep, where, client_ids))
    for scope in _scope_names(rep, where, "defaultClientScopes", scopes):
        audiences.extend(scopes[scope])
    return tuple(dict.fromkeys(audiences))


def _optional_scopes(
    rep: dict[str, Any], where: str, scopes: dict[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    names = _scope_names(rep, where, "optionalClientScopes", scopes)
    return {name: scopes[name] for name in names}


def _scope_names(
    rep: dict[str, Any], where: str, key: str, scopes: dict[str, tuple[str, ...]]
) -> list[str]:
    """The scopes a client lists under ``key`` that the file defines.

    A built-in Keycloak scope the file does not define is passed over; any
    other name the file does not define is a mistake.
    """
    at = f"{where}.{key}"
    names = [_string(name, at) for name in _list(rep.get(key, []), at)]
    unknown = sorted(set(names) - scopes.keys() - KEYCLOAK_BUILT_IN_SCOPES)
    if unknown:
        raise RealmError(at, f"unknown client scopes {unknown}")
    return [name for name in dict.fromkeys(names) if name in scopes]


def _flag(rep: dict[str, Any], where: str, attribute: str) -> bool:
    # Strict on purpose: a "True" or a JSON true silently read as false would
    # turn a binding requirement off.
    attributes = _object(rep.get("attributes", {}), f"{where}.attributes")
    value: object = attributes.get(attribute, "false")
    if value not in ("true", "false"):
        raise RealmError(
            f"{where}.attributes", f'{attribute} must be "true" or "false"'
        )
    return value == "true"


def _secret_ref(rep: dict[str, Any], where: str) -> str | None:
    secret = rep.get("secret")
    if secret is None or secret == _EXPORT_MASK:
        return None

    match = _PLACEHOLDER.fullmatch(_string(secret, f"{where}.secret"))
    if match is None:
        raise RealmError(
            f"{where}.secret", "must be an environment placeholder like ${NAME}"
        )
    return match.group(1)


def _audiences(
    rep: dict[str, Any], where: str, client_ids: frozenset[str]
) -> tuple[str, ...]:
    audiences: list[str] = []
    mappers = _list(rep.get("protocolMappers", []), f"{where}.protocolMappers")
    for index, item in enumerate(mappers):
        at = f"{where}.protocolMappers[{index}]"
        mapper = _object(item, at)
        if mapper.get("protocolMapper") != _AUDIENCE_MAPPER:
            continue

        config = _object(mapper.get("config", {}), f"{at}.config")
        if config.get("access.token.claim") != "true":
            continue

        client_audience = config.get("included.client.audience")
        if client_audience and client_audience not in client_ids:
            raise RealmError(f"{at}.config", f"no client '{client_audience}'")

        for audience in (client_audience, config.get("included.custom.audience")):
            if audience and audience not in audiences:
                audiences.append(_string(audience, f"{at}.config"))
    return tuple(audiences)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RealmError(where, "must be a JSON object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise RealmError(where, "must be a JSON array")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RealmError(where, "must be a non-empty string")
    return value
