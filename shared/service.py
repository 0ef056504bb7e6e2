"""The app every service is: health, readiness, agent card and ``/a2a``.

A service supplies a ``build`` coroutine that, given the ``Runtime``, returns
its methods, readiness checks and any state its own routes need.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from shared.auth.middleware import AuthMiddleware, CorrelationMiddleware
from shared.auth.policy import SecurityPolicy
from shared.auth.principal import Principal
from shared.auth.proxy import ProxyMiddleware
from shared.errors import MeshError
from shared.internal_errors import InternalErrorMiddleware
from shared.jsonrpc import Call, Dispatcher, Method, error_reply
from shared.logging import correlation_id, log_event
from shared.runtime import Runtime, open_runtime
from shared.secrets import SecretStore
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]


class MeshJSONResponse(JSONResponse):
    """JSON as UTF-8; text that cannot be UTF-8 (a lone surrogate a caller
    sent) is written as a JSON escape instead of failing the response."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode("ascii")


_READY_TIMEOUT_SECONDS = 3.0


@dataclass
class ServiceParts:
    """What a service adds to the common app once its runtime is up."""

    methods: Sequence[Method[Any]]
    checks: Mapping[str, Check] = field(default_factory=dict)
    state: object = None


Build = Callable[[Runtime, AsyncExitStack], Awaitable[ServiceParts]]


