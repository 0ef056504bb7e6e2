"""Documents in S3 through boto3, each call in a worker thread.

Every put requests server-side encryption. Errors are translated here, once:
a missing object is ``DocumentNotFound``, anything else from S3 or the network
is ``DependencyUnavailable("s3")``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import DependencyUnavailable, DocumentNotFound
from shared.logging import log_event
from shared.secrets import AwsEndpoint
from shared.settings import StorageSettings

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class StoredObject:
    key: str
    data: bytes
    content_type: str | None


class DocumentStorage:
    """Reads and writes document objects in one bucket."""

    def __init__(self, endpoint: AwsEndpoint, settings: StorageSettings) -> None:
        self._s3: S3Client = endpoint.client("s3")
        self._bucket = settings.s3_bucket
        self._encryption: dict[str, Any] = {"ServerSideEncryption": settings.s3_sse}
        if settings.s3_kms_key_id:
            self._encryption["SSEKMSKeyId"] = settings.s3_kms_key_id

    async def put(self, key: str, data: bytes, content_type: str) -> str | None:
        """Store ``data`` at ``key``; the version S3 gave it (see ``version``)."""
        response = await self._run(
            "put",
            key,
            lambda: self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                **self._encryption,
            ),
        )
        log_event(logger, "s3.put", key=key, size=len(data))
        return _version_of(response)

    async def discard(self, key: str) -> None:
        """Delete ``key`` if possible; a failure is logged, not raised."""
        try:
            await self._run(
                "delete",
                key,
                lambda: self._s3.delete_object(Bucket=self._bucket, Key=key),
            )
        except (DependencyUnavailable, DocumentNotFound):
            log_event(logger, "s3.discard_failed", level=logging.WARNING, key=key)
            return
        log_event(logger, "s3.discarded", key=key)

    async def get(self, key: str, *, max_bytes: int) -> StoredObject:
        """The object at ``key``; ``DocumentRejected`` is the caller's to raise."""

        def read() -> StoredObject:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"]
            try:
                data = body.read(max_bytes + 1)
            finally:
                body.close()
            return StoredObject(key, data, response.get("ContentType"))

        return await self._run("get", key, read)

    async def version(self, key: str) -> str | None:
        """S3's name for the object's current content (its version id, else
        its ETag), or None when there is no such object or S3 does not say.
        Two submissions of one version are one document."""

        def head() -> str | None:
            return _version_of(self._s3.head_object(Bucket=self._bucket, Key=key))

        try:
            return await self._run("head", key, head)
        except (DocumentNotFound, DependencyUnavailable):
            # The task reports a missing object, and retries an unreachable S3.
            return None

    async def check(self) -> None:
        """Raise unless the bucket answers; for readiness."""
        await self._run(
            "head_bucket", "", lambda: self._s3.head_bucket(Bucket=self._bucket)
        )

    async def _run(self, operation: str, key: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING and key:
                raise DocumentNotFound(key) from exc
            log_event(
                logger,
                "s3.failed",
                level=logging.ERROR,
                operation=operation,
                key=key,
                code=code,
            )
            raise DependencyUnavailable("s3") from exc
        except BotoCoreError as exc:
            log_event(
                logger,
                "s3.unreachable",
                level=logging.ERROR,
                operation=operation,
                error=type(exc).__name__,
            )
            raise DependencyUnavailable("s3") from exc


def _version_of(response: Mapping[str, Any]) -> str | None:
    """The object's version id, or in an unversioned bucket its ETag (which
    changes with the content)."""
    version = response.get("VersionId")
    if version in (None, "", "null"):
        version = response.get("ETag")
    return str(version) if version else None
