"""The extractor's entry point: format detection, rejections, the result."""

from __future__ import annotations

import codecs
import hashlib

import pytest

from services.extractor.extraction import declared_format, extract
from shared.errors import DocumentRejected


def _rejection(data: bytes, s3_key: str = "uploads/doc") -> str:
    with pytest.raises(DocumentRejected) as caught:
        extract(data, s3_key=s3_key)
    assert caught.value.message
    assert caught.value.data == {"reason": caught.value.reason}
    return caught.value.reason


def test_zero_bytes_are_an_empty_document() -> None:
    with pytest.raises(DocumentRejected) as caught:
        extract(b"", s3_key="uploads/empty.csv")

    assert caught.value.reason == "empty_document"
    assert caught.value.message == "The document is empty (0 bytes)"


@pytest.mark.parametrize(
    ("data", "s3_key"),
    [
        (b"   \r\n\t\n", "uploads/blank.txt"),
        (codecs.BOM_UTF8, "uploads/bom.csv"),
        (codecs.BOM_UTF8 + b"\n\n", "uploads/bom.txt"),
        ("  \n".encode("utf-16"), "uploads/wide.txt"),
    ],
)
def test_whitespace_or_bom_only_is_an_empty_document(data: bytes, s3_key: str) -> None:
    assert _rejection(data, s3_key) == "empty_document"


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(64),
        b"\xff\xd8\xff\xe0" + bytes(64),
        b"PK\x03\x04" + bytes(64),
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64),
        b"\x1f\x8b\x08\x00" + bytes(64),
    ],
)
def test_known_binary_formats_are_unsupported(data: bytes) -> None:
    assert _rejection(data, "uploads/file.csv") == "unsupported_type"


def test_random_bytes_are_unsupported() -> None:
    noise = hashlib.shake_256(b"noise").digest(4096)

    assert _rejection(noise) == "unsupported_type"
    assert _rejection(noise, "uploads/noise.txt") == "unsupported_type"


def test_random_bytes_named_pdf_are_an_unreadable_pdf() -> None:
    noise = hashlib.shake_256(b"noise").digest(4096)

    assert _rejection(noise, "uploads/noise.pdf") == "unreadable_pdf"


def test_text_named_pdf_is_an_unreadable_pdf() -> None:
    assert _rejection(b"Just some text", "uploads/fake.pdf") == "unreadable_pdf"


def test_plain_text_result() -> None:
    data = codecs.BOM_UTF8 + b"REPORT 1\r\n\r\nCompany: Demo\r\nRevenue: 1000\r\n"
    extraction = extract(data, s3_key="uploads/report.txt", content_type="text/plain")

    assert extraction.format == "text"
    assert extraction.content_type == "text/plain"
    assert extraction.text == "REPORT 1\n\nCompany: Demo\nRevenue: 1000\n"
    assert extraction.document_type == "report"
    assert extraction.page_count is None
    assert extraction.pages == []
    assert extraction.tables == []
    assert extraction.content_hash == hashlib.sha256(data).hexdigest()
    assert extraction.size_bytes == len(data)
    assert extraction.warnings == []


def test_cp1252_text_is_read_with_a_warning() -> None:
    extraction = extract("Facture réglée".encode("cp1252"), s3_key="a/b.txt")

    assert extraction.text == "Facture réglée"
    assert extraction.warnings == ["The text is not UTF-8; it was read as cp1252"]


def test_csv_result() -> None:
    extraction = extract(b"a;b\n1;2\n", s3_key="uploads/t.csv")

    assert extraction.format == "csv"
    assert extraction.content_type == "text/csv"
    assert extraction.document_type == "table"
    assert extraction.text == "a | b\n1 | 2"
    assert extraction.tables[0].delimiter == ";"


def test_tab_delimited_csv_is_reported_as_tsv() -> None:
    extraction = extract(b"a\tb\n1\t2\n", s3_key="uploads/t.csv")

    assert extraction.format == "tsv"
    assert extraction.content_type == "text/tab-separated-values"
    assert extraction.warnings == []


def test_content_type_decides_when_the_key_has_no_extension() -> None:
    extraction = extract(
        b"a,b\n1,2\n", s3_key="uploads/x", content_type="text/csv; charset=utf-8"
    )

    assert extraction.format == "csv"


def test_undeclared_table_is_sniffed() -> None:
    extraction = extract(b"a,b,c\n1,2,3\n4,5,6\n", s3_key="uploads/x")

    assert extraction.format == "csv"


def test_undeclared_prose_is_text() -> None:
    extraction = extract(
        b"Hello, world.\nThis is prose, with commas, and more.\n",
        s3_key="uploads/x",
        content_type="application/octet-stream",
    )

    assert extraction.format == "text"


def test_pdf_content_under_a_csv_name_is_read_as_pdf_with_a_warning() -> None:
    pdf = (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )
    extraction = extract(pdf, s3_key="uploads/x.csv")

    assert extraction.format == "pdf"
    assert extraction.page_count == 0
    assert "declared as csv but its content is pdf" in extraction.warnings[-1]


@pytest.mark.parametrize(
    ("s3_key", "content_type", "expected"),
    [
        ("uploads/a.PDF", None, "pdf"),
        ("uploads/a.tsv", "text/csv", "tsv"),
        ("uploads/a.tab", None, "tsv"),
        ("uploads/a", "application/pdf", "pdf"),
        ("uploads/a", "TEXT/PLAIN; charset=utf-8", "text"),
        ("uploads/a", "application/octet-stream", None),
        ("uploads/a.docx", None, None),
        ("uploads/a", None, None),
    ],
)
def test_declared_format(
    s3_key: str, content_type: str | None, expected: str | None
) -> None:
    assert declared_format(s3_key, content_type) == expected


def test_nul_characters_never_reach_the_text() -> None:
    extraction = extract("Grüße".encode("utf-16"), s3_key="uploads/a.txt")

    assert extraction.text == "Grüße"
    assert "\x00" not in extraction.text


def test_fields_of_a_huge_text_are_read_from_its_start_with_a_warning() -> None:
    data = b"Invoice No: INV-77\n" + b"filler line\n" * 50_000
    extraction = extract(data, s3_key="uploads/long.txt")

    assert extraction.key_fields.invoice_number == "INV-77"
    assert extraction.text.endswith("filler line\n")
    assert extraction.warnings == [
        f"Key fields were read from the first 500000 characters of {len(data)}"
    ]
