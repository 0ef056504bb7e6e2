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
    task_claim_interval_seconds: float = Field(1.0, gt=0)
    """How often free tasks are claimed and the leases of running ones renewed."""
    task_lease_seconds: float = Field(30.0, gt=0)
    """A task whose replica renewed its lease this long ago is taken over."""
    task_max_attempts: int = Field(12, ge=1)
    """Tries of a task whose dependencies are down before it fails."""
    task_retry_base_seconds: float = Field(1.0, gt=0)
    task_retry_max_seconds: float = Field(30.0, gt=0)
    """Backoff between a task's tries: doubling from the base up to the cap."""
    agent_probe_interval_seconds: float = Field(5.0, gt=0)
    """How often each agent's /ready is asked; every second while it is not."""
    task_drain_seconds: float = Field(15.0, ge=0)
    """On SIGTERM, how long running pipelines may finish before they are
    stopped and their tasks handed back."""
