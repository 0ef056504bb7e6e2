"""Settings of the extractor (``MESH_*`` environment variables)."""

from __future__ import annotations

from typing import Final

from pydantic import Field, model_validator

from shared.settings import ServiceSettings, StorageSettings

_MIB: Final = 1024 * 1024
# A worker is an interpreter with the extraction modules imported (about
# 64 MiB of address space) that must at least take in the largest document.
_WORKER_BASE_MIB: Final = 128


class ExtractorSettings(ServiceSettings, StorageSettings):
    service_name: str = "extractor"
    port: int = Field(8002, ge=0, le=65535)
    max_document_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_pdf_pages: int = Field(500, gt=0)
    max_text_chars: int = Field(1_000_000, gt=0)
    """Longer text is cut, so a result always fits the next hop's body limit."""
    max_table_rows: int = Field(10_000, gt=0)
    extract_workers: int = Field(2, ge=1, le=64)
    """Worker processes that parse documents, one document each at a time."""
    extract_timeout_seconds: float = Field(20.0, gt=0)
    """Longest one document may be parsed; then its worker is killed. Below
    the orchestrator's HTTP timeout, so that the caller hears the reason."""
    extract_queue_seconds: float = Field(10.0, ge=0)
    """Longest a document waits for a free worker; then -32013, retry later."""
    extract_memory_mib: int = Field(768, gt=0)
    """Address space each worker may use; a document needing more is refused."""

    @model_validator(mode="after")
    def _document_fits_a_worker(self) -> ExtractorSettings:
        needed = _WORKER_BASE_MIB + -(-self.max_document_bytes // _MIB)
        if self.extract_memory_mib < needed:
            raise ValueError(
                f"MESH_EXTRACT_MEMORY_MIB must be at least {needed}: "
                f"{_WORKER_BASE_MIB} MiB beside the largest document "
                "(MESH_MAX_DOCUMENT_BYTES)"
            )
        return self
