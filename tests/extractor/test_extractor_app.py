"""The extractor's method around its pool: the size limit before any worker
sees a document, and a request cancelled by the server's shutdown."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import cast

import pytest

from services.extractor.app import Extractor, ExtractParams
from services.extractor.pool import open_pool
from shared.auth.principal import Principal
from shared.errors import DependencyUnavailable, DocumentRejected
from shared.jsonrpc import Call
from shared.storage import DocumentStorage, StoredObject
from tests.helpers.extraction_jobs import misbehave
from tests.helpers.extractor import extractor_settings
from tests.helpers.processes import eventually, gone

CALL = Call(
    principal=Principal(
        subject="orchestrator",
        client_id="orchestrator",
        roles=frozenset({"orchestrator"}),
        jti=None,
        expires_at=0,
        issued_at=0,
    ),
    correlation_id=None,
)
PARAMS = ExtractParams(s3_key="uploads/doc.pdf")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MESH_"):
            monkeypatch.delenv(name)


class StoredDocument:
    """Storage holding one document, whatever the key."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def get(self, key: str, *, max_bytes: int) -> StoredObject:
        return StoredObject(key, self._data[: max_bytes + 1], "application/pdf")


async def test_document_over_the_size_limit_is_refused_before_any_worker_sees_it(
    tmp_path: Path,
) -> None:
    settings = extractor_settings(extract_workers=1, max_document_bytes=100)
    # Sent to a worker, this document would crash it.
    storage = StoredDocument(b"crash" + b" " * 200)

    async with open_pool(settings, job=misbehave) as pool:
        (worker,) = pool.pids
        extractor = Extractor(cast(DocumentStorage, storage), pool, settings)
        with pytest.raises(DocumentRejected) as refused:
            await extractor.extract_document(PARAMS, CALL)
        still = pool.pids

    assert refused.value.reason == "too_large"
    assert refused.value.message == "The document is larger than 100 bytes"
    assert still == [worker]


async def test_request_cancelled_mid_document_answers_that_the_extractor_stops(
    tmp_path: Path,
) -> None:
    settings = extractor_settings(extract_workers=1)
    started = tmp_path / "started"
    storage = StoredDocument(f"hang {started}".encode())

    async with open_pool(settings, job=misbehave) as pool:
        extractor = Extractor(cast(DocumentStorage, storage), pool, settings)
        call = asyncio.create_task(extractor.extract_document(PARAMS, CALL))
        assert await eventually(started.exists)
        worker = int(started.read_text())

        call.cancel()
        with pytest.raises(DependencyUnavailable) as stopped:
            await call

        assert await eventually(lambda: gone(worker))

    assert stopped.value.message == "the extractor is shutting down"
    assert stopped.value.code == -32013
    # The cancellation ended in the handler, as asyncio asks of one it absorbs.
    assert call.cancelling() == 0
