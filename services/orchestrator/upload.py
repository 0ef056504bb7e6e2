"""``POST /documents``: a multipart upload stored in S3 that starts a task."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import PurePosixPath

from starlette.datastructures import UploadFile

from shared.errors import (
    DependencyUnavailable,
    DocumentRejected,
    InvalidParams,
    MeshError,
)

# Extension → content type the upload is stored with. Anything else is refused
# before it reaches S3, so the extractor only sees formats it reads.
ACCEPTED_TYPES = {
    ".pdf": "application/pdf",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".tab": "text/tab-separated-values",
    ".txt": "text/plain",
}
# What a client may declare for each extension. Browsers and curl say
# octet-stream (or nothing) when they do not know, and Windows calls CSV an
# Excel type; a declaration that names another format is refused.
_UNKNOWN = frozenset({"application/octet-stream", ""})
_TABLE = frozenset({"text/csv", "application/csv", "application/vnd.ms-excel"})
_DECLARED_OK: dict[str, frozenset[str]] = {
    ".pdf": _UNKNOWN | {"application/pdf", "application/x-pdf"},
    ".csv": _UNKNOWN | _TABLE | {"text/plain"},
    ".tsv": _UNKNOWN | {"text/tab-separated-values", "text/plain"},
    ".tab": _UNKNOWN | {"text/tab-separated-values", "text/plain"},
    ".txt": _UNKNOWN | {"text/plain"},
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# A plain HTTP route answers with the HTTP status a client library expects.
UPLOAD_STATUS: dict[type[MeshError], int] = {
    InvalidParams: 400,
    DocumentRejected: 415,
    DependencyUnavailable: 503,
}


def object_key(prefix: str, file_name: str) -> str:
    """A fresh key under ``prefix``: date folders, a unique id, a safe name
    that keeps its extension however long the name was."""
    stem, suffix = _split(PurePosixPath(file_name).name)
    safe = _UNSAFE.sub("_", stem).strip("._")[:120] or "document"
    suffix = _UNSAFE.sub("_", suffix)
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    return f"{prefix.rstrip('/')}/{day}/{uuid.uuid4().hex}-{safe}{suffix}"


def _split(name: str) -> tuple[str, str]:
    """``("report", ".pdf")`` for ``report.pdf``; a bare ``.pdf`` is all suffix."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        return name, ""
    return stem, f".{extension.lower()}"


def content_type_of(upload: UploadFile) -> str:
    """The stored content type; refuses names and types the mesh cannot read."""
    name = upload.filename or ""
    _, suffix = _split(PurePosixPath(name).name)
    if suffix not in ACCEPTED_TYPES:
        raise DocumentRejected(
            "unsupported_type",
            f"Unsupported file type '{suffix or name}': "
            f"send one of {', '.join(sorted(ACCEPTED_TYPES))}",
        )

    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if declared not in _DECLARED_OK[suffix]:
        raise InvalidParams(
            f"Content type '{declared}' does not match a {suffix} file",
            data={"field": "file"},
        )
    return ACCEPTED_TYPES[suffix]
