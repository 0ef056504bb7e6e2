"""SQL for documents and the processing log; the only module that writes them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from shared.database import Database
from shared.documents import Extraction, Validation

_LOG_ROWS = 60

_DOCUMENT_COLUMNS = (
    "id, s3_key, content_hash, file_name, content_type, format, document_type,"
    " size_bytes, page_count, validation_score, created_at, updated_at"
)


@dataclass(frozen=True)
class Step:
    """One pipeline step of a task, as the processing log records it."""

    step: str
    status: str
    duration_ms: float | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Archived:
    document_id: uuid.UUID
    created: bool


class DocumentRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def archive(
        self,
        task_id: uuid.UUID,
        extraction: Extraction,
        validation: Validation,
        steps: list[Step],
    ) -> Archived:
        """Upsert the document and log its steps, in one transaction.

        The same key and content leave one row, and a step already logged for
        this task is not logged twice, so a retried call changes nothing.
        """
        async with self._db.transaction() as connection:
            row = await connection.fetchrow(
                """
                INSERT INTO documents (
                    id, s3_key, content_hash, file_name, content_type, format,
                    document_type, size_bytes, page_count, extracted_data,
                    validation, validation_score)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                ON CONFLICT (s3_key, content_hash) DO UPDATE SET
                    document_type = EXCLUDED.document_type,
                    extracted_data = EXCLUDED.extracted_data,
                    validation = EXCLUDED.validation,
                    validation_score = EXCLUDED.validation_score,
                    updated_at = now()
                RETURNING id, (xmax = 0) AS created
                """,
                uuid.uuid4(),
                extraction.s3_key,
                extraction.content_hash,
                extraction.s3_key.rsplit("/", 1)[-1],
                extraction.content_type,
                extraction.format,
                validation.document_type,
                extraction.size_bytes,
                extraction.page_count,
                extraction.model_dump_json(),
                validation.model_dump_json(),
                validation.score,
            )
            if row is None:
                raise RuntimeError("upsert returned no row")
            await connection.executemany(
                """
                INSERT INTO processing_log
                    (document_id, task_id, step, status, duration_ms, detail)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (task_id, step) DO NOTHING
                """,
                [
                    (
                        row["id"],
                        task_id,
                        s.step,
                        s.status,
                        s.duration_ms,
                        json.dumps(s.detail),
                    )
                    for s in steps
                ],
            )
        return Archived(row["id"], row["created"])

    async def by_id(
        self, document_id: uuid.UUID, *, with_pages: bool = False
    ) -> dict[str, Any] | None:
        return await self._one("id = $1", document_id, with_pages)

    async def by_key(
        self, s3_key: str, *, with_pages: bool = False
    ) -> dict[str, Any] | None:
        return await self._one("s3_key = $1", s3_key, with_pages)

    async def _one(
        self, condition: str, value: object, with_pages: bool
    ) -> dict[str, Any] | None:
        # The pages repeat the text; leaving them out halves a large answer.
        extracted = "extracted_data" if with_pages else "extracted_data - 'pages'"
        row = await self._db.fetchrow(
            f"SELECT {_DOCUMENT_COLUMNS}, {extracted} AS extracted_data,"  # noqa: S608
            " validation"
            f" FROM documents WHERE {condition}"
            " ORDER BY updated_at DESC LIMIT 1",
            value,
        )
        if row is None:
            return None

        document = _summary(row)
        document["extracted_data"] = json.loads(row["extracted_data"])
        document["validation"] = json.loads(row["validation"])
        document["processing_log"] = await self._log(row["id"])
        return document

    async def _log(self, document_id: uuid.UUID) -> list[dict[str, Any]]:
        # The newest steps only: a document processed many times has many.
        rows = await self._db.fetch(
            "SELECT * FROM (SELECT id, task_id, step, status, duration_ms, detail,"
            " created_at FROM processing_log WHERE document_id = $1"
            " ORDER BY id DESC LIMIT $2) AS newest ORDER BY id",
            document_id,
            _LOG_ROWS,
        )
        return [
            {
                "task_id": str(r["task_id"]),
                "step": r["step"],
                "status": r["status"],
                "duration_ms": r["duration_ms"],
                "detail": json.loads(r["detail"]),
                "created_at": r["created_at"].isoformat(),
            }
            for r in rows
        ]

    async def search(
        self,
        *,
        document_type: str | None,
        text: str | None,
        min_score: int | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        pattern = None
        if text:
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"

        rows = await self._db.fetch(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents"  # noqa: S608
            " WHERE ($1::text IS NULL OR document_type = $1)"
            "   AND ($2::text IS NULL OR extracted_data->>'text' ILIKE $2"
            "        OR s3_key ILIKE $2)"
            "   AND ($3::int IS NULL OR validation_score >= $3)"
            " ORDER BY updated_at DESC, id LIMIT $4 OFFSET $5",
            document_type,
            pattern,
            min_score,
            limit,
            offset,
        )
        return [_summary(row) for row in rows]

    async def stats(self) -> dict[str, Any]:
        rows = await self._db.fetch(
            "SELECT document_type, count(*) AS documents,"
            " round(avg(validation_score), 1) AS average_score"
            " FROM documents GROUP BY document_type ORDER BY document_type"
        )
        by_type = {
            r["document_type"]: {
                "documents": r["documents"],
                "average_score": float(r["average_score"]),
            }
            for r in rows
        }
        return {
            "documents": sum(v["documents"] for v in by_type.values()),
            "by_type": by_type,
        }


def _summary(row: Any) -> dict[str, Any]:
    return {
        "document_id": str(row["id"]),
        "s3_key": row["s3_key"],
        "content_hash": row["content_hash"],
        "file_name": row["file_name"],
        "content_type": row["content_type"],
        "format": row["format"],
        "document_type": row["document_type"],
        "size_bytes": row["size_bytes"],
        "page_count": row["page_count"],
        "validation_score": row["validation_score"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
