"""Settings of the archivist (``MESH_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import DatabaseSettings, ServiceSettings


class ArchivistSettings(ServiceSettings, DatabaseSettings):
    service_name: str = "archivist"
    port: int = Field(8004, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)
