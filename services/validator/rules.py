"""The validator's scoring rules: one table of weighted checks per document type.

Every check is a pure function of an :class:`Extraction` that answers whether it
passed and why, in words a person can read. The score is the share of the
weights that passed, from 0 to 100; a document passes at ``PASS_SCORE``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from pydantic import BaseModel, ConfigDict

from shared.documents import (
    Amount,
    DocumentType,
    Extraction,
    RuleResult,
    Table,
    Validation,
)

PASS_SCORE: Final = 60

Check = Callable[[Extraction], tuple[bool, str]]
TableCheck = Callable[[Table], tuple[bool, str]]


class RuleDescription(BaseModel):
    """What one rule checks and how much it weighs, as published by the service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    weight: int
    description: str


@dataclass(frozen=True)
class _Rule:
    name: str
    weight: int
    description: str
    check: Check


# Shared helpers ------------------------------------------------------------

_PLACEHOLDERS: Final = frozenset(
    {"n/a", "tbd", "tbc", "error", "unknown", "null", "?", "??", "???"}
    | {"#n/a", "#value!", "#ref!", "#div/0!", "[data missing]", "missing"}
)
# A label is a few words before a colon; a longer run is a sentence.
_LABEL = re.compile(r"^([A-Za-z][^:\s]*(?:\s+[^:\s]+){0,4})\s*:\s*(.*)$")
_MARKER = re.compile(
    r"(?i:\[[^\]\n]*(?:missing|tbd|todo|error|n/a)[^\]\n]*\])"
    r"|#(?:N/A|VALUE!|REF!|DIV/0!)|\bERROR\b|\bTBD\b|(?<![\w/])N/A(?![\w/])"
)
_NUMBER = re.compile(r"[+-]?(?:\d+|\d{1,3}(?:[ ,.'\u00a0\u202f]\d{3})+)(?:[.,]\d+)?%?")
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}\s*|\s*[A-Z]{3}$")


