"""Key fields from text: invoice numbers, dates, amounts and the total."""

from __future__ import annotations

import time

import pytest

from services.extractor.fields import fields_from_text, find_invoice_number
from shared.documents import Amount


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Invoice #: INV-2025-001", "INV-2025-001"),
        ("Invoice Number 42183017", "42183017"),
        ("Invoice No : # BLR_WFLD20151000982590", "BLR_WFLD20151000982590"),
        ("Rechnungsnummer: RE-2024-117", "RE-2024-117"),
        ("Rechnungsnr. 30064443 Kundennr. 47774", "30064443"),
        ("Facture N°562044387 du 02 Juillet 2015", "562044387"),
        ("N° de facture : F2025/118", "F2025/118"),
        ("Order ID: OD304175096047380001", "OD304175096047380001"),
        ("Booking ID IBZY2087", "IBZY2087"),
        ("Numero: INV-2025-12-001", "INV-2025-12-001"),
        ("Invoice: 2025.0042.", "2025.0042"),
    ],
)
def test_invoice_number_after_its_label(text: str, number: str) -> None:
    assert find_invoice_number(text) == number


def test_invoice_number_on_the_next_line() -> None:
    assert find_invoice_number("Invoice #:\nINV-2025-001\nDate:") == "INV-2025-001"


def test_invoice_number_under_its_label_in_a_column() -> None:
    text = (
        "      Booking ID        Payment Mode\n      IBZY2087          Cash at Hotel\n"
    )

    assert find_invoice_number(text) == "IBZY2087"


def test_invoice_label_outranks_an_earlier_order_label() -> None:
    text = "Order ID: OD-1234\nInvoice No: INV-9\n"

    assert find_invoice_number(text) == "INV-9"


@pytest.mark.parametrize(
    "text",
    [
        "Invoice Date: 2025-12-18",
        "Invoice Summary",
        "Invoice Number: pending",
        "Numéro de ligne  Id.client",
        "Account number: 296664039561",
        "Contract No. CON02858",
    ],
)
def test_no_invoice_number_without_a_plausible_value(text: str) -> None:
    assert find_invoice_number(text) is None


def test_total_prefers_the_amount_due_over_a_plain_total() -> None:
    text = (
        "Total  1  278.61  40.39  319.00\n"
        "Grand Total  320.00\n"
        "Price is inclusive of Promotional Discount of Rs -40.00,\n"
    )

    assert fields_from_text(text).total == Amount(
        value="320.00", currency="INR", label="Grand Total"
    )


def test_total_ignores_subtotal_and_tax_lines() -> None:
    text = "Subtotal: €13,000.00\nTax (20%): €2,600.00\nTotal: €15,600.00\n"
    fields = fields_from_text(text)

    assert fields.total == Amount(value="15600.00", currency="EUR", label="Total")


@pytest.mark.parametrize(
    ("text", "value", "currency"),
    [
        ("<b>Total Amount Due</b>\n<b>€15,600.00</b>", "15600.00", "EUR"),
        ("Grand Total\nRs 1939", "1939.00", "INR"),
        ("Total EUR 34,73", "34.73", "EUR"),
        ("Gesamtbetrag: 1.234,56 EUR", "1234.56", "EUR"),
        ("Total TTC : 1 250,00 €", "1250.00", "EUR"),
        ("Montant total: 15,750.00 EUR", "15750.00", "EUR"),
        ("Somme à payer  29.99  € TTC", "29.99", "EUR"),
        ("Tax 5.00  Net à payer : 29.99 €", "29.99", "EUR"),
        ("TOTAL AMOUNT DUE ON August 3 , 2014 $4.11", "4.11", "USD"),
    ],
)
def test_total_from_labelled_lines(text: str, value: str, currency: str) -> None:
    total = fields_from_text(text).total

    assert total is not None
    assert (total.value, total.currency) == (value, currency)


def test_no_total_without_an_amount() -> None:
    text = "Total Revenue: [DATA MISSING]\nAmount payable is inclusive of taxes\n"

    assert fields_from_text(text).total is None


def test_a_bare_total_needs_cents_or_a_currency() -> None:
    assert fields_from_text("Total: 3 items").total is None


def test_amounts_in_prose_are_not_listed() -> None:
    text = (
        "Free SAS au capital de 3.441.812 Euros - B 421 938 861 RCS Paris\n"
        "Additional services will be billed at €150 EUR per hour.\n"
        "Tarif à la mn en HP : 2,8 et en HC : 1,4 cts/mn\n"
        "Subtotal  €100.00\n"
    )
    amounts = fields_from_text(text).amounts

    assert amounts == [Amount(value="100.00", currency="EUR", label="Subtotal")]


def test_amounts_without_currency_take_the_documents_currency() -> None:
    text = "All prices in EUR\nSmall Business  5,39  5,39\n"
    amounts = fields_from_text(text).amounts

    assert amounts == [Amount(value="5.39", currency="EUR", label="Small Business")]


def test_dates_are_not_read_as_amounts() -> None:
    fields = fields_from_text("Invoice Date: 18.12.2025  Total: 12.00 EUR")

    assert fields.dates == ["2025-12-18"]
    assert [a.value for a in fields.amounts] == ["12.00"]


def test_us_dollar_documents_read_numeric_dates_month_first() -> None:
    assert fields_from_text("Date: 03/08/2014\nTotal: $4.11").dates == ["2014-03-08"]
    assert fields_from_text("Date: 03/08/2014\nTotal: 4,11 €").dates == ["2014-08-03"]


def test_empty_text_has_no_fields() -> None:
    fields = fields_from_text("")

    assert fields.invoice_number is None
    assert fields.dates == []
    assert fields.amounts == []
    assert fields.total is None


@pytest.mark.parametrize(
    "text",
    [
        "May 1" + " " * 20_000 + "x",
        "1 " * 20_000 + "x",
        " ".join(f"{n}.00" for n in range(20_000)),
        "Subtotal " + "1 " * 20_000 + "€5.00 abc",
        "Order No: x " * 20_000 + "\n" + "y " * 20_000,
        "\n".join("Total" for _ in range(20_000)),
        "Total subtotal " * 20_000,
        "01.02.2020 " * 20_000,
    ],
    ids=[
        "month-then-spaces",
        "spaced-digits",
        "many-amounts",
        "long-label",
        "many-number-labels",
        "many-total-lines",
        "many-total-labels",
        "many-dates",
    ],
)
def test_pathological_text_is_read_in_linear_time(text: str) -> None:
    # Each case took from seconds to minutes before the regexes were bounded.
    started = time.monotonic()
    fields_from_text(text)

    assert time.monotonic() - started < 3
