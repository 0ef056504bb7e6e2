"""Settings of the extractor (``MESH_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings, StorageSettings


class ExtractorSettings(ServiceSettings, StorageSettings):
    service_name: str = "extractor"
    port: int = Field(8002, ge=0, le=65535)
    max_document_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_pdf_pages: int = Field(500, gt=0)
    max_text_chars: int = Field(1_000_000, gt=0)
    """Longer text is cut, so a result always fits the next hop's body limit."""
    max_table_rows: int = Field(10_000, gt=0)
