"""The stand-in's refusals, rendered as Keycloak renders them."""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

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


def invalid_client(reason: str, client_id: str | None = None) -> OAuthError:
    """One answer for every credential failure, so none reveals which clients exist."""
    return OAuthError(
        401, "invalid_client", _INVALID_CLIENT, reason=reason, client_id=client_id
    )
