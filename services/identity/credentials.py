"""Reading a token request: the bounded form body and the client's credentials.

Credentials come from HTTP Basic or, failing that, the form body; every way
they can be wrong is the same ``invalid_client`` refusal.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, unquote_plus

from fastapi import Request

from services.identity.errors import OAuthError, invalid_client

_FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 16 * 1024
_MAX_FORM_FIELDS = 32


async def read_form(request: Request) -> dict[str, str]:
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


def presented_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from HTTP Basic or, failing that, the form body."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
        if not client_id or not secret:
            raise invalid_client("no_credentials", client_id[:64] or None)
        return client_id, secret

    client_id, secret = _parse_basic(encoded.strip())
    if form.get("client_id", client_id) != client_id:
        raise invalid_client("conflicting_client_id", client_id)
    return client_id, secret


def _parse_basic(encoded: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before base64."""
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_client("malformed_basic") from exc

    raw_id, colon, raw_secret = decoded.partition(":")
    client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    if not colon or not client_id or not secret:
        raise invalid_client("malformed_basic")
    return client_id, secret