def _text(extraction: Extraction) -> str:
    text = extraction.text
    if not text.strip():
        text = "\n".join(page.text for page in extraction.pages)
    return text.lstrip("\ufeff")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _listing(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more"
    return shown


def _distinct(pattern: re.Pattern[str], text: str) -> list[str]:
    seen: dict[str, None] = {}
    for match in pattern.finditer(text):
        seen.setdefault(match.group(0).lower(), None)
    return list(seen)


def _quote(line: str) -> str:
    return f'"{line[:77]}..."' if len(line) > 80 else f'"{line}"'


def _is_number(cell: str) -> bool:
    value = _CURRENCY_CODE.sub("", cell.strip().strip("€$£¥").strip())
    if value.startswith("(") and value.endswith(")"):
        value = value[1:-1]
    return _NUMBER.fullmatch(value) is not None


def _text_rule(weight: int, minimum: int) -> _Rule:
    def check(extraction: Extraction) -> tuple[bool, str]:
        count = sum(not char.isspace() for char in _text(extraction))
        if count < minimum:
            return False, (
                f"text has only {_plural(count, 'character')} besides whitespace; "
                f"at least {minimum} expected"
            )
        return True, f"text has {count} characters besides whitespace"

    description = f"at least {minimum} characters of text besides whitespace"
    return _Rule("has_text", weight, description, check)


def _has_date(extraction: Extraction) -> tuple[bool, str]:
    dates = extraction.key_fields.dates
    if not dates:
        return False, "no date found"
    if len(dates) == 1:
        return True, f"date {dates[0]} found"
    return True, f"{len(dates)} dates found, the first {dates[0]}"


# Invoice -------------------------------------------------------------------

_SUBTOTAL_LABEL = re.compile(r"sub[\s_-]?total|sous[\s_-]?total|zwischensumme", re.I)
_TAX_WORDS: Final = frozenset({"tax", "vat", "tva", "gst", "mwst", "ust"})
# Rounding each line to the cent can leave the sum a cent or two off.
_AMOUNT_TOLERANCE: Final = Decimal("0.02")


def _decimal(value: str) -> Decimal | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _money(amount: Amount) -> str:
    return f"{amount.value} {amount.currency}" if amount.currency else amount.value


def _is_tax(amount: Amount) -> bool:
    label = (amount.label or "").lower()
    words = set(re.split(r"[^a-z]+", label))
    return "total" not in label and bool(words & _TAX_WORDS)


def _has_invoice_number(extraction: Extraction) -> tuple[bool, str]:
    number = (extraction.key_fields.invoice_number or "").strip()
    if not number:
        return False, "no invoice number found"
    return True, f"invoice number {number} found"


def _has_total(extraction: Extraction) -> tuple[bool, str]:
    total = extraction.key_fields.total
    if total is None:
        return False, "no total amount found"
    if _decimal(total.value) is None:
        return False, f'total "{total.value}" is not a number'
    if not total.currency:
        return False, f"total {total.value} found but without a currency"
    return True, f"total {_money(total)} found"


def _amounts_consistent(extraction: Extraction) -> tuple[bool, str]:
    fields = extraction.key_fields
    if fields.total is None:
        return False, "no total amount to check the other amounts against"
    total = _decimal(fields.total.value)
    if total is None:
        return False, f'total "{fields.total.value}" is not a number'

    # Amounts in another currency cannot be compared with the total.
    currency = fields.total.currency
    others = [
        (amount, number)
        for amount in fields.amounts
        if amount != fields.total
        and (number := _decimal(amount.value)) is not None
        and (currency is None or amount.currency in (None, currency))
    ]
    # Credit notes are negative throughout, so sizes are compared, not signs.
    for amount, number in others:
        if abs(number) > abs(total):
            label = f" ({amount.label})" if amount.label else ""
            return False, (
                f"amount {_money(amount)}{label} is larger than the total "
                f"{_money(fields.total)}"
            )

    subtotals = [n for a, n in others if _SUBTOTAL_LABEL.search(a.label or "")]
    taxes = [n for a, n in others if _is_tax(a)]
    if subtotals and taxes:
        # One tax line, or several at different rates: either may be the match.
        candidates = {subtotals[0] + taxes[0], subtotals[0] + sum(taxes)}
        if all(abs(c - total) > _AMOUNT_TOLERANCE for c in candidates):
            return False, (
                f"subtotal {subtotals[0]} plus tax {taxes[0]} does not make "
                f"the total {total}"
            )
        return True, f"subtotal {subtotals[0]} plus tax makes the total {total}"

    if not others:
        return True, "the total is the only amount found, so nothing contradicts it"
    return True, (
        f"none of the {_plural(len(others), 'other amount')} exceeds the total "
        f"{_money(fields.total)}"
    )


# Contract ------------------------------------------------------------------

_AGREEMENT = re.compile(r"\b(?:agreement|contract|contrat|convention|vertrag)\b", re.I)
_PARTIES = re.compile(r"\b(?:between|part(?:y|ies)|entre)\b", re.I)
_TERMS = re.compile(
    r"\b(?:term|termination|payment|compensation|fees|confidentiality|liability"
    r"|governing law|indemnif\w*|warrant(?:y|ies)|intellectual property"
    r"|obligations|scope of services|résiliation|paiement|durée|confidentialité)\b",
    re.I,
)
_SIGNATURE = re.compile(
    r"\b(?:signature|signed|in witness whereof|signé|unterschrift)\b|_{5,}", re.I
)
_TITLE_LINES: Final = 5
_MIN_TERMS: Final = 2


def _contract_title(extraction: Extraction) -> tuple[bool, str]:
    for line in _lines(_text(extraction))[:_TITLE_LINES]:
        if _AGREEMENT.search(line):
            return True, f"title {_quote(line)} names an agreement"
    return False, f"none of the first {_TITLE_LINES} lines names an agreement"


def _has_parties(extraction: Extraction) -> tuple[bool, str]:
    found = _distinct(_PARTIES, _text(extraction))
    if not found:
        return False, 'no parties named (no "between" or "parties")'
    quoted = [f'"{word}"' for word in found]
    return True, f"parties introduced by {_listing(quoted)}"


def _has_terms(extraction: Extraction) -> tuple[bool, str]:
    found = _distinct(_TERMS, _text(extraction))
    if len(found) < _MIN_TERMS:
        shown = f": {found[0]}" if found else ""
        return False, (
            f"only {_plural(len(found), 'contract term')} found{shown}; "
            f"at least {_MIN_TERMS} expected"
        )
    return True, f"contract terms found: {_listing(found)}"


def _has_signature_block(extraction: Extraction) -> tuple[bool, str]:
    found = _distinct(_SIGNATURE, _text(extraction))
    if not found:
        return False, "no signature block found"
    shown = ["a signature line" if w.startswith("_") else f'"{w}"' for w in found]
    return True, f"signature block found: {_listing(shown)}"


# Report --------------------------------------------------------------------

_REPORT_TITLE = re.compile(r"\b(?:report|rapport|bericht|statement|summary)\b", re.I)
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october"
    "|november|december|janvier|février|mars|avril|mai|juin|juillet|août"
    "|septembre|octobre|novembre|décembre"
)
_PERIOD = re.compile(
    rf"\b(?:Q[1-4]|H[12]|FY)\s*\d{{2,4}}\b|\b(?:{_MONTHS})\s+\d{{4}}\b"
    r"|\b(?:fiscal|financial)\s+year\s+\d{4}\b|\byear\s+ended\b",
    re.I,
)
_FIGURE = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*%?")
_MIN_FIGURES: Final = 3


