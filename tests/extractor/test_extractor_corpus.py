"""The extractor on the shared corpus, as ``../shared/corpus/MANIFEST.md`` says."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import pytest

from services.extractor.extraction import extract
from shared.documents import Extraction
from shared.errors import DocumentRejected

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

pytestmark = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"the shared corpus is not at {CORPUS}"
)


# Extractions are frozen models, so sharing them between tests is safe.
@cache
def _extract(relative: str) -> Extraction:
    path = CORPUS / relative
    return extract(path.read_bytes(), s3_key=f"uploads/{path.name}")


@pytest.mark.parametrize(
    ("name", "pages", "needle"),
    [
        ("pdf/sample_invoice.pdf", 1, "15,600.00"),
        ("pdf/sample_contract.pdf", 2, "PROFESSIONAL SERVICES AGREEMENT"),
        ("pdf/AmazonWebServices.pdf", 1, "42183017"),
        ("pdf/FlipkartInvoice.pdf", 1, "OD304175096047380001"),
        ("pdf/oyo.pdf", 1, "IBZY2087"),
        ("pdf/QualityHosting.pdf", 2, "Grundgebühr"),
        ("pdf/free_fiber.pdf", 2, "562044387"),
        ("pdf/minimal-document.pdf", 1, "Lorem ipsum"),
        ("pdf/pdflatex-4-pages.pdf", 4, "Hello, here is some text"),
        ("pdf/google-doc-document.pdf", 1, "Beautiful is better than ugly"),
        ("pdf/habibi-arabic.pdf", 1, "habibi"),
        ("pdf/pdflatex-forms.pdf", 1, "Name"),
    ],
)
def test_pdf_pages_are_counted_and_keep_their_text(
    name: str, pages: int, needle: str
) -> None:
    extraction = _extract(name)

    assert extraction.format == "pdf"
    assert extraction.content_type == "application/pdf"
    assert extraction.page_count == pages
    assert [page.number for page in extraction.pages] == list(range(1, pages + 1))
    assert extraction.text == "\n\n".join(page.text for page in extraction.pages)
    assert needle in extraction.text


def test_contract_text_starts_with_its_title() -> None:
    extraction = _extract("pdf/sample_contract.pdf")

    assert extraction.text.startswith("PROFESSIONAL SERVICES AGREEMENT")
    assert extraction.document_type == "contract"


def test_four_page_pdf_has_about_14000_characters() -> None:
    assert 12_000 <= len(_extract("pdf/pdflatex-4-pages.pdf").text) <= 16_000


@pytest.mark.parametrize(
    ("name", "number", "total", "currency"),
    [
        ("pdf/sample_invoice.pdf", "INV-2025-001", "15600.00", "EUR"),
        ("pdf/AmazonWebServices.pdf", "42183017", "4.11", "USD"),
        ("pdf/oyo.pdf", "IBZY2087", "1939.00", "INR"),
        ("pdf/QualityHosting.pdf", "30064443", "34.73", "EUR"),
        ("pdf/free_fiber.pdf", "562044387", "29.99", "EUR"),
        ("txt/sample_invoice.txt", "INV-2025-001", "15600.00", "EUR"),
        ("csv/invoice_demo_20260101.csv", "FAC-2026-0001", "17280.00", None),
    ],
)
def test_invoice_number_and_total_are_extracted(
    name: str, number: str, total: str, currency: str | None
) -> None:
    extraction = _extract(name)
    fields = extraction.key_fields

    assert extraction.document_type == "invoice"
    assert fields.invoice_number == number
    assert fields.total is not None
    assert (fields.total.value, fields.total.currency) == (total, currency)


def test_flipkart_invoice_number_wins_over_its_order_id() -> None:
    # The page labels both; the manifest names the order, the code prefers the
    # label that says "Invoice No" (see the report on this module).
    extraction = _extract("pdf/FlipkartInvoice.pdf")
    fields = extraction.key_fields

    assert fields.invoice_number == "BLR_WFLD20151000982590"
    assert "Order ID: OD304175096047380001" in extraction.text
    assert fields.total is not None
    assert (fields.total.value, fields.total.currency) == ("319.00", "INR")
    assert fields.total.label == "Grand Total"


@pytest.mark.parametrize(
    ("name", "first_date"),
    [
        ("pdf/AmazonWebServices.pdf", "2014-08-03"),
        ("pdf/sample_invoice.pdf", "2025-12-18"),
        ("pdf/FlipkartInvoice.pdf", "2015-10-15"),
        ("pdf/oyo.pdf", "2017-12-31"),
        ("pdf/QualityHosting.pdf", "2014-05-07"),
        ("pdf/free_fiber.pdf", "2015-07-02"),
        ("csv/invoice_demo_20260101.csv", "2026-01-01"),
    ],
)
def test_invoice_date_is_normalised_to_iso(name: str, first_date: str) -> None:
    assert _extract(name).key_fields.dates[0] == first_date


def test_sample_invoice_amounts_carry_subtotal_and_tax_labels() -> None:
    amounts = _extract("pdf/sample_invoice.pdf").key_fields.amounts
    labelled = {amount.label: amount.value for amount in amounts}

    assert labelled["Subtotal"] == "13000.00"
    assert labelled["Tax (20%)"] == "2600.00"
    assert all(amount.currency == "EUR" for amount in amounts)


def test_quality_hosting_keeps_its_umlauts() -> None:
    text = _extract("pdf/QualityHosting.pdf").text

    assert "Grundgebühr" in text
    assert "Banküberweisung" in text


def test_free_fiber_keeps_its_french_accents() -> None:
    assert "Numéro de ligne" in _extract("pdf/free_fiber.pdf").text


def test_arabic_text_survives_as_utf8() -> None:
    text = _extract("pdf/habibi-arabic.pdf").text

    assert any("\u0600" <= char <= "\u06ff" for char in text)
    assert text.encode("utf-8").decode("utf-8") == text


def test_broken_xref_pdf_is_recovered_or_rejected_as_unreadable() -> None:
    try:
        extraction = _extract("pdf/facture_acme_dec2025.pdf")
    except DocumentRejected as exc:
        assert exc.reason == "unreadable_pdf"
        return

    fields = extraction.key_fields
    assert "INV-2025-12-001" in extraction.text
    assert fields.invoice_number == "INV-2025-12-001"
    assert fields.total is not None
    assert (fields.total.value, fields.total.currency) == ("15750.00", "EUR")
    assert extraction.warnings


def test_password_pdf_is_rejected_as_encrypted() -> None:
    with pytest.raises(DocumentRejected) as caught:
        _extract("pdf/libreoffice-writer-password.pdf")

    assert caught.value.reason == "encrypted_pdf"
    assert caught.value.message == "The PDF is encrypted and needs a password to open"


def test_empty_csv_is_rejected_as_empty() -> None:
    with pytest.raises(DocumentRejected) as caught:
        _extract("csv/empty.csv")

    assert caught.value.reason == "empty_document"


@pytest.mark.parametrize(
    ("name", "document_format", "delimiter", "rows", "columns"),
    [
        ("csv/employee_data.csv", "csv", ",", 10, 8),
        ("csv/releve_compte_cp1252_semicolon.csv", "csv", ";", 4, 5),
        ("csv/orders_utf8_bom_quoted_newlines.csv", "csv", ",", 3, 5),
        ("csv/sensor_tab_separated.tsv", "tsv", "\t", 48, 4),
        ("csv/invoice_demo_20260101.csv", "csv", ",", 1, 8),
        ("csv/ragged_rows.csv", "csv", ",", 5, 3),
    ],
)
def test_tables_are_read_with_their_dialect(
    name: str, document_format: str, delimiter: str, rows: int, columns: int
) -> None:
    extraction = _extract(name)
    (table,) = extraction.tables

    assert extraction.format == document_format
    assert extraction.page_count is None
    assert (table.delimiter, table.row_count, table.column_count) == (
        delimiter,
        rows,
        columns,
    )
    assert len(table.rows) == table.row_count


def test_cp1252_accents_come_out_right() -> None:
    extraction = _extract("csv/releve_compte_cp1252_semicolon.csv")
    (table,) = extraction.tables

    assert table.encoding == "cp1252"
    assert "Libellé" in table.header
    assert any("SUPERMARCHÉ" in cell for row in table.rows for cell in row)
    assert "SUPERMARCHÉ" in extraction.text
    assert extraction.key_fields.dates[0] == "2026-01-02"


def test_bom_csv_keeps_quoted_newlines_inside_three_rows() -> None:
    (table,) = _extract("csv/orders_utf8_bom_quoted_newlines.csv").tables

    assert table.header[0] == "order_id"
    assert table.encoding == "utf-8-sig"
    assert [row[0] for row in table.rows] == ["A-1001", "A-1002", "A-1003"]
    assert table.rows[0][2] == "Hafenstraße 12\n20457 Hamburg"
    assert table.rows[1][1] == 'Café "Le Zinc"'
    assert table.problems == []


def test_bom_csv_amounts_take_the_currency_column() -> None:
    amounts = _extract("csv/orders_utf8_bom_quoted_newlines.csv").key_fields.amounts

    assert [(a.value, a.currency) for a in amounts] == [
        ("1204.50", "EUR"),
        ("89.00", "EUR"),
        ("15300.00", "NOK"),
    ]


def test_ragged_rows_are_reported_not_fatal() -> None:
    extraction = _extract("csv/ragged_rows.csv")
    (table,) = extraction.tables

    assert table.problems == [
        "row 3 has 2 cells, expected 3",
        "row 4 has 4 cells, expected 3",
    ]
    assert table.rows[1] == ["2", "beta"]
    assert extraction.document_type == "table"


@pytest.mark.parametrize(
    ("name", "document_type"),
    [
        ("txt/financial-report-q4-2024.txt", "report"),
        ("txt/incomplete-report.txt", "report"),
        ("txt/report-01.txt", "report"),
        ("txt/report-02.txt", "report"),
        ("txt/report-03.txt", "report"),
        ("txt/sample_invoice.txt", "invoice"),
    ],
)
def test_text_files_decode_and_are_classified(name: str, document_type: str) -> None:
    extraction = _extract(name)

    assert extraction.format == "text"
    assert extraction.document_type == document_type
    assert not extraction.text.startswith("\ufeff")
    assert "\r" not in extraction.text


@pytest.mark.parametrize(
    ("name", "document_type"),
    [
        ("pdf/minimal-document.pdf", "document"),
        ("pdf/google-doc-document.pdf", "document"),
        ("pdf/pdflatex-forms.pdf", "document"),
        ("csv/employee_data.csv", "table"),
        ("csv/sensor_tab_separated.tsv", "table"),
        ("csv/invoice_demo_20260101.csv", "invoice"),
    ],
)
def test_other_documents_are_classified(name: str, document_type: str) -> None:
    assert _extract(name).document_type == document_type


def test_content_hash_and_size_describe_the_bytes() -> None:
    data = (CORPUS / "txt/report-01.txt").read_bytes()
    extraction = extract(data, s3_key="uploads/report-01.txt")

    assert extraction.size_bytes == len(data)
    assert extraction.content_hash == hashlib.sha256(data).hexdigest()
    assert extraction.s3_key == "uploads/report-01.txt"
