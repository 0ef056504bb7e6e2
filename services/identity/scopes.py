"""The ``scope`` of a token request: which optional client scopes it selects.

A client's token always carries its default audiences; each optional client
scope the request names adds that scope's audiences. This is how one token is
made for one receiving service: the orchestrator asks for
``extractor-audience`` and gets a token the archivist refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.identity.errors import OAuthError
from services.identity.realm import Client

# Granted to every client: the built-in default scopes the stand-in mimics.
DEFAULT_GRANTED = ("profile", "email")

# Asking for these is not an error, and changes nothing.
_IGNORED = frozenset({"openid", *DEFAULT_GRANTED})


@dataclass(frozen=True)
class Grant:
    """What a token request is granted: its ``scope`` and its audiences."""

    scope: str
    audiences: tuple[str, ...]


def grant(client: Client, requested: str) -> Grant:
    """The grant for ``requested`` (space-separated), or Keycloak's refusal."""
    # RFC 6749 section 3.3: scope tokens are separated by single spaces.
    names = list(dict.fromkeys(name for name in requested.split(" ") if name))
    allowed = client.optional_scopes.keys() | _IGNORED
    if any(name not in allowed for name in names):
        # Keycloak repeats the whole parameter, not only the offending names.
        raise OAuthError(
            400,
            "invalid_scope",
            f"Invalid scopes: {requested}",
            reason="invalid_scope",
            client_id=client.client_id,
        )

    optional = [name for name in names if name in client.optional_scopes]
    audiences = list(client.default_audiences)
    for name in optional:
        audiences.extend(client.optional_scopes[name])
    return Grant(
        scope=" ".join([*DEFAULT_GRANTED, *optional]),
        audiences=tuple(dict.fromkeys(audiences)),
    )
