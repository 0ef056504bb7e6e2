"""Settings of the validator (``MESH_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class ValidatorSettings(ServiceSettings):
    service_name: str = "validator"
    port: int = Field(8003, ge=0, le=65535)
    # An extraction cut to the extractor's limits (a million characters of
    # text, escaped, plus its pages and 10,000 table rows) fits.
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