def _labels(text: str) -> list[tuple[str, str]]:
    matches = (_LABEL.match(line) for line in text.splitlines())
    return [(m.group(1), m.group(2).strip()) for m in matches if m]


def _report_title(extraction: Extraction) -> tuple[bool, str]:
    text = _text(extraction)
    lines = _lines(text)
    if lines and _REPORT_TITLE.search(lines[0]):
        return True, f"title {_quote(lines[0])} found"

    for label, value in _labels(text):
        if label.lower() == "company" and value and value.lower() not in _PLACEHOLDERS:
            return True, f"company {_quote(value)} found"
    return False, "no report title on the first line and no company name found"


def _has_period(extraction: Extraction) -> tuple[bool, str]:
    text = _text(extraction)
    for label, value in _labels(text):
        if label.lower() == "period" and value and value.lower() not in _PLACEHOLDERS:
            return True, f"period {_quote(value)} found"

    match = _PERIOD.search(text)
    if match:
        return True, f"period {_quote(match.group(0))} found"

    dates = extraction.key_fields.dates
    if dates:
        return True, f"dated {dates[0]}"
    return False, "no reporting period or date found"


def _has_figures(extraction: Extraction) -> tuple[bool, str]:
    figures = _FIGURE.findall(_text(extraction))
    if not figures:
        return False, "no figures found"
    if len(figures) < _MIN_FIGURES:
        return False, (
            f"only {_plural(len(figures), 'figure')} found; "
            f"at least {_MIN_FIGURES} expected"
        )
    return True, f"{len(figures)} figures found, such as {_listing(figures, 3)}"


def _introduces_value(line: str | None) -> bool:
    """Whether a line can be the value of the empty label just before it."""
    if line is None or _LABEL.match(line):
        return False
    return not (line.isupper() or set(line) <= set("=-_ "))


