"""Settings of the validator (``MESH_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class ValidatorSettings(ServiceSettings):
    service_name: str = "validator"
    port: int = Field(8003, ge=0, le=65535)
