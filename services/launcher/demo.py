"""``a2a-mesh demo``: upload documents into a running mesh and report each outcome."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from services.launcher.caller import CallerError, MeshCaller
from services.orchestrator.upload import ACCEPTED_TYPES

SAMPLES = Path(__file__).parent / "samples"
DEMO_CLIENT = "document-processor"
_PARALLEL_UPLOADS = 8


@dataclass(frozen=True)
class Outcome:
    """What became of one file."""

    file: str
    status: str
    document_type: str | None = None
    score: int | None = None
    reason: str | None = None
    reason_code: str | None = None
    task_id: str | None = None
    document_id: str | None = None
    duration_ms: float | None = None


def collect(paths: Sequence[Path]) -> list[Path]:
    """Files named directly, and the readable documents inside named folders."""
    found: list[Path] = []
    for path in paths or [SAMPLES]:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix.lower() in ACCEPTED_TYPES
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"No such file or folder: {path}")
    return found


async def process_all(caller: MeshCaller, files: Sequence[Path]) -> list[Outcome]:
    slots = asyncio.Semaphore(_PARALLEL_UPLOADS)

    async def one(path: Path) -> Outcome:
        async with slots:
            return await _process(caller, path)

    return list(await asyncio.gather(*(one(path) for path in files)))


async def _process(caller: MeshCaller, path: Path) -> Outcome:
    started = time.perf_counter()
    response = await caller.upload(path)
    body: dict[str, Any] = response.json()
    if response.status_code != 202:
        error = body.get("error", {})
        return Outcome(path.name, "rejected", reason=error.get("message"))

    try:
        task = await caller.wait(body["task_id"])
    except CallerError as exc:
        return Outcome(path.name, "lost", reason=str(exc), task_id=body["task_id"])

    result = task.get("result") or {}
    return Outcome(
        file=path.name,
        status=task["status"],
        document_type=result.get("document_type"),
        score=result.get("validation_score"),
        reason=task.get("reason"),
        reason_code=task.get("reason_code"),
        task_id=task["task_id"],
        document_id=task.get("document_id"),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )


def summary(outcomes: Iterable[Outcome], elapsed: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return {
        "documents": sum(counts.values()),
        **counts,
        "elapsed_seconds": round(elapsed, 2),
    }


def print_table(
    outcomes: Sequence[Outcome], totals: dict[str, Any], out: TextIO
) -> None:
    headers = ("file", "status", "type", "score", "reason")
    rows = [
        (
            o.file,
            o.status,
            o.document_type or "-",
            "-" if o.score is None else str(o.score),
            o.reason or "",
        )
        for o in outcomes
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:4])
    ]
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]).rstrip(), file=out)

    parts = [
        f"{key} {value}" for key, value in totals.items() if key != "elapsed_seconds"
    ]
    print(f"\n{', '.join(parts)} in {totals['elapsed_seconds']} s", file=out)


def print_json(
    outcomes: Sequence[Outcome], totals: dict[str, Any], out: TextIO
) -> None:
    document = {"documents": [asdict(o) for o in outcomes], "summary": totals}
    print(json.dumps(document, indent=2, ensure_ascii=False), file=out)
