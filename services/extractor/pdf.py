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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from pypdf import PasswordType, PdfReader
from pypdf.errors import LimitReachedError, PdfReadWarning

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
# Errors that say "too much", not "damaged": pypdf's own limits (a stream
# that inflates past 75 MB, a page tree too deep...) and Python's recursion
# limit (objects nested thousands deep). pypdf wraps some in its own errors.
_LIMITS: Final = (LimitReachedError, RecursionError)
# How far down a chain of wrapped exceptions the cause is looked for.
_CAUSE_DEPTH: Final = 8


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
    repair, ``too_large`` when it has more than ``max_pages`` pages, and
    ``too_complex`` when reading it goes past a safety limit. ``MemoryError``
    is left to the caller.
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
    # KeyError, ValueError...): any of them means "damaged", unless a limit
    # is behind it (then a repair would only repeat the same work).
    try:
        reader, count = _load(data)
    except DocumentRejected:
        raise
    except Exception as first:
        _refuse_if_exhausted(first)
        try:
            reader, count = _load(data + _REBUILD_TRAILER)
        except DocumentRejected:
            raise
        except Exception as second:
            _refuse_if_exhausted(second)
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


def _refuse_if_exhausted(error: Exception) -> None:
    """Raise what ``error`` really means when a limit is behind it: the
    ``MemoryError`` itself (the extraction worker reports it), or
    ``too_complex``. Return when it is ordinary damage."""
    cause: BaseException | None = error
    for _ in range(_CAUSE_DEPTH):
        if cause is None:
            return
        if isinstance(cause, MemoryError):
            raise cause
        if isinstance(cause, _LIMITS):
            what = (
                "its objects are nested too deeply"
                if isinstance(cause, RecursionError)
                else "it goes past a safety limit of the PDF reader (such as "
                "a stream that expands to more than 75 MB)"
            )
            raise DocumentRejected(
                "too_complex", f"The PDF is too complex to read: {what}"
            ) from error
        cause = cause.__cause__ or cause.__context__


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
    # Same reasoning as in _open: a bad content stream can raise anything,
    # and a page that is merely damaged costs only its own text. A page that
    # is too much for the reader ends the document: a bomb is no accident.
    try:
        page = reader.pages[number - 1]
    except Exception as exc:
        _refuse_if_exhausted(exc)
        return None, None
    plain = _text(lambda: page.extract_text().strip())
    layout = _text(
        lambda: page.extract_text(
            extraction_mode="layout", layout_mode_space_vertically=False
        )
    )
    return plain, layout


def _text(read: Callable[[], str]) -> str | None:
    try:
        return read()
    except Exception as exc:
        _refuse_if_exhausted(exc)
        return None
