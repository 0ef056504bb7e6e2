"""The orchestrator: the mesh's front door and the owner of task state."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

from fastapi import FastAPI, Request
from google.protobuf.json_format import MessageToDict

from services.orchestrator.a2a_card import RPC_PATH, public_card
from services.orchestrator.a2a_handler import MeshA2AHandler
from services.orchestrator.a2a_routes import a2a_dispatch, add_a2a_route
from services.orchestrator.admin import ADMIN_BODY_BYTES, add_admin_routes
from services.orchestrator.methods import Orchestrator
from services.orchestrator.openapi import OPENAPI_PATH, describe
from services.orchestrator.pipeline import Agents, Pipeline
from services.orchestrator.runner import TaskRunner
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.tasks import TaskRepository
from services.orchestrator.upload import UPLOAD_STATUS
from shared.auth.policy import SecurityPolicy
from shared.errors import Forbidden, MeshError
from shared.runtime import Runtime
from shared.secrets import SecretStore
from shared.service import (
    MeshJSONResponse,
    ServiceParts,
    create_service_app,
    mesh_error_response,
    principal_of,
)
from shared.storage import DocumentStorage

_RESUME_LIMIT = 10_000
# Room for the multipart framing around the largest file.
_MULTIPART_OVERHEAD = 64 * 1024


def create_app(
    settings: OrchestratorSettings, secrets: SecretStore | None = None
) -> FastAPI:
    policy = SecurityPolicy.load(settings.policy_file)

    async def build(runtime: Runtime, stack: AsyncExitStack) -> ServiceParts:
        database = runtime.database
        tasks = TaskRepository(database)
        agents = Agents(
            extractor=runtime.agent("extractor", settings.extractor_url),
            validator=runtime.agent("validator", settings.validator_url),
            archivist=runtime.agent("archivist", settings.archivist_url),
        )
        runner = TaskRunner(
            Pipeline(agents, tasks), tasks, concurrency=settings.max_concurrent_tasks
        )
        stack.push_async_callback(runner.stop, 15.0)
        runner.resume(await tasks.unfinished(_RESUME_LIMIT))
        watch = asyncio.create_task(
            runner.watch(
                interval=settings.task_watch_interval_seconds,
                stale_after=settings.task_stale_seconds,
            )
        )
        stack.callback(watch.cancel)
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
