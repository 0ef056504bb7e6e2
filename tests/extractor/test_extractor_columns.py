"""Key fields read from the columns of a table."""

from __future__ import annotations

from services.extractor.columns import fields_from_table
from services.extractor.tabular import read_table
from shared.documents import Amount


def test_single_invoice_record_gives_number_date_and_total() -> None:
    table = read_table(
        "invoice_number,invoice_date,subtotal_ht,tva,total_ttc,currency\n"
        "FAC-2026-0001,2026-01-01,14400.00,2880.00,17280.00,EUR\n",
        encoding="utf-8",
    )
    fields = fields_from_table(table)

    assert fields.invoice_number == "FAC-2026-0001"
    assert fields.dates == ["2026-01-01"]
    assert fields.total == Amount(value="17280.00", currency="EUR", label="total_ttc")
    assert [a.label for a in fields.amounts] == ["subtotal_ht", "tva", "total_ttc"]


def test_accented_headers_and_european_numbers() -> None:
    table = read_table(
        "Date;Libellé;Débit;Crédit\n02/01/2026;LOYER;1 250,00;\n"
        "13/01/2026;SALAIRE;;2 980,55\n",
        encoding="utf-8",
    )
    fields = fields_from_table(table)

    assert fields.dates == ["2026-01-02", "2026-01-13"]
    assert [(a.value, a.label) for a in fields.amounts] == [
        ("1250.00", "Débit"),
        ("2980.55", "Crédit"),
    ]


def test_many_records_have_no_single_number_or_total() -> None:
    table = read_table("invoice_number,total\nA-1,10.00\nA-2,20.00\n", encoding="utf-8")
    fields = fields_from_table(table)

    assert fields.invoice_number is None
    assert fields.total is None
    assert [a.value for a in fields.amounts] == ["10.00", "20.00"]


def test_a_single_record_with_one_amount_column_uses_it_as_total() -> None:
    table = read_table("order_id,amount_eur\nOD-7781,89.00\n", encoding="utf-8")
    fields = fields_from_table(table)

    assert fields.invoice_number == "OD-7781"
    assert fields.total == Amount(value="89.00", currency="EUR", label="amount_eur")


def test_non_numeric_and_missing_cells_are_skipped() -> None:
    table = read_table(
        "id,name,amount\n1,alpha,10\n2,beta\n4,delta,not-a-number\n", encoding="utf-8"
    )

    assert [a.value for a in fields_from_table(table).amounts] == ["10.00"]


def test_us_dates_in_a_column_are_read_month_first() -> None:
    table = read_table("date,x\n03/08/2014,1\n12/18/2025,2\n", encoding="utf-8")

    assert fields_from_table(table).dates == ["2014-03-08", "2025-12-18"]


def test_updated_is_not_a_date_column() -> None:
    table = read_table("updated,x\n2014-03-08,1\n", encoding="utf-8")

    assert fields_from_table(table).dates == []
