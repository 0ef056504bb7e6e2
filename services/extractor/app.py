"""The extractor: reads an object from S3 and returns its text, tables and fields."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

from fastapi import FastAPI

from services.extractor.pool import ExtractionPool, open_pool
from services.extractor.settings import ExtractorSettings
from shared.documents import S3Key
from shared.errors import DependencyUnavailable, DocumentRejected
from shared.jsonrpc import Call, Method, NoParams, Params
from shared.logging import log_event
from shared.runtime import Runtime
from shared.secrets import SecretStore
from shared.service import ServiceParts, create_service_app
from shared.storage import DocumentStorage

logger = logging.getLogger(__name__)


SUPPORTED_FORMATS = [
    {"format": "pdf", "content_types": ["application/pdf"], "extensions": [".pdf"]},
    {"format": "csv", "content_types": ["text/csv"], "extensions": [".csv"]},
    {
        "format": "tsv",
        "content_types": ["text/tab-separated-values"],
        "extensions": [".tsv", ".tab"],
    },
    {"format": "text", "content_types": ["text/plain"], "extensions": [".txt"]},
]


class ExtractParams(Params):
    s3_key: S3Key


class Extractor:
    """The extractor's methods, over one bucket."""

    def __init__(
        self,
        storage: DocumentStorage,
        pool: ExtractionPool,
        settings: ExtractorSettings,
    ) -> None:
        self._storage = storage
        self._pool = pool
        self._settings = settings

    def methods(self) -> list[Method[Any]]:
        return [
            Method(
                "extract_document",
                ExtractParams,
                self.extract_document,
                "Extract text (per page for PDFs), tables and key fields "
                "from the object at s3_key.",
            ),
            Method(
                "list_supported_formats",
                NoParams,
                self.list_supported_formats,
                "The document formats this extractor reads.",
            ),
        ]

    async def extract_document(self, params: ExtractParams, call: Call) -> Any:
        try:
            return await self._extract(params.s3_key)
        except asyncio.CancelledError:
            # Nothing cancels a request here but the server's shutdown, once
            # its grace is over; uvicorn would log the cancellation as a
            # crash. The worker is stopped already: the caller hears "retry
            # later" instead, and the cancellation ends here (uncancel).
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            log_event(logger, "document.abandoned", s3_key=params.s3_key)
            raise DependencyUnavailable(
                "extractor", "the extractor is shutting down"
            ) from None

    async def _extract(self, s3_key: str) -> dict[str, Any]:
        limit = self._settings.max_document_bytes
        stored = await self._storage.get(s3_key, max_bytes=limit)
        if len(stored.data) > limit:
            raise DocumentRejected(
                "too_large", f"The document is larger than {limit} bytes"
            )

        # Parsing is CPU-bound and the document hostile until proven
        # otherwise: it happens in a worker process that can be killed.
        extraction = await self._pool.extract(
            stored.data, s3_key=s3_key, content_type=stored.content_type
        )
        log_event(
            logger,
            "document.extracted",
            s3_key=s3_key,
            format=extraction.get("format"),
            document_type=extraction.get("document_type"),
            pages=extraction.get("page_count"),
        )
        return extraction

    async def list_supported_formats(self, params: NoParams, call: Call) -> Any:
        return {"formats": SUPPORTED_FORMATS}


def create_app(
    settings: ExtractorSettings, secrets: SecretStore | None = None
) -> FastAPI:
    async def build(runtime: Runtime, stack: AsyncExitStack) -> ServiceParts:
        storage = DocumentStorage(runtime.aws, settings)
        pool = await stack.enter_async_context(open_pool(settings))
        return ServiceParts(
            methods=Extractor(storage, pool, settings).methods(),
            checks={"s3": storage.check, "workers": pool.check},
        )

    return create_service_app(
        settings,
        description="Extracts text, tables and key fields from PDF, CSV/TSV and text.",
        build=build,
        secrets=secrets,
    )
