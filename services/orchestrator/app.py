"""The orchestrator: the mesh's front door and the owner of task state."""

from __future__ import annotations

import os
import socket
import time
from contextlib import AsyncExitStack
from secrets import token_hex

from fastapi import FastAPI, Request
from google.protobuf.json_format import MessageToDict

from services.orchestrator.a2a_card import RPC_PATH, public_card
from services.orchestrator.a2a_handler import MeshA2AHandler
from services.orchestrator.a2a_routes import a2a_dispatch, add_a2a_route
from services.orchestrator.admin import ADMIN_BODY_BYTES, add_admin_routes
from services.orchestrator.methods import Orchestrator
from services.orchestrator.openapi import OPENAPI_PATH, describe
from services.orchestrator.pipeline import Agents, Pipeline, TaskRetry
from services.orchestrator.runner import TaskRunner
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.tasks import TaskRepository
from services.orchestrator.upload import UPLOAD_STATUS
from shared.auth.policy import SecurityPolicy
from shared.errors import Forbidden, MeshError
from shared.retry import Backoff
from shared.runtime import Runtime, background
from shared.secrets import SecretStore
from shared.service import (
    MeshJSONResponse,
    ServiceParts,
    create_service_app,
    mesh_error_response,
    principal_of,
)
from shared.storage import DocumentStorage

# Room for the multipart framing around the largest file.
_MULTIPART_OVERHEAD = 64 * 1024


def replica_name() -> str:
    """Who holds this replica's leases: unique to this start of the process,
    so a restarted replica does not mistake a dead one's leases for its own."""
    return f"{socket.gethostname()}:{os.getpid()}:{token_hex(4)}"


def create_app(
    settings: OrchestratorSettings, secrets: SecretStore | None = None
) -> FastAPI:
    policy = SecurityPolicy.load(settings.policy_file)

    async def build(runtime: Runtime, stack: AsyncExitStack) -> ServiceParts:
        tasks = TaskRepository(
            runtime.database,
            owner=replica_name(),
            lease_seconds=settings.task_lease_seconds,
        )
        agents = Agents(
            extractor=runtime.agent("extractor", settings.extractor_url),
            validator=runtime.agent("validator", settings.validator_url),
            archivist=runtime.agent("archivist", settings.archivist_url),
        )
        for agent in (agents.extractor, agents.validator, agents.archivist):
            background(
                stack, agent.watch(interval=settings.agent_probe_interval_seconds)
            )
        retry = TaskRetry(
            attempts=settings.task_max_attempts,
            backoff=Backoff(
                base=settings.task_retry_base_seconds,
                cap=settings.task_retry_max_seconds,
            ),
        )
        runner = TaskRunner(
            Pipeline(agents, tasks, retry),
            tasks,
            concurrency=settings.max_concurrent_tasks,
        )
        app.state.on_stopping = [runner.stop_claiming]
        # Stopped before the agents' watches and the database close (the
        # stack unwinds in reverse), so its tasks can still be handed back.
        stack.push_async_callback(runner.stop, settings.task_drain_seconds)
        background(
            stack, runner.dispatch(interval=settings.task_claim_interval_seconds)
        )
        storage = DocumentStorage(runtime.aws, settings)
        orchestrator = Orchestrator(
            tasks, runner, storage, agents, runtime.http, charge=runtime.gate.charge
        )
        app.state.a2a_dispatch = a2a_dispatch(
            MeshA2AHandler(settings, policy, orchestrator, tasks, runner)
        )
        methods = orchestrator.methods()
        # Described from the very table the dispatcher answers from.
        app.state.openapi = describe(settings, policy, methods)
        return ServiceParts(
            methods=methods,
            checks={"s3": storage.check},
            state=orchestrator,
        )

    app = create_service_app(
        settings,
        description="Accepts documents and runs extractor → validator → archivist.",
        build=build,
        secrets=secrets,
        policy=policy,
        protected={
            "/documents": policy.limits.max_upload_bytes + _MULTIPART_OVERHEAD,
            "/admin": ADMIN_BODY_BYTES,
            # A document's bytes travel base64-encoded in a file part.
            RPC_PATH: policy.limits.max_upload_bytes * 4 // 3 + _MULTIPART_OVERHEAD,
        },
        agent_card=MessageToDict(public_card(settings)),
    )
    add_admin_routes(app)
    add_a2a_route(app)

    @app.get(OPENAPI_PATH, include_in_schema=False)
    async def openapi(request: Request) -> MeshJSONResponse:
        return MeshJSONResponse(request.app.state.openapi)

    @app.post("/documents", status_code=202)
    async def upload_document(request: Request) -> MeshJSONResponse:
        runtime: Runtime = request.app.state.runtime
        orchestrator: Orchestrator = request.app.state.service
        principal = principal_of(request)
        started = time.perf_counter()
        error: MeshError | None = None
        try:
            if not runtime.policy.roles.allows(principal.roles, "upload"):
                raise Forbidden("missing_role", "Not allowed to upload documents")
            task = await orchestrator.upload(
                request,
                max_bytes=policy.limits.max_upload_bytes,
                prefix=settings.upload_prefix,
            )
        except MeshError as refusal:
            error = refusal

        runtime.gate.audit.outcome(
            principal,
            method="upload",
            path=request.url.path,
            client_address=request.client.host if request.client else None,
            started=started,
            error=error,
        )
        if error is not None:
            status = UPLOAD_STATUS.get(type(error), error.http_status)
            return mesh_error_response(error, status)
        return MeshJSONResponse(task, status_code=202)

    return app
