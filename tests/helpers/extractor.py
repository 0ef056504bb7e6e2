"""Extractor settings for unit tests: the required values filled in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.extractor.settings import ExtractorSettings


def extractor_settings(**overrides: Any) -> ExtractorSettings:
    """Settings as the environment would give them, with ``overrides``; the
    caller clears ``MESH_*`` variables first."""
    return ExtractorSettings(
        issuer="https://idp.test/realms/a2a-mesh",
        db_ca_file=Path("/etc/mesh/ca.pem"),
        **overrides,
    )
