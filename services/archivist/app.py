"""The archivist: stores results idempotently and answers look-ups."""

from __future__ import annotations

import logging
import uuid
from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI
from pydantic import Field

from services.archivist.repository import DocumentRepository, Step
from services.archivist.settings import ArchivistSettings
from shared.documents import Extraction, Validation
from shared.errors import DocumentNotFound
from shared.jsonrpc import Call, Method, NoParams, Params
from shared.logging import log_event
from shared.lookup import GetDocumentParams, SearchParams, lookup_methods
from shared.runtime import Runtime
from shared.secrets import SecretStore
from shared.service import ServiceParts, create_service_app

logger = logging.getLogger(__name__)


class StepParams(Params):
    step: str = Field(min_length=1, max_length=64)
    status: str = Field(min_length=1, max_length=32)
    duration_ms: float | None = Field(None, ge=0)
    detail: dict[str, Any] = Field(default_factory=dict)


class ArchiveParams(Params):
    task_id: uuid.UUID = Field(strict=False)
    extraction: Extraction
    validation: Validation
    steps: list[StepParams] = Field(default=[], max_length=32)


class Archivist:
    def __init__(self, documents: DocumentRepository) -> None:
        self._documents = documents

    def methods(self) -> list[Method[Any]]:
        return [
            Method(
                "archive_document",
                ArchiveParams,
                self.archive_document,
                "Store a document's extraction and validation, once per key and "
                "content, with a processing-log row per step.",
            ),
            *lookup_methods(
                self.get_document, self.search_documents, self.get_document_stats
            ),
        ]

    async def archive_document(self, params: ArchiveParams, call: Call) -> Any:
        steps = [Step(s.step, s.status, s.duration_ms, s.detail) for s in params.steps]
        steps.append(Step("archive_document", "ok", None, {}))
        archived = await self._documents.archive(
            params.task_id, params.extraction, params.validation, steps
        )
        log_event(
            logger,
            "document.archived",
            document_id=str(archived.document_id),
            s3_key=params.extraction.s3_key,
            created=archived.created,
        )
        return {"document_id": str(archived.document_id), "created": archived.created}

    async def get_document(self, params: GetDocumentParams, call: Call) -> Any:
        pages = params.include_pages
        if params.s3_key is not None:
            document = await self._documents.by_key(params.s3_key, with_pages=pages)
            if document is None:
                raise DocumentNotFound(params.s3_key)
            return document

        document_id = str(params.document_id)
        document = await self._documents.by_id(uuid.UUID(document_id), with_pages=pages)
        if document is None:
            raise DocumentNotFound(document_id=document_id)
        return document

    async def search_documents(self, params: SearchParams, call: Call) -> Any:
        documents = await self._documents.search(
            document_type=params.document_type,
            text=params.text,
            min_score=params.min_score,
            limit=params.limit,
            offset=params.offset,
        )
        return {"documents": documents, "count": len(documents)}

    async def get_document_stats(self, params: NoParams, call: Call) -> Any:
        return await self._documents.stats()


def create_app(
    settings: ArchivistSettings, secrets: SecretStore | None = None
) -> FastAPI:
    async def build(runtime: Runtime, stack: AsyncExitStack) -> ServiceParts:
        database = runtime.database
        return ServiceParts(
            methods=Archivist(DocumentRepository(database)).methods(),
        )

    return create_service_app(
        settings,
        description="Stores documents, results and the processing log in PostgreSQL.",
        build=build,
        secrets=secrets,
    )
