"""Key fields read from a table's columns, found by their names.

Columns such as ``invoice_number``, ``total_ttc``, ``amount``, ``Débit`` or
``invoice_date`` are recognised after lower-casing and dropping accents. The
invoice number and total are read only from a table holding a single record:
a register of many invoices has no one number or total.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final

from services.extractor.amounts import currency_code, format_value, parse_money_cell
from services.extractor.dates import iso_dates, numeric_order
from services.extractor.fields import plausible_number
from shared.documents import Amount, KeyFields, Table

# Column names, lower-cased, accents dropped, words joined by "_".
_INVOICE_COLUMN = re.compile(
    r"(?:invoice|facture|rechnung|bill)s?_?(?:number|num|no|nr|id|ref)?"
    r"|(?:numero|num|no|n)_(?:de_)?facture|rechnungs?(?:nummer|nr)"
)
_ORDER_COLUMN = re.compile(
    r"(?:order|booking|commande|bestell)_?(?:id|number|num|no|nr|ref)?"
)
_TOTAL_COLUMN = re.compile(
    r"(?:grand_)?total(?:_(?:ttc|amount|due|incl\w*|gross|brut|payable))?"
    r"|(?:amount|balance)_due|total_amount|montant_(?:total|ttc)"
    r"|gesamtbetrag|rechnungsbetrag|zahlbetrag"
)
_AMOUNT_WORDS: Final = frozenset(
    {"total", "amount", "montant", "price", "prix", "subtotal", "tax", "tva", "vat"}
    | {"debit", "credit", "solde", "balance", "betrag", "gesamtbetrag", "fee"}
    | {"fees", "cost", "paid"}
)
_DATE_WORDS: Final = frozenset({"date", "datum", "dated", "timestamp"})
_CURRENCY_WORDS: Final = frozenset({"currency", "devise", "wahrung", "ccy"})
_MAX_ITEMS: Final = 100


def fields_from_table(table: Table) -> KeyFields:
    """Invoice number, dates, amounts and total read from a table's columns."""
    names = [_column_name(name) for name in table.header]
    records = [row for row in table.rows if any(cell.strip() for cell in row)]
    single = records[0] if len(records) == 1 else None

    amounts = _column_amounts(table.header, names, records)
    return KeyFields(
        invoice_number=_column_number(names, single) if single else None,
        dates=_column_dates(names, records),
        amounts=amounts,
        total=_column_total(table.header, names, single) if single else None,
    )


def _column_name(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.strip().lower())
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return re.sub(r"[^a-z0-9]+", "_", plain).strip("_")


def _cell(row: Sequence[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""


def _column_number(names: Sequence[str], row: Sequence[str]) -> str | None:
    for pattern in (_INVOICE_COLUMN, _ORDER_COLUMN):
        for index, name in enumerate(names):
            if pattern.fullmatch(name):
                value = plausible_number(_cell(row, index))
                if value:
                    return value
    return None


def _column_dates(names: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for index, name in enumerate(names):
        if not _DATE_WORDS & set(name.split("_")):
            continue
        cells = [_cell(row, index) for row in rows]
        month_first = numeric_order("\n".join(cells)) is True
        for cell in cells:
            for iso in iso_dates(cell, month_first=month_first):
                seen.setdefault(iso, None)
                if len(seen) >= _MAX_ITEMS:
                    return list(seen)
    return list(seen)


def _row_currency(names: Sequence[str], row: Sequence[str]) -> str | None:
    for index, name in enumerate(names):
        if _CURRENCY_WORDS & set(name.split("_")):
            return currency_code(_cell(row, index))
    return None


def _money(
    header: Sequence[str], names: Sequence[str], row: Sequence[str], index: int
) -> Amount | None:
    parsed = parse_money_cell(_cell(row, index))
    if parsed is None:
        return None

    value, currency = parsed
    # "amount_eur" names its currency; a currency column names it per row.
    from_name = next(
        (code for word in names[index].split("_") if (code := currency_code(word))),
        None,
    )
    return Amount(
        value=format_value(value),
        currency=currency or _row_currency(names, row) or from_name,
        label=header[index].strip(),
    )


def _column_amounts(
    header: Sequence[str], names: Sequence[str], rows: Sequence[Sequence[str]]
) -> list[Amount]:
    columns = [
        i for i, name in enumerate(names) if _AMOUNT_WORDS & set(name.split("_"))
    ]
    amounts: list[Amount] = []
    for row in rows:
        for index in columns:
            amount = _money(header, names, row, index)
            if amount:
                amounts.append(amount)
            if len(amounts) >= _MAX_ITEMS:
                return amounts
    return amounts


def _column_total(
    header: Sequence[str], names: Sequence[str], row: Sequence[str]
) -> Amount | None:
    totals = [i for i, name in enumerate(names) if _TOTAL_COLUMN.fullmatch(name)]
    if not totals:
        # A record with a single money column: that amount is its total.
        money = [
            i for i, name in enumerate(names) if _AMOUNT_WORDS & set(name.split("_"))
        ]
        totals = money if len(money) == 1 else []
    for index in totals:
        amount = _money(header, names, row, index)
        if amount:
            return amount
    return None
