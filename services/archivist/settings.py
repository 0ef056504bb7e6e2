"""Settings of the archivist (``MESH_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import DatabaseSettings, ServiceSettings


class ArchivistSettings(ServiceSettings, DatabaseSettings):
    service_name: str = "archivist"
    port: int = Field(8004, ge=0, le=65535)
    # An extraction cut to the extractor's limits (a million characters of
    # text, escaped, plus its pages and 10,000 table rows) fits.
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
