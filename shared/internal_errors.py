"""The last answer to an exception no route handled: a generic -32603 with
HTTP 500 for the caller, the detail in an ERROR line for the log.

It sits inside the correlation middleware, so both carry the request's
correlation id. An app-wide exception handler could not: Starlette runs it
outside every middleware, after the id has been let go.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth.middleware import send_error
from shared.errors import InternalError
from shared.logging import log_event

logger = logging.getLogger(__name__)


class InternalErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        answering = False

        async def watched(message: Message) -> None:
            nonlocal answering
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            log_event(
                logger,
                "request.internal_error",
                level=logging.ERROR,
                exc_info=exc,
                path=scope["path"],
            )
            if answering:
                # Too late for another status: the server closes the answer.
                raise
            await send_error(send, InternalError(), [])
