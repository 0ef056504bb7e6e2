"""Every setting the mesh reads, as the README's settings table lists it: name,
default and readers come from the code; the meaning is the README's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.archivist.settings import ArchivistSettings
from services.extractor.settings import ExtractorSettings
from services.identity.settings import IdentitySettings
from services.launcher.container import PEM_VARIABLES, RUNTIME_DIR_VARIABLE
from services.orchestrator.settings import OrchestratorSettings
from services.validator.settings import ValidatorSettings

ROOT = Path(__file__).resolve().parents[2]

SERVICES: dict[str, type[BaseSettings]] = {
    "orchestrator": OrchestratorSettings,
    "extractor": ExtractorSettings,
    "validator": ValidatorSettings,
    "archivist": ArchivistSettings,
}
ALL_SERVICES = "all four services"
ENTRYPOINT = "`a2a-mesh serve`"
IDENTITY = "identity stand-in"


def expected_rows() -> Iterator[tuple[str, str, str]]:
    """(name, default, read by) of every setting, services first."""
    # The common settings first (the validator has nothing else), then each
    # service's own; readers always in the same order.
    fields: dict[str, dict[str, FieldInfo]] = {}
    for service in ("validator", *SERVICES):
        for field in SERVICES[service].model_fields:
            fields.setdefault(field, {})
    for service, settings in SERVICES.items():
        for field, info in settings.model_fields.items():
            fields[field][service] = info

    for field, by_service in fields.items():
        readers = (
            ALL_SERVICES if len(by_service) == len(SERVICES) else ", ".join(by_service)
        )
        yield f"MESH_{field.upper()}", _defaults(by_service), readers

    yield RUNTIME_DIR_VARIABLE, "`/run/mesh`", ENTRYPOINT
    for variable in PEM_VARIABLES:
        yield variable, "—", ENTRYPOINT

    for field, info in IdentitySettings.model_fields.items():
        yield f"MESH_IDP_{field.upper()}", _default(info), IDENTITY


def _defaults(by_service: dict[str, FieldInfo]) -> str:
    shown = {service: _default(info) for service, info in by_service.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return ", ".join(f"{value} ({service})" for service, value in shown.items())


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    return _show(info.get_default(call_default_factory=True))


def _show(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`" if value else "—"
    if isinstance(value, Path):
        return f"`{value.resolve().relative_to(ROOT)}`"
    return f"`{value}`"


def readme_rows(readme: str, heading: str) -> list[tuple[str, str, str, str]]:
    """The rows of the first table under ``heading``: name, default, read
    by, meaning."""
    lines = readme.splitlines()
    start = lines.index(heading)
    rows: list[tuple[str, str, str, str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        name, default, readers, meaning = cells
        rows.append((name.strip("`"), default, readers, meaning))
    return rows
