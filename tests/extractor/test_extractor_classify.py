"""Document types from keywords, titles, key fields and tables."""

from __future__ import annotations

import pytest

from services.extractor.classify import classify
from services.extractor.tabular import read_table
from shared.documents import Amount, KeyFields

NO_FIELDS = KeyFields()


@pytest.mark.parametrize(
    ("text", "document_type"),
    [
        ("INVOICE\nInvoice #: 1\nBill To: ACME\nSubtotal 1.00", "invoice"),
        ("Facture n° 12\nTotal TTC 12,00 €", "invoice"),
        ("PROFESSIONAL SERVICES AGREEMENT\nThe parties shall...", "contract"),
        ("INCOMPLETE REPORT\nCompany: Unknown\nRevenue: [DATA MISSING]", "report"),
        ("FINANCIAL REPORT Q4 2024\nTotal Revenue: 1\nNet Profit: 2", "report"),
        ("Lorem ipsum dolor sit amet, consetetur sadipscing elitr", "document"),
        ("", "document"),
    ],
)
def test_classify_text(text: str, document_type: str) -> None:
    assert classify("text", text, NO_FIELDS, []) == document_type


def test_a_contract_mentioning_an_invoice_stays_a_contract() -> None:
    text = (
        "SERVICES AGREEMENT\nThe parties agree. Fees are payable within 15 days "
        "of the invoice date. Either party may terminate.\nSignature"
    )

    assert classify("pdf", text, NO_FIELDS, []) == "contract"


def test_invoice_fields_tip_a_receipt_to_invoice() -> None:
    fields = KeyFields(invoice_number="IBZY2087", total=Amount(value="1939.00"))

    assert classify("pdf", "PAYMENT RECEIPT\nBooking ID", fields, []) == "invoice"


def test_a_table_is_a_table_unless_it_is_one_invoice_record() -> None:
    register = read_table(
        "invoice_number,total\nA-1,1.00\nA-2,2.00\n", encoding="utf-8"
    )
    record = read_table("invoice_number,total\nA-1,1.00\n", encoding="utf-8")
    fields = KeyFields(invoice_number="A-1", total=Amount(value="1.00"))

    assert classify("csv", "", NO_FIELDS, [register]) == "table"
    assert classify("csv", "", fields, [record]) == "invoice"
