"""The header of a compact JWS (``header.payload.signature``), read before the
signature is checked, to pick the key and check the algorithm.

PyJWT can do this too, but it parses the whole token in pure Python and then
parses it again to verify; on every request of every hop that was a tenth of
the security stack's cost. Decoding is strict (the base64url alphabet only,
correct padding), and the verification that follows re-reads the header with
PyJWT, so nothing read here is trusted on its own.
"""

from __future__ import annotations

import binascii
import json
from typing import Any


class MalformedToken(ValueError):
    """Not a compact JWS with a JSON object for a header."""


def unverified_header(token: str) -> dict[str, Any]:
    """The header of a token with three base64url parts; the rest unread."""
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():
        raise MalformedToken("not a compact JWS")
    header_part, payload_part, signature_part = parts
    try:
        header = json.loads(_decode(header_part))
        _decode(payload_part)
        _decode(signature_part)
    except (binascii.Error, ValueError, RecursionError):
        raise MalformedToken("not base64url JSON") from None
    if not isinstance(header, dict):
        raise MalformedToken("header is not a JSON object")
    return header


def _decode(segment: str) -> bytes:
    if "+" in segment or "/" in segment or "=" in segment:
        raise binascii.Error("not base64url")
    padded = segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4)
    return binascii.a2b_base64(padded, strict_mode=True)
