"""The extractor's entry point: bytes in, an :class:`Extraction` out.

The format comes from the content first (a PDF header, known binary
signatures, text that parses as a table) and from the key's extension and the
declared content type second. Anything the extractor cannot read becomes a
``DocumentRejected`` with a machine-readable reason, never another exception.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final

from services.extractor.classify import classify
from services.extractor.columns import fields_from_table
from services.extractor.fields import fields_from_text
from services.extractor.pdf import PDF_MAGIC, read_pdf
from services.extractor.tabular import looks_tabular, read_table, render_table
from services.extractor.text import clean_text, decode_text, looks_binary
from shared.documents import (
    DocumentFormat,
    Extraction,
    KeyFields,
    Page,
    Table,
)
from shared.errors import DocumentRejected

CONTENT_TYPES: Final[dict[DocumentFormat, str]] = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "text": "text/plain",
}
_EXTENSIONS: Final[dict[str, DocumentFormat]] = {
    ".pdf": "pdf",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "text",
    ".text": "text",
}
_DECLARED_TYPES: Final[dict[str, DocumentFormat]] = {
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "text/csv": "csv",
    "application/csv": "csv",
    "text/x-csv": "csv",
    "text/tab-separated-values": "tsv",
    "text/plain": "text",
}
# A PDF header may follow some junk; readers accept it within the first 1 KiB.
_PDF_HEADER_WINDOW: Final = 1024
_SIGNATURES: Final = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document, which is one)"),
    (b"\xd0\xcf\x11\xe0", "a legacy Microsoft Office document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\x7fELF", "an executable"),
)
_SUPPORTED: Final = "the extractor reads PDF, CSV, TSV and plain text"
# Labelled fields sit in the first pages; reading further only costs time
# (about two seconds a million characters).
FIELD_TEXT_LIMIT: Final = 500_000
_UTF8: Final = frozenset({"utf-8", "utf-8-sig"})


@dataclass
class _Content:
    """What one reader produced, before hashing and classification."""

    format: DocumentFormat
    text: str
    key_fields: KeyFields
    pages: list[Page] = field(default_factory=list)
    page_count: int | None = None
    tables: list[Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def extract(
    data: bytes,
    *,
    s3_key: str,
    content_type: str | None = None,
    max_pdf_pages: int = 500,
    max_text_chars: int = 1_000_000,
    max_table_rows: int = 10_000,
) -> Extraction:
    """Extract text, tables and key fields from a document's bytes.

    Text beyond ``max_text_chars`` and rows beyond ``max_table_rows`` are cut,
    with a warning, so that the result stays small enough to pass along.

    Raises ``DocumentRejected`` (reasons ``empty_document``,
    ``unsupported_type``, ``encrypted_pdf``, ``unreadable_pdf``,
    ``undecodable_text``, ``too_large``, ``too_complex``) when the document
    cannot be read, and ``MemoryError`` when it needs more memory than there is.
    """
    if not data:
        raise DocumentRejected("empty_document", "The document is empty (0 bytes)")

    declared = declared_format(s3_key, content_type)
    if _is_pdf(data):
        content = _read_pdf(data, max_pdf_pages)
    else:
        content = _read_text_like(data, declared, max_table_rows)

    if declared and _family(declared) != _family(content.format):
        content.warnings.append(
            f"The document is declared as {declared} but its content is "
            f"{content.format}; it was read as {content.format}"
        )
    _bound(content, max_text_chars, max_table_rows)
    return Extraction(
        s3_key=s3_key,
        content_hash=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        content_type=CONTENT_TYPES[content.format],
        format=content.format,
        document_type=classify(
            content.format, content.text, content.key_fields, content.tables
        ),
        page_count=content.page_count,
        pages=content.pages,
        text=content.text,
        tables=content.tables,
        key_fields=content.key_fields,
        warnings=content.warnings,
    )


def _bound(content: _Content, max_chars: int, max_rows: int) -> None:
    """Cut text, pages and rows to the limits, saying so in the warnings."""
    if len(content.text) > max_chars:
        content.warnings.append(
            f"The text was cut to its first {max_chars} of {len(content.text)} "
            "characters"
        )
        content.text = content.text[:max_chars]

    kept: list[Page] = []
    room = max_chars
    for page in content.pages:
        if room <= 0:
            break
        kept.append(
            page
            if len(page.text) <= room
            else page.model_copy(update={"text": page.text[:room]})
        )
        room -= len(page.text)
    content.pages = kept

    for index, table in enumerate(content.tables):
        rows = table.rows[:max_rows]
        if table.row_count > len(rows):
            content.warnings.append(
                f"Only the first {len(rows)} of {table.row_count} rows were kept"
            )
        content.tables[index] = table.model_copy(update={"rows": rows})


def declared_format(s3_key: str, content_type: str | None) -> DocumentFormat | None:
    """The format the key's extension or, failing that, the content type names."""
    by_extension = _EXTENSIONS.get(PurePosixPath(s3_key).suffix.lower())
    if by_extension:
        return by_extension
    if content_type:
        return _DECLARED_TYPES.get(content_type.split(";")[0].strip().lower())
    return None


