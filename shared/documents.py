"""The shapes documents take as they travel extractor → validator → archivist."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

DocumentFormat = Literal["pdf", "csv", "tsv", "text"]
DocumentType = Literal["invoice", "contract", "report", "table", "document"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Page(_Model):
    number: int = Field(ge=1)
    text: str


class Table(_Model):
    """A delimited table as it was read: header, rows, and what was wrong."""

    encoding: str
    delimiter: str
    header: list[str]
    rows: list[list[str]]
    row_count: int = Field(ge=0)
    column_count: int = Field(ge=0)
    problems: list[str] = []


class Amount(_Model):
    """A money amount: ``value`` is a plain decimal string such as ``"15600.00"``."""

    value: str
    currency: str | None = None
    label: str | None = None


class KeyFields(_Model):
    invoice_number: str | None = None
    dates: list[str] = []
    """ISO 8601 dates (``YYYY-MM-DD``) in the order they appear."""
    amounts: list[Amount] = []
    total: Amount | None = None


class Extraction(_Model):
    """What the extractor found in one object."""

    s3_key: str
    content_hash: str
    """SHA-256 of the object's bytes, lower-case hex."""
    size_bytes: int = Field(ge=0)
    content_type: str
    format: DocumentFormat
    document_type: DocumentType
    page_count: int | None = None
    pages: list[Page] = []
    text: str = ""
    tables: list[Table] = []
    key_fields: KeyFields = KeyFields()
    warnings: list[str] = []


class RuleResult(_Model):
    rule: str
    passed: bool
    weight: int = Field(ge=0)
    reason: str


class Validation(_Model):
    """A score from 0 to 100 with the outcome and reason of every rule."""

    document_type: DocumentType
    score: int = Field(ge=0, le=100)
    passed: bool
    rules: list[RuleResult]


# Control, format (bidi overrides, zero-width), separator, surrogate and
# unassigned characters, and every space but the plain one: none belongs in a
# key or a search, and some would let a value disguise itself in a terminal or
# a log.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


_S3_KEY_BYTES = 1024


def printable(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` if it holds an unprintable character."""
    for ch in value:
        category = unicodedata.category(ch)
        if category in _UNPRINTABLE or (category == "Zs" and ch != " "):
            raise ValueError(f"must not contain the character U+{ord(ch):04X}")
    return value


def _check_s3_key(key: str) -> str:
    if key.startswith("/") or "\\" in key:
        raise ValueError("must be a relative key without backslashes")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError("must not contain empty, '.' or '..' segments")
    if len(key.encode()) > _S3_KEY_BYTES:
        raise ValueError(f"must be at most {_S3_KEY_BYTES} bytes in UTF-8")
    return printable(key)


S3Key = Annotated[
    str, Field(min_length=1, max_length=1024), AfterValidator(_check_s3_key)
]
"""An object key the mesh accepts: relative, no ``..``, at most 1024 characters."""