def create_service_app(
    settings: ServiceSettings,
    *,
    description: str,
    build: Build,
    secrets: SecretStore | None = None,
    policy: SecurityPolicy | None = None,
    protected: Mapping[str, int] | None = None,
    agent_card: Mapping[str, Any] | None = None,
) -> FastAPI:
    """The FastAPI app of one service, with its lifespan and common routes.

    ``/a2a`` is protected with the policy's body limit for this service;
    ``protected`` adds other paths with their own limits. The policy file is
    read here, so a mistake in it stops the service before it listens.
    ``agent_card`` replaces the card made from the methods (the orchestrator
    serves an A2A 1.0 card).
    """
    policy = policy or SecurityPolicy.load(settings.policy_file)
    body_limit = policy.limits.body_bytes_for(settings.service_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(
                open_runtime(settings, policy, secrets)
            )
            parts = await build(runtime, stack)
            app.state.runtime = runtime
            app.state.dispatcher = Dispatcher(
                parts.methods,
                policy.roles,
                audit=runtime.gate.audit,
                max_depth=policy.limits.max_json_depth,
            )
            app.state.checks = {
                "identity-provider": _keys_check(runtime),
                # Every service needs it: it holds the replay records.
                "database": lambda: runtime.database.fetchval("SELECT 1"),
                "revocations": _revocations_check(runtime),
                **parts.checks,
            }
            app.state.service = parts.state
            log_event(logger, "service.started", port=settings.port)
            yield
        log_event(logger, "service.stopped")

    app = FastAPI(
        title=f"a2a-mesh {settings.service_name}",
        description=description,
        version=settings.version,
        lifespan=lifespan,
        default_response_class=MeshJSONResponse,
        docs_url=None,
        redoc_url=None,
        # FastAPI's map would show routes that read raw requests; the agent
        # card describes the methods, and the orchestrator serves its own
        # description (services/orchestrator/openapi.py).
        openapi_url=None,
        # A redirect would be built from the Host header a caller chose.
        redirect_slashes=False,
    )
    app.add_middleware(
        AuthMiddleware, body_limits={"/a2a": body_limit, **(protected or {})}
    )
    # Before the gate, so that it sees the real client address; inside the
    # correlation id, so that its own refusals carry one.
    app.add_middleware(
        ProxyMiddleware,
        trusted=settings.trusted_proxies,
        trust_alb_certificates=settings.trust_alb_client_certificates,
    )
    # Inside the correlation id, so that an internal error's answer and log
    # line carry it.
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(CorrelationMiddleware)
    _add_common_routes(app, settings, description, agent_card)
    return app


def principal_of(request: Request) -> Principal:
    """The verified caller; the auth middleware put it there."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise RuntimeError("route is not behind the auth middleware")
    return principal


def mesh_error_response(
    error: MeshError, status: int | None = None
) -> MeshJSONResponse:
    reply = error_reply(error)
    return MeshJSONResponse(
        reply.body, status_code=status or reply.status, headers=reply.headers
    )


def _add_common_routes(
    app: FastAPI,
    settings: ServiceSettings,
    description: str,
    card: Mapping[str, Any] | None,
) -> None:
    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @app.get("/ready", include_in_schema=False)
    async def ready(request: Request) -> MeshJSONResponse:
        checks: Mapping[str, Check] = request.app.state.checks
        results = await asyncio.gather(*(_run_check(c) for c in checks.values()))
        report = dict(zip(checks, results, strict=True))
        is_ready = all(result == "ok" for result in results)
        return MeshJSONResponse(
            {"status": "ready" if is_ready else "not_ready", "checks": report},
            status_code=200 if is_ready else 503,
        )

    @app.get("/.well-known/agent-card.json", include_in_schema=False)
    async def agent_card(request: Request) -> Mapping[str, Any]:
        if card is not None:
            return card
        dispatcher: Dispatcher = request.app.state.dispatcher
        return _agent_card(settings, description, dispatcher.methods)

    @app.post("/a2a", include_in_schema=False)
    async def a2a(request: Request) -> Response:
        # The auth middleware has read the body already, within the limit.
        body = await request.body()
        dispatcher: Dispatcher = request.app.state.dispatcher
        call = Call(
            principal=principal_of(request),
            correlation_id=correlation_id.get(),
            client_address=request.client.host if request.client else None,
        )
        reply = await dispatcher.dispatch(body, call)
        if reply.body is None:
            return Response(status_code=reply.status)
        return MeshJSONResponse(
            reply.body, status_code=reply.status, headers=reply.headers
        )


async def _run_check(check: Check) -> str:
    try:
        async with asyncio.timeout(_READY_TIMEOUT_SECONDS):
            await check()
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


def _revocations_check(runtime: Runtime) -> Check:
    async def check() -> None:
        # Without its LISTEN connection a replica may learn of a revocation
        # late (it re-reads the table every second meanwhile): not ready.
        if not runtime.revocations.listening:
            raise ConnectionError("not listening for revocations")

    return check


def _keys_check(runtime: Runtime) -> Check:
    async def check() -> None:
        if not runtime.keys.loaded:
            await runtime.keys.refresh(reason="readiness")
        if not runtime.keys.loaded:
            raise ConnectionError("no signing keys")

    return check


def _agent_card(
    settings: ServiceSettings, description: str, methods: Sequence[Method[Any]]
) -> dict[str, Any]:
    scheme = "https" if settings.tls_certfile else "http"
    url = settings.public_url or f"{scheme}://{settings.host}:{settings.port}"
    return {
        "name": f"a2a-mesh-{settings.service_name}",
        "description": description,
        "version": settings.version,
        "url": f"{url.rstrip('/')}/a2a",
        "preferredTransport": "JSONRPC",
        "skills": [
            {
                "id": method.name,
                "name": method.name.replace("_", " "),
                "description": method.description,
                "inputSchema": method.params.model_json_schema(),
            }
            for method in methods
        ],
        "securitySchemes": {
            "keycloak": {
                "type": "oauth2",
                "description": _token_rule(settings),
                "flows": {
                    "clientCredentials": {
                        "tokenUrl": settings.issuer_token_endpoint,
                        "scopes": {},
                    }
                },
            }
        },
        "security": [{"keycloak": []}],
    }


def _token_rule(settings: ServiceSettings) -> str:
    proof = (
        "DPoP-bound tokens (RFC 9449) with a proof per request whose "
        "body_sha256 claim is the SHA-256 of the body"
    )
    if settings.accept_bearer_tokens:
        return f"Bearer tokens, or {proof}"
    return f"Only {proof}"
