"""PDF reading, including hostile and damaged files: a rejection, never a crash."""

from __future__ import annotations

import hashlib
import io
import random
import time

import pytest
from pypdf import PageObject, PdfWriter
from pypdf.errors import PdfReadError

from services.extractor.extraction import extract
from services.extractor.pdf import read_pdf
from shared.errors import DocumentRejected
from tests.helpers import hostile_pdfs

_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _page_objects(text: bytes, pages_dict: bytes) -> list[bytes]:
    stream = b"BT /F1 12 Tf 50 700 Td (" + text + b") Tj ET"
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        pages_dict,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        _FONT,
    ]


def _one_page(text: bytes) -> bytes:
    return hostile_pdfs.pdf(
        _page_objects(text, b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>")
    )


def _blank_pages(count: int, *, owner_password: str | None = None) -> bytes:
    writer = PdfWriter()
    for _ in range(count):
        writer.add_blank_page(width=612, height=792)
    if owner_password:
        writer.encrypt(
            user_password="", owner_password=owner_password, algorithm="AES-128"
        )
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _rejection(data: bytes, *, max_pages: int = 500) -> str:
    with pytest.raises(DocumentRejected) as caught:
        extract(data, s3_key="uploads/x.pdf", max_pdf_pages=max_pages)
    assert caught.value.message
    return caught.value.reason


def test_read_pdf_gives_page_text_and_layout_text() -> None:
    content = read_pdf(_one_page(b"Invoice Number: 12345"), max_pages=5)

    assert [(p.number, p.text) for p in content.pages] == [(1, "Invoice Number: 12345")]
    assert "Invoice Number: 12345" in content.layout_text
    assert content.warnings == []


def test_extract_reads_fields_from_a_generated_pdf() -> None:
    extraction = extract(_one_page(b"Invoice Number: 12345"), s3_key="a/b.pdf")

    assert extraction.page_count == 1
    assert extraction.key_fields.invoice_number == "12345"


def test_header_only_pdf_is_unreadable() -> None:
    assert _rejection(b"%PDF-1.4") == "unreadable_pdf"


def test_pdf_header_followed_by_noise_is_unreadable() -> None:
    noise = hashlib.shake_256(b"noise").digest(4096)

    assert _rejection(b"%PDF-1.7\n" + noise) == "unreadable_pdf"


def test_missing_startxref_offset_is_repaired_with_a_warning() -> None:
    damaged = hostile_pdfs.pdf(
        _page_objects(
            b"Total: 12.00 EUR", b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>"
        ),
        trailer=False,
    )
    damaged += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%%EOF\n"

    extraction = extract(damaged, s3_key="uploads/damaged.pdf")

    assert extraction.text == "Total: 12.00 EUR"
    assert extraction.warnings == [
        "The PDF was damaged; its cross-reference table was rebuilt"
    ]


def test_huge_claimed_page_count_is_not_believed() -> None:
    claimed = b"<< /Type /Pages /Count 100000000 /Kids [3 0 R] >>"
    extraction = extract(
        hostile_pdfs.pdf(_page_objects(b"Hello", claimed)), s3_key="x.pdf"
    )

    assert extraction.page_count == 1


def test_page_tree_loop_is_unreadable_not_a_hang() -> None:
    looped = b"<< /Type /Pages /Count 1 /Kids [2 0 R] >>"
    started = time.monotonic()

    assert (
        _rejection(hostile_pdfs.pdf(_page_objects(b"Hello", looped)))
        == "unreadable_pdf"
    )
    assert time.monotonic() - started < 5


def test_more_pages_than_the_limit_is_too_large() -> None:
    assert _rejection(_blank_pages(6), max_pages=5) == "too_large"


def test_pages_up_to_the_limit_are_read() -> None:
    extraction = extract(_blank_pages(5), s3_key="x.pdf", max_pdf_pages=5)

    assert extraction.page_count == 5


def test_pdf_without_text_warns_that_it_may_be_scanned() -> None:
    extraction = extract(_blank_pages(1), s3_key="scan.pdf")

    assert extraction.text == ""
    assert extraction.document_type == "document"
    assert any("OCR" in warning for warning in extraction.warnings)


def test_owner_password_only_pdf_is_opened() -> None:
    extraction = extract(_blank_pages(2, owner_password="owner"), s3_key="x.pdf")

    assert extraction.page_count == 2


def test_user_password_pdf_is_encrypted() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    writer.encrypt(user_password="secret", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)

    assert _rejection(buffer.getvalue()) == "encrypted_pdf"


def test_pdf_header_after_some_junk_is_still_a_pdf() -> None:
    data = b"junk before the header\n" + _one_page(b"Hello")

    assert extract(data, s3_key="x.pdf").text == "Hello"


def test_truncated_pdfs_are_read_or_rejected_never_crash() -> None:
    whole = _one_page(b"Invoice Number: 12345")
    for cut in range(9, len(whole), 23):
        try:
            extraction = extract(whole[:cut], s3_key="x.pdf")
        except DocumentRejected as exc:
            assert exc.reason == "unreadable_pdf"
        else:
            assert extraction.format == "pdf"


def test_corrupted_pdfs_are_read_or_rejected_never_crash() -> None:
    whole = _blank_pages(2)
    rng = random.Random(2024)  # noqa: S311 - seeded so that a failure reproduces
    for _ in range(40):
        damaged = bytearray(whole)
        for _ in range(8):
            damaged[rng.randrange(9, len(damaged))] = rng.randrange(256)
        try:
            extraction = extract(bytes(damaged), s3_key="x.pdf")
        except DocumentRejected as exc:
            assert exc.reason in {"unreadable_pdf", "encrypted_pdf", "too_large"}
        else:
            assert extraction.format == "pdf"


# --- hostile files: too much, not damaged --------------------------------


def test_content_nested_too_deeply_is_too_complex() -> None:
    with pytest.raises(DocumentRejected) as refused:
        extract(hostile_pdfs.deeply_nested(), s3_key="uploads/nested.pdf")

    assert refused.value.reason == "too_complex"
    assert refused.value.message == (
        "The PDF is too complex to read: its objects are nested too deeply"
    )


def test_nesting_pypdf_wraps_in_its_own_error_is_too_complex() -> None:
    # Nested in the page's dictionary, pypdf reports a PdfReadError whose
    # context is the RecursionError.
    nested = b"[" * 50_000 + b"]" * 50_000
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /X %s >>" % nested
    pages = b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>"
    data = hostile_pdfs.pdf([b"<< /Type /Catalog /Pages 2 0 R >>", pages, page])

    assert _rejection(data) == "too_complex"


def test_decompression_bomb_is_too_complex_not_a_blank_page() -> None:
    with pytest.raises(DocumentRejected) as refused:
        extract(hostile_pdfs.inflating(), s3_key="uploads/bomb.pdf")

    assert refused.value.reason == "too_complex"
    assert "safety limit of the PDF reader" in refused.value.message


def test_memory_error_while_opening_reaches_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr("services.extractor.pdf.PdfReader", exhausted)

    with pytest.raises(MemoryError):
        extract(_one_page(b"Hello"), s3_key="x.pdf")


def test_memory_error_pypdf_wraps_reaches_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def wrapped(*args: object, **kwargs: object) -> None:
        try:
            raise MemoryError
        except MemoryError as exc:
            raise PdfReadError("Error reading PDF file.") from exc

    monkeypatch.setattr("services.extractor.pdf.PdfReader", wrapped)

    with pytest.raises(MemoryError):
        extract(_one_page(b"Hello"), s3_key="x.pdf")


def test_memory_error_on_a_page_is_not_taken_for_damage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exhausted(*args: object, **kwargs: object) -> str:
        raise MemoryError

    monkeypatch.setattr(PageObject, "extract_text", exhausted)

    with pytest.raises(MemoryError):
        extract(_one_page(b"Hello"), s3_key="x.pdf")


def test_damaged_page_still_costs_only_its_own_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def damaged(*args: object, **kwargs: object) -> str:
        raise KeyError("/Font")

    monkeypatch.setattr(PageObject, "extract_text", damaged)

    extraction = extract(_one_page(b"Hello"), s3_key="x.pdf")

    assert "page 1 could not be read" in extraction.warnings
