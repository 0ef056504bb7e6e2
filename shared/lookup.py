"""Parameters of the archive look-ups, which the archivist answers and the
orchestrator passes on for callers outside the mesh."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from shared.documents import DocumentType, S3Key, printable
from shared.jsonrpc import Handler, Method, NoParams, Params

SearchText = Annotated[
    str, Field(min_length=1, max_length=200), AfterValidator(printable)
]


class GetDocumentParams(Params):
    # The schema says what the validator below checks: one of the two, as text.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "properties": {"document_id": {"type": "string"}},
                    "required": ["document_id"],
                },
                {"properties": {"s3_key": {"type": "string"}}, "required": ["s3_key"]},
            ]
        }
    )

    document_id: uuid.UUID | None = Field(None, strict=False)
    s3_key: S3Key | None = None
    include_pages: bool = False
    """The text page by page too; without it, ``extracted_data`` has no pages."""

    @model_validator(mode="after")
    def _exactly_one(self) -> GetDocumentParams:
        if (self.document_id is None) == (self.s3_key is None):
            raise ValueError("give exactly one of document_id and s3_key")
        return self


class SearchParams(Params):
    document_type: DocumentType | None = None
    text: SearchText | None = None
    min_score: int | None = Field(None, ge=0, le=100)
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=10_000)


def lookup_methods(
    get_document: Handler[GetDocumentParams],
    search_documents: Handler[SearchParams],
    get_document_stats: Handler[NoParams],
) -> list[Method[Any]]:
    """The three look-up methods, for whichever service answers them."""
    return [
        Method(
            "get_document",
            GetDocumentParams,
            get_document,
            "One archived document by document_id or s3_key, with its latest "
            "processing-log rows (and its pages with include_pages).",
        ),
        Method(
            "search_documents",
            SearchParams,
            search_documents,
            "Archived documents by type, text and minimum score.",
        ),
        Method(
            "get_document_stats",
            NoParams,
            get_document_stats,
            "Counts and average scores per document type.",
        ),
    ]
