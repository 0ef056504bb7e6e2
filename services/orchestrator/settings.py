"""Settings of the orchestrator (``MESH_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings, StorageSettings


class OrchestratorSettings(ServiceSettings, StorageSettings):
    service_name: str = "orchestrator"
    port: int = Field(8001, ge=0, le=65535)
    accept_bearer_tokens: bool = True
    """Callers outside the mesh (a Lambda, a script) may not hold DPoP keys."""

    extractor_url: str = "http://127.0.0.1:8002"
    validator_url: str = "http://127.0.0.1:8003"
    archivist_url: str = "http://127.0.0.1:8004"

    upload_prefix: str = "uploads/"
    max_concurrent_tasks: int = Field(16, ge=1)
    """Pipelines run at once by this replica; more wait their turn."""
    task_watch_interval_seconds: float = Field(10.0, gt=0)
    task_stale_seconds: float = Field(60.0, gt=0)
    """An unfinished task untouched this long is run again."""