def _is_pdf(data: bytes) -> bool:
    return PDF_MAGIC in data[:_PDF_HEADER_WINDOW]


def _family(document_format: DocumentFormat) -> str:
    # CSV and TSV differ only by delimiter, which the content decides.
    return "table" if document_format in ("csv", "tsv") else document_format


def _read_pdf(data: bytes, max_pages: int) -> _Content:
    pdf = read_pdf(data, max_pages=max_pages)
    warnings = list(pdf.warnings)
    return _Content(
        format="pdf",
        text="\n\n".join(page.text for page in pdf.pages),
        key_fields=_text_fields(pdf.layout_text, warnings),
        pages=pdf.pages,
        page_count=len(pdf.pages),
        warnings=warnings,
    )


def _read_text_like(
    data: bytes, declared: DocumentFormat | None, max_rows: int
) -> _Content:
    if declared == "pdf":
        raise DocumentRejected(
            "unreadable_pdf", "The document is declared as a PDF but has no PDF header"
        )
    for signature, description in _SIGNATURES:
        if data.startswith(signature):
            raise DocumentRejected(
                "unsupported_type", f"The document is {description}; {_SUPPORTED}"
            )
    if looks_binary(data):
        raise DocumentRejected(
            "unsupported_type",
            f"The document is binary data of no known type; {_SUPPORTED}",
        )

    decoded = decode_text(data)
    text = clean_text(decoded.text)
    if not text.strip():
        raise DocumentRejected(
            "empty_document", "The document holds nothing but whitespace"
        )

    warnings = []
    if decoded.encoding not in _UTF8:
        warnings.append(f"The text is not UTF-8; it was read as {decoded.encoding}")
    if declared in ("csv", "tsv") or (declared is None and looks_tabular(text)):
        return _read_table(text, decoded.encoding, declared, warnings, max_rows)
    return _read_plain(text, warnings)


def _read_table(
    text: str,
    encoding: str,
    declared: DocumentFormat | None,
    warnings: list[str],
    max_rows: int,
) -> _Content:
    hint = "\t" if declared == "tsv" else None
    table = read_table(text, encoding=encoding, delimiter_hint=hint, max_rows=max_rows)
    return _Content(
        format="tsv" if table.delimiter == "\t" else "csv",
        text=render_table(table),
        key_fields=fields_from_table(table),
        tables=[table],
        warnings=warnings,
    )


def _read_plain(text: str, warnings: list[str]) -> _Content:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _Content(
        format="text",
        text=text,
        key_fields=_text_fields(text, warnings),
        warnings=warnings,
    )


def _text_fields(text: str, warnings: list[str]) -> KeyFields:
    if len(text) > FIELD_TEXT_LIMIT:
        warnings.append(
            f"Key fields were read from the first {FIELD_TEXT_LIMIT} characters "
            f"of {len(text)}"
        )
    return fields_from_text(text[:FIELD_TEXT_LIMIT])
