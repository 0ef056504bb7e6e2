"""Money in free text and in table cells: numbers in any common notation.

``1,204.50``, ``15.750,00``, ``1 250,00``, ``1'250.00`` and ``34,73`` are all
read; a currency is recognised when its symbol or code sits right before or
after the number (``€15,600.00``, ``Rs 1939``, ``29.99 €``, ``EUR 34,73``).
Values come out as :class:`~decimal.Decimal` and are written with two decimals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

_SYMBOLS: Final = {
    "€": "EUR",
    "$": "USD",
    "us$": "USD",
    "£": "GBP",
    "₹": "INR",
    "rs": "INR",
    "rs.": "INR",
    "¥": "JPY",
    "euro": "EUR",
    "euros": "EUR",
}
_CODES: Final = frozenset(
    {"EUR", "USD", "GBP", "INR", "CHF", "JPY", "CNY", "CAD", "AUD", "NZD"}
    | {"NOK", "SEK", "DKK", "PLN", "CZK", "HUF", "RON", "BGN", "SGD", "HKD"}
)
# Codes only in capitals: "cad" or "sek" in prose are words, not money. Letters
# may not touch a code, but digits may: "29.99EUR" names euros.
_CURRENCY = (
    r"US\$|€|\$|£|₹|¥|(?<![A-Za-z])(?:(?i:euros?)|Rs\.?|"
    + "|".join(sorted(_CODES))
    + r")(?![A-Za-z])"
)
_CURRENCY_BEFORE = re.compile(rf"(?:{_CURRENCY})\s{{0,2}}$")
_CURRENCY_AFTER = re.compile(rf"\s{{0,2}}(?:{_CURRENCY})")
_CURRENCY_ANYWHERE = re.compile(_CURRENCY)
# Enough to hold the longest token and its spaces, with letters to spare so that
# the look-behind above sees real text rather than the window's edge.
_BEFORE_WINDOW: Final = 12

# Groups of three digits share one separator throughout ("1 250", "15.750",
# "1,204"); the decimal part has one or two digits.
_BODY = (
    r"-?(?:[1-9]\d{0,2}(?P<sep>[,.'\u00a0\u202f ])\d{3}(?:(?P=sep)\d{3})*"
    r"(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
)
_NUMBER = re.compile(rf"(?<![\w.,'-]){_BODY}(?![\w%]|[.,]\d|\s?%)")
_CELL = re.compile(rf"\(?{_BODY}\)?")
_DECIMALS = re.compile(r"[.,](\d{1,2})$")
_CENTS = re.compile(r"[.,]\d{2}$")
_NON_DIGIT = re.compile(r"\D")
_CENT: Final = Decimal("0.01")


@dataclass(frozen=True)
class FoundAmount:
    """A number in a line, with its currency if one is attached."""

    start: int
    end: int
    value: Decimal
    currency: str | None
    has_cents: bool

    @property
    def text_value(self) -> str:
        return format_value(self.value)


def format_value(value: Decimal) -> str:
    """A plain decimal string with two decimals: ``Decimal("1939")`` → ``"1939.00"``."""
    return str(value.quantize(_CENT))


def currency_code(token: str) -> str | None:
    """The ISO 4217 code for a symbol or code such as ``€``, ``Rs.`` or ``eur``."""
    cleaned = token.strip()
    if cleaned.upper() in _CODES:
        return cleaned.upper()
    return _SYMBOLS.get(cleaned.lower())


def parse_number(text: str) -> Decimal | None:
    """The value of a number written in any notation this module reads.

    Accounting negatives in parentheses count: ``(12.50)`` is ``-12.50``.
    """
    cleaned = text.strip()
    if not _CELL.fullmatch(cleaned):
        return None

    negative = cleaned.startswith("-") or (
        cleaned.startswith("(") and cleaned.endswith(")")
    )
    digits = cleaned.strip("()-")
    decimals = _DECIMALS.search(digits)
    whole = digits[: decimals.start()] if decimals else digits
    fraction = decimals.group(1) if decimals else "0"
    integer = _NON_DIGIT.sub("", whole) or "0"
    try:
        value = Decimal(f"{integer}.{fraction}")
    except InvalidOperation:
        return None
    return -value if negative else value


def parse_money_cell(cell: str) -> tuple[Decimal, str | None] | None:
    """A table cell such as ``"1 250,00"``, ``"€12.00"`` or ``"34.73 EUR"``."""
    currencies = [currency_code(m.group(0)) for m in _CURRENCY_ANYWHERE.finditer(cell)]
    number = _CURRENCY_ANYWHERE.sub("", cell)
    value = parse_number(number)
    if value is None:
        return None
    return value, next((c for c in currencies if c), None)


def find_amounts(line: str) -> list[FoundAmount]:
    """Every number in a line of text, with the currency attached to it if any.

    Percentages are skipped. Dates should be masked out before calling this,
    or their day and year would be read as numbers.
    """
    found: list[FoundAmount] = []
    for match in _NUMBER.finditer(line):
        value = parse_number(match.group(0))
        if value is None:
            continue

        # Only a few characters either side are looked at, so a long line of
        # figures costs time in proportion to its length, not its square.
        window_start = max(0, match.start() - _BEFORE_WINDOW)
        before = _CURRENCY_BEFORE.search(line[window_start : match.start()])
        after = _CURRENCY_AFTER.match(line, match.end())
        token = before or after
        currency = currency_code(token.group(0)) if token else None
        found.append(
            FoundAmount(
                start=window_start + before.start() if before else match.start(),
                end=after.end() if after else match.end(),
                value=value,
                currency=currency,
                has_cents=_CENTS.search(match.group(0)) is not None,
            )
        )
    return found


def dominant_currency(text: str) -> str | None:
    """The currency the text names most often, or ``None`` if it names none.

    Used for amounts printed without a currency, such as table columns under
    a heading that names it once.
    """
    counts: dict[str, int] = {}
    for match in _CURRENCY_ANYWHERE.finditer(text):
        code = currency_code(match.group(0))
        if code:
            counts[code] = counts.get(code, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda code: counts[code])