def _missing_values(text: str) -> list[str]:
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line]
    findings: list[str] = []
    for index, (number, line) in enumerate(lines):
        match = _LABEL.match(line)
        if match is None:
            findings += [f'"{m}" on line {number}' for m in _MARKER.findall(line)]
            continue

        label, value = match.group(1), match.group(2).strip()
        following = lines[index + 1][1] if index + 1 < len(lines) else None
        if not value and not _introduces_value(following):
            findings.append(f"{label} is empty")
        elif value.lower() in _PLACEHOLDERS or _MARKER.search(value):
            findings.append(f'{label} is "{value}"')
    return findings


def _no_missing_markers(extraction: Extraction) -> tuple[bool, str]:
    text = _text(extraction)
    if not text.strip():
        return False, "no text at all, so every value is missing"

    findings = _missing_values(text)
    if findings:
        return False, f"missing or placeholder values: {_listing(findings)}"
    return True, "no empty, missing or placeholder values found"


# Table ---------------------------------------------------------------------

_NUMERIC_COLUMN = re.compile(
    r"amount|total|price|cost|montant|prix|salary|salaire|balance|solde"
    r"|d[ée]bit|cr[ée]dit|betrag|preis|quantity|qty"
    r"|(?<![a-z])(?:tax|vat|tva|fees?)(?![a-z])",
    re.I,
)


def _each_table(check: TableCheck) -> Check:
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


def _has_header(table: Table) -> tuple[bool, str]:
    if not table.header:
        return False, "no header row"
    blank = [str(i) for i, name in enumerate(table.header, 1) if not name.strip()]
    if blank:
        return False, f"header has no name for column {', '.join(blank)}"
    if all(_is_number(name) for name in table.header):
        return False, "the first row holds only numbers, so it is data, not a header"
    return True, (
        f"header names {_plural(len(table.header), 'column')}: {_listing(table.header)}"
    )


def _has_rows(table: Table) -> tuple[bool, str]:
    if table.row_count == 0:
        return False, "no data rows"
    return True, f"{_plural(table.row_count, 'data row')} found"


def _consistent_row_width(table: Table) -> tuple[bool, str]:
    width = len(table.header) or table.column_count
    # Blank rows are no_empty_rows' business, whatever their width.
    ragged = [
        f"data row {i} has {_plural(len(row), 'cell')}"
        for i, row in enumerate(table.rows, 1)
        if len(row) != width and any(cell.strip() for cell in row)
    ]
    if not ragged and not table.problems:
        return True, f"every row has {_plural(width, 'cell')}, like the header"

    parts = []
    if ragged:
        parts.append(f"{_listing(ragged)}; the header has {width}")
    if table.problems:
        parts.append(f"the reader reported: {_listing(table.problems)}")
    return False, "; ".join(parts)


def _numeric_columns_parse(table: Table) -> tuple[bool, str]:
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
            failures.append(f"column {name} has non-numbers: {_listing(bad, 3)}")
    if failures:
        return False, "; ".join(failures)
    names = _listing([name for _, name in columns])
    return True, f"every value in {names} is a number"


def _no_empty_rows(table: Table) -> tuple[bool, str]:
    empty = [
        str(i)
        for i, row in enumerate(table.rows, 1)
        if not any(cell.strip() for cell in row)
    ]
    if len(empty) == 1:
        return False, f"data row {empty[0]} is empty"
    if empty:
        return False, f"data rows {_listing(empty)} are empty"
    return True, "no empty rows"


# Generic document ----------------------------------------------------------

_MIN_READABLE: Final = 0.95
_MIN_LINES: Final = 3


def _readable_text(extraction: Extraction) -> tuple[bool, str]:
    chars = [char for char in _text(extraction) if not char.isspace()]
    if not chars:
        return False, "no text to read"

    # U+FFFD marks bytes the reader could not decode; it counts as unreadable.
    unreadable = sum(1 for c in chars if c == "\ufffd" or not c.isprintable())
    share = (len(chars) - unreadable) / len(chars)
    percent = int(share * 100)
    if share < _MIN_READABLE:
        return False, (
            f"only {percent}% of {len(chars)} characters are readable; "
            f"{unreadable} are control, private-use or undecodable"
        )
    return True, f"{percent}% of {len(chars)} characters are readable"


