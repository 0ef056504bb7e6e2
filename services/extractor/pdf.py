"""PDF pages as text, with pypdf; encrypted and broken files become rejections.

Each page is read twice: pypdf's plain mode gives the text people search, and
its layout mode keeps labels and values on one line (or in one column), which
is what :mod:`services.extractor.fields` needs. A page that fails in one mode
falls back to the other; a page that fails in both is empty, with a warning.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import Final

from pypdf import PasswordType, PdfReader
from pypdf.errors import PdfReadWarning

from services.extractor.text import clean_text
from shared.documents import Page
from shared.errors import DocumentRejected

# pypdf logs every robustness fix it applies to a damaged file at WARNING; those
# are expected for documents from outside and would drown the service's log.
logging.getLogger("pypdf").setLevel(logging.ERROR)

PDF_MAGIC: Final = b"%PDF-"
# A missing or wrong startxref offset is the most common damage. Pointing a
# fresh trailer at offset 0 makes pypdf rebuild the table by scanning objects.
_REBUILD_TRAILER: Final = b"\nstartxref\n0\n%%EOF\n"
_REPAIRED: Final = "The PDF was damaged; its cross-reference table was rebuilt"


@dataclass(frozen=True)
class PdfContent:
    """What a PDF holds: its pages, a layout rendering, and what went wrong."""

    pages: list[Page]
    layout_text: str
    """All pages in pypdf's layout mode, for reading labelled fields."""
    warnings: list[str] = field(default_factory=list)


def read_pdf(data: bytes, *, max_pages: int) -> PdfContent:
    """Extract the text of every page.

    Raises ``DocumentRejected`` with reason ``encrypted_pdf`` when a password
    is needed, ``unreadable_pdf`` when the file cannot be parsed even after
    repair, and ``too_large`` when it has more than ``max_pages`` pages.
    """
    with warnings.catch_warnings():
        # pypdf reports damage through logging; this guards older habits.
        warnings.simplefilter("ignore", PdfReadWarning)
        reader, page_count, repaired = _open(data)

        if page_count > max_pages:
            raise DocumentRejected(
                "too_large",
                f"The PDF has {page_count} pages; at most {max_pages} are accepted",
            )

        notes = [_REPAIRED] if repaired else []
        return _read_pages(reader, page_count, notes)


def _open(data: bytes) -> tuple[PdfReader, int, bool]:
    # pypdf raises many exception types on malformed input (its own, but also
    # KeyError, ValueError, RecursionError...): any of them means "damaged".
    try:
        reader, count = _load(data)
    except DocumentRejected:
        raise
    except Exception as first:
        try:
            reader, count = _load(data + _REBUILD_TRAILER)
        except DocumentRejected:
            raise
        except Exception:
            raise DocumentRejected(
                "unreadable_pdf",
                "The PDF is damaged and could not be read, even after repair",
            ) from first
        return reader, count, True
    return reader, count, False


def _load(data: bytes) -> tuple[PdfReader, int]:
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        _decrypt(reader)
    return reader, len(reader.pages)


def _decrypt(reader: PdfReader) -> None:
    """Open a PDF protected only by an owner password; refuse all others."""
    try:
        opened = reader.decrypt("")
    except Exception as exc:
        # Unsupported algorithms and malformed encryption dictionaries alike.
        raise _encrypted() from exc
    if opened == PasswordType.NOT_DECRYPTED:
        raise _encrypted()


def _encrypted() -> DocumentRejected:
    return DocumentRejected(
        "encrypted_pdf", "The PDF is encrypted and needs a password to open"
    )


def _read_pages(reader: PdfReader, page_count: int, notes: list[str]) -> PdfContent:
    pages: list[Page] = []
    layouts: list[str] = []
    problems = list(notes)
    for number in range(1, page_count + 1):
        plain, layout = _page_texts(reader, number)
        if plain is None and layout is None:
            problems.append(f"page {number} could not be read")
        pages.append(Page(number=number, text=clean_text(plain or layout or "")))
        layouts.append(clean_text(layout or plain or ""))

    if page_count and not any(page.text.strip() for page in pages):
        problems.append(
            "No text found in the PDF: it may hold scanned images, and the "
            "extractor does not do OCR"
        )
    return PdfContent(pages, "\n\n".join(layouts), problems)


def _page_texts(reader: PdfReader, number: int) -> tuple[str | None, str | None]:
    # Same reasoning as in _open: a bad content stream can raise anything.
    try:
        page = reader.pages[number - 1]
    except Exception:
        return None, None

    try:
        plain: str | None = page.extract_text().strip()
    except Exception:
        plain = None
    try:
        layout: str | None = page.extract_text(
            extraction_mode="layout", layout_mode_space_vertically=False
        )
    except Exception:
        layout = None
    return plain, layout
