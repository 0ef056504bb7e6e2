"""The table checks, each run on every table the extraction found."""

from __future__ import annotations

import re
from collections.abc import Callable

from services.validator.checks.common import Check, listing, plural
from shared.documents import Extraction, Table

TableCheck = Callable[[Table], tuple[bool, str]]

_NUMBER = re.compile(r"[+-]?(?:\d+|\d{1,3}(?:[ ,.'\u00a0\u202f]\d{3})+)(?:[.,]\d+)?%?")
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}\s*|\s*[A-Z]{3}$")
_NUMERIC_COLUMN = re.compile(
    r"amount|total|price|cost|montant|prix|salary|salaire|balance|solde"
    r"|d[ée]bit|cr[ée]dit|betrag|preis|quantity|qty"
    r"|(?<![a-z])(?:tax|vat|tva|fees?)(?![a-z])",
    re.I,
)


def _is_number(cell: str) -> bool:
    value = _CURRENCY_CODE.sub("", cell.strip().strip("€$£¥").strip())
    if value.startswith("(") and value.endswith(")"):
        value = value[1:-1]
    return _NUMBER.fullmatch(value) is not None


def each_table(check: TableCheck) -> Check:
    """A check that passes when ``check`` passes on every table found."""

    def run(extraction: Extraction) -> tuple[bool, str]:
        tables = extraction.tables
        if not tables:
            return False, "no table found"
        if len(tables) == 1:
            return check(tables[0])

        outcomes = [(i, *check(table)) for i, table in enumerate(tables, 1)]
        failed = [f"table {i}: {reason}" for i, ok, reason in outcomes if not ok]
        if failed:
            return False, "; ".join(failed)
        return True, "; ".join(f"table {i}: {reason}" for i, _, reason in outcomes)

    return run


def has_header(table: Table) -> tuple[bool, str]:
    """Whether a header row names every column."""
    if not table.header:
        return False, "no header row"
    blank = [str(i) for i, name in enumerate(table.header, 1) if not name.strip()]
    if blank:
        return False, f"header has no name for column {', '.join(blank)}"
    if all(_is_number(name) for name in table.header):
        return False, "the first row holds only numbers, so it is data, not a header"
    return True, (
        f"header names {plural(len(table.header), 'column')}: {listing(table.header)}"
    )


def has_rows(table: Table) -> tuple[bool, str]:
    """Whether the table has at least one data row."""
    if table.row_count == 0:
        return False, "no data rows"
    return True, f"{plural(table.row_count, 'data row')} found"


def consistent_row_width(table: Table) -> tuple[bool, str]:
    """Whether every row is as wide as the header and reading reported nothing."""
    width = len(table.header) or table.column_count
    # Blank rows are no_empty_rows' business, whatever their width.
    ragged = [
        f"data row {i} has {plural(len(row), 'cell')}"
        for i, row in enumerate(table.rows, 1)
        if len(row) != width and any(cell.strip() for cell in row)
    ]
    if not ragged and not table.problems:
        return True, f"every row has {plural(width, 'cell')}, like the header"

    parts = []
    if ragged:
        parts.append(f"{listing(ragged)}; the header has {width}")
    if table.problems:
        parts.append(f"the reader reported: {listing(table.problems)}")
    return False, "; ".join(parts)


def numeric_columns_parse(table: Table) -> tuple[bool, str]:
    """Whether amount-like columns hold only numbers."""
    columns = [
        (i, name) for i, name in enumerate(table.header) if _NUMERIC_COLUMN.search(name)
    ]
    if not columns:
        return True, "no amount-like columns to check"

    failures = []
    for column, name in columns:
        bad = [
            f'"{row[column]}" in data row {i}'
            for i, row in enumerate(table.rows, 1)
            if column < len(row) and row[column].strip() and not _is_number(row[column])
        ]
        if bad:
            failures.append(f"column {name} has non-numbers: {listing(bad, 3)}")
    if failures:
        return False, "; ".join(failures)
    names = listing([name for _, name in columns])
    return True, f"every value in {names} is a number"


def no_empty_rows(table: Table) -> tuple[bool, str]:
    """Whether no data row is blank."""
    empty = [
        str(i)
        for i, row in enumerate(table.rows, 1)
        if not any(cell.strip() for cell in row)
    ]
    if len(empty) == 1:
        return False, f"data row {empty[0]} is empty"
    if empty:
        return False, f"data rows {listing(empty)} are empty"
    return True, "no empty rows"