def _has_structure(extraction: Extraction) -> tuple[bool, str]:
    lines = _lines(_text(extraction))
    pages = extraction.page_count or len(extraction.pages)
    where = f" over {_plural(pages, 'page')}" if pages else ""
    if not lines:
        return False, "no text"
    if len(lines) < _MIN_LINES and pages < 2:
        return False, f"only {_plural(len(lines), 'line')} of text{where}"
    return True, f"{_plural(len(lines), 'line')} of text{where}"


# The tables ----------------------------------------------------------------

_RULES: Final[dict[DocumentType, tuple[_Rule, ...]]] = {
    "invoice": (
        _Rule("has_invoice_number", 25, "an invoice number", _has_invoice_number),
        _Rule("has_date", 15, "an invoice date", _has_date),
        _Rule("has_total", 25, "a total amount with its currency", _has_total),
        _Rule(
            "amounts_consistent",
            20,
            "no amount exceeds the total; subtotal plus tax makes the total",
            _amounts_consistent,
        ),
        _text_rule(15, 50),
    ),
    "contract": (
        _Rule("has_title", 20, "a title naming an agreement", _contract_title),
        _Rule("has_parties", 20, "the parties are introduced", _has_parties),
        _Rule("has_date", 15, "a date (effective or signing)", _has_date),
        _Rule("has_terms", 15, "at least two contract clauses", _has_terms),
        _Rule("has_signature_block", 15, "a signature block", _has_signature_block),
        _text_rule(15, 200),
    ),
    "report": (
        _Rule("has_title", 20, "a report title or a company name", _report_title),
        _Rule("has_period", 15, "the period or date reported on", _has_period),
        _Rule("has_figures", 20, "at least three figures", _has_figures),
        _Rule(
            "no_missing_markers",
            30,
            "no empty labels, missing-data markers or placeholders",
            _no_missing_markers,
        ),
        _text_rule(15, 50),
    ),
    "table": (
        _Rule(
            "has_header",
            20,
            "a header row naming the columns",
            _each_table(_has_header),
        ),
        _Rule("has_rows", 20, "at least one data row", _each_table(_has_rows)),
        _Rule(
            "consistent_row_width",
            20,
            "every row as wide as the header, and no problems while reading",
            _each_table(_consistent_row_width),
        ),
        _Rule(
            "numeric_columns_parse",
            20,
            "amount, total, price and similar columns hold numbers",
            _each_table(_numeric_columns_parse),
        ),
        _Rule("no_empty_rows", 20, "no blank rows", _each_table(_no_empty_rows)),
    ),
    "document": (
        _text_rule(50, 100),
        _Rule("readable_text", 25, "at least 95% readable characters", _readable_text),
        _Rule(
            "has_structure",
            25,
            "at least three lines of text, or several pages",
            _has_structure,
        ),
    ),
}


def rules_for(document_type: DocumentType) -> list[RuleDescription]:
    """The rules a document of this type is scored against, in order."""
    return [
        RuleDescription(
            name=rule.name, weight=rule.weight, description=rule.description
        )
        for rule in _RULES[document_type]
    ]


def validate(document_type: DocumentType, extraction: Extraction) -> Validation:
    """Score an extraction against the rules of its document type."""
    results = []
    for rule in _RULES[document_type]:
        passed, reason = rule.check(extraction)
        results.append(
            RuleResult(rule=rule.name, passed=passed, weight=rule.weight, reason=reason)
        )

    total = sum(result.weight for result in results)
    earned = sum(result.weight for result in results if result.passed)
    score = round(100 * earned / total)
    return Validation(
        document_type=document_type,
        score=score,
        passed=score >= PASS_SCORE,
        rules=results,
    )
