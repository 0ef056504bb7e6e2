"""Settings of the archivist (``MESH_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class ArchivistSettings(ServiceSettings):
    service_name: str = "archivist"
    port: int = Field(8004, ge=0, le=65535)
