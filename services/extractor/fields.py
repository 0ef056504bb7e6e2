"""Key fields in a document's text: invoice number, dates, amounts, the total.

Text is read line by line, as pypdf's layout mode or a text file lays it out:
a label and its value share a line, or the value is alone on the next one.
Labels come in tiers; a stronger tier wins over an earlier position, so an
"Invoice No" beats an "Order ID" and a "Grand Total" beats a "Total".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from services.extractor.amounts import (
    FoundAmount,
    currency_code,
    dominant_currency,
    find_amounts,
)
from services.extractor.dates import find_dates, numeric_order
from shared.documents import Amount, KeyFields

_MARKUP = re.compile(r"</?[A-Za-z][A-Za-z0-9]{0,9}\s*/?>")

# Invoice-number labels, strongest first: the invoice's own number, then the
# order or booking it belongs to, then a bare "Number:" opening a line.
_NUMBER_LABELS: Final = (
    re.compile(
        r"\b(?:invoice|bill)\s*(?:number|num|no|nr|id|#)(?![A-Za-z])\.?"
        r"|\binvoice(?=\s*:)"
        r"|\brechnungs?[-\s]?(?:nummer|nr|no)(?![A-Za-z])\.?"
        r"|\bfacture\s*(?:n[°ºo]|num[ée]ro|#)(?![A-Za-z])\.?"
        r"|\b(?:num[ée]ro|n[°º]|no)\.?\s*(?:de\s+)?(?:la\s+)?facture\b"
        r"|\bfa(?:ttura|ctura)\s*(?:n[°º.]|n[úu]mero)",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?:order|booking|reservation|receipt|confirmation)\s*"
        r"(?:number|num|no|nr|id|ref|#)(?![A-Za-z])\.?"
        r"|\b(?:bestell|auftrags|buchungs)(?:nummer|nr)(?![A-Za-z])\.?"
        r"|\bcommande\s*(?:n[°º]|num[ée]ro)(?![A-Za-z])\.?",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*(?:num[ée]ro|number|nummer|nr|no|n[°º])\.?(?=\s*:)", re.I),
)
_NUMBER_VALUE = re.compile(r"[\s:#.=\u2013-]*(?P<value>[^\W_](?:[\w/.-]*[^\W_])?)")
_TOKEN = re.compile(r"\S+")
_COLUMN_SLACK: Final = 2
_MIN_NUMBER_LENGTH: Final = 3
_MAX_NUMBER_LENGTH: Final = 40

# Total labels: 2 names the amount to pay, 1 is a bare "Total".
_TOTAL_LABELS: Final = (
    (
        2,
        re.compile(
            r"\bgrand\s+total\b|\btotal\s+(?:amount\s+)?(?:due|payable|to\s+pay)\b"
            r"|\b(?:amount|balance)\s+(?:due|payable)\b|\btotal\s+amount\b"
            r"|\binvoice\s+total\b|\btotal\s+for\s+this\s+invoice\b"
            r"|\btotal\s+ttc\b|\bmontant\s+(?:total|ttc)\b"
            r"|\b(?:total|net|somme|montant|reste)\s+[àa]\s+payer\b"
            r"|\b(?:gesamtbetrag|rechnungsbetrag|zahlbetrag|endbetrag|gesamtsumme)\b"
            r"|\bimporte\s+total\b",
            re.IGNORECASE,
        ),
    ),
    (1, re.compile(r"\b(?:total|totaal|totale|gesamt|summe)\b", re.IGNORECASE)),
)
_NOT_TOTAL = re.compile(
    r"\bsub[\s-]?total|\bsous[\s-]?total|zwischensumme"
    r"|\btotal\s+(?:ht|hors|net|excl\w*|before|tax|vat|tva|mwst|ust|gst|qty"
    r"|quantity|items?|pages?|hours?|weight|discount)\b"
    r"|\b(?:tax|vat|tva|mwst|ust|gst)\s+total\b",
    re.IGNORECASE,
)
_STRONG_TOTAL: Final = 2
_EXCLUSION_REACH: Final = 24

# What may follow a listed amount on its line: more figures, a currency, a
# tax mark such as "TTC". A word after it means the number sits in prose.
_WORD = re.compile(r"[^\W\d_]+")
_TRAILING_WORDS: Final = frozenset(
    {"ttc", "ht", "htva", "tvac", "incl", "excl", "net", "brut", "gross", "cr", "dr"}
    | {"us"}
)
_LABEL_SPLIT = re.compile(r"\s{2,}|\t")
_LABEL_TRIM = " \t:#*-\u2013=|"
_TRAILING_FIGURES = re.compile(r"[\s\d.,%€$£₹¥-]+$")
_MAX_LABEL: Final = 60
_LABEL_WINDOW: Final = 200
_MAX_AMOUNTS: Final = 100


@dataclass(frozen=True)
class _Line:
    """One line of text with markup and dates blanked out, and its amounts."""

    text: str
    amounts: list[FoundAmount]
    row_end: int
    """Where the line's last word ends, not counting currencies and tax marks."""
    dates: list[str]
    """The ISO dates that were blanked out, in reading order."""


@dataclass(frozen=True)
class _TotalCandidate:
    tier: int
    amount: FoundAmount
    label: str
    index: int


def fields_from_text(text: str) -> KeyFields:
    """Invoice number, dates, amounts and total found in a document's text."""
    currency = dominant_currency(text)
    month_first = numeric_order(text)
    if month_first is None:
        # Without a date that settles it, US-dollar documents are month-first.
        month_first = currency == "USD"

    lines = [_prepare(raw, month_first=month_first) for raw in text.splitlines()]
    dates = dict.fromkeys(iso for line in lines for iso in line.dates)
    return KeyFields(
        invoice_number=find_invoice_number(text),
        dates=list(dates),
        amounts=_listed_amounts(lines, currency),
        total=_find_total(lines, currency),
    )


def find_invoice_number(text: str) -> str | None:
    """The document's reference number, from the strongest label that has one."""
    lines = [_MARKUP.sub(" ", line) for line in text.splitlines()]
    below = _next_filled(lines)
    columns: dict[int, dict[int, str]] = {}
    for pattern in _NUMBER_LABELS:
        for line, next_index in zip(lines, below, strict=True):
            for match in pattern.finditer(line):
                value = _number_beside(line, match.end())
                if value is None and next_index is not None:
                    value = _number_below(lines, next_index, match.start(), columns)
                if value:
                    return value
    return None


def _next_filled(lines: Sequence[str]) -> list[int | None]:
    """For each line, the index of the next line that is not blank."""
    following: list[int | None] = [None] * len(lines)
    nearest: int | None = None
    for index in range(len(lines) - 1, -1, -1):
        following[index] = nearest
        if lines[index].strip():
            nearest = index
    return following


def _number_beside(line: str, position: int) -> str | None:
    match = _NUMBER_VALUE.match(line, position)
    return plausible_number(match["value"]) if match else None


def _number_below(
    lines: Sequence[str], index: int, column: int, columns: dict[int, dict[int, str]]
) -> str | None:
    """The value printed under its label, as forms and layout text place it."""
    if index not in columns:
        columns[index] = {t.start(): t.group(0) for t in _TOKEN.finditer(lines[index])}
    tokens = columns[index]

    for offset in range(-_COLUMN_SLACK, _COLUMN_SLACK + 1):
        token = tokens.get(column + offset)
        if token is not None:
            value = _NUMBER_VALUE.fullmatch(token)
            return plausible_number(value["value"]) if value else None
    return None


def plausible_number(value: str) -> str | None:
    """The value if it can be a reference number: 3 to 40 characters, a digit."""
    if not _MIN_NUMBER_LENGTH <= len(value) <= _MAX_NUMBER_LENGTH:
        return None
    if not any(char.isdigit() for char in value):
        return None
    return value


def _prepare(raw: str, *, month_first: bool) -> _Line:
    text = _MARKUP.sub(lambda m: " " * len(m.group(0)), raw)

    # Blank the dates out, keeping every other character where it was.
    dates = find_dates(text, month_first=month_first)
    pieces: list[str] = []
    last = 0
    for found in dates:
        pieces += [text[last : found.start], " " * (found.end - found.start)]
        last = found.end
    text = "".join(pieces) + text[last:]

    return _Line(text, find_amounts(text), _row_end(text), [d.iso for d in dates])


def _find_total(lines: Sequence[_Line], currency: str | None) -> Amount | None:
    candidates: list[_TotalCandidate] = []
    for index in range(len(lines)):
        candidate = _total_on_line(lines, index)
        if candidate:
            candidates.append(candidate)
    if not candidates:
        return None

    best = max(
        candidates,
        key=lambda c: (c.tier, c.amount.currency is not None, c.index),
    )
    return Amount(
        value=best.amount.text_value,
        currency=best.amount.currency or currency,
        label=best.label,
    )


def _total_on_line(lines: Sequence[_Line], index: int) -> _TotalCandidate | None:
    line = lines[index]
    label = _total_label(line.text)
    if label is None:
        return None

    tier, match = label
    label_text = " ".join(match.group(0).split())
    after = [a for a in line.amounts if a.start >= match.end()]
    before = [a for a in line.amounts if a.end <= match.start()]
    chosen = _pick(after) or _pick(before)
    if chosen is not None:
        label_text = _label_before(line.text, chosen.start) or label_text
    elif not line.text[match.end() :].strip(_LABEL_TRIM):
        chosen = _alone_on_next_line(lines, index)
    if chosen is None:
        return None

    if not (chosen.currency or chosen.has_cents or tier >= _STRONG_TOTAL):
        return None
    return _TotalCandidate(tier, chosen, label_text, index)


def _total_label(text: str) -> tuple[int, re.Match[str]] | None:
    for tier, pattern in _TOTAL_LABELS:
        matches = [m for m in pattern.finditer(text) if not _excluded(text, m)]
        if matches:
            return tier, matches[-1]
    return None


def _excluded(text: str, label: re.Match[str]) -> bool:
    """Whether the label is part of a subtotal, a tax total or a count."""
    # Exclusions reach a few words either side; a window keeps this cheap.
    window_start = max(0, label.start() - _EXCLUSION_REACH)
    window = text[window_start : label.end() + _EXCLUSION_REACH]
    start, end = label.start() - window_start, label.end() - window_start
    return any(m.start() < end and start < m.end() for m in _NOT_TOTAL.finditer(window))


def _pick(amounts: Sequence[FoundAmount]) -> FoundAmount | None:
    # Totals sit at the right end of their row; a currency marks the money.
    with_currency = [a for a in amounts if a.currency]
    if with_currency:
        return with_currency[-1]
    return amounts[-1] if amounts else None


def _alone_on_next_line(lines: Sequence[_Line], index: int) -> FoundAmount | None:
    filled = (n for n in range(index + 1, len(lines)) if lines[n].text.strip())
    following = next(filled, None)
    if following is None or len(lines[following].amounts) != 1:
        return None

    line = lines[following]
    amount = line.amounts[0]
    outside = line.text[: amount.start] + line.text[amount.end :]
    return None if outside.strip() else amount


def _listed_amounts(lines: Sequence[_Line], currency: str | None) -> list[Amount]:
    listed: dict[Amount, None] = {}
    for line in lines:
        for amount in line.amounts:
            if not (amount.currency or amount.has_cents):
                continue
            if amount.end < line.row_end:
                continue
            item = Amount(
                value=amount.text_value,
                currency=amount.currency or currency,
                label=_label_before(line.text, amount.start),
            )
            listed.setdefault(item, None)
            if len(listed) >= _MAX_AMOUNTS:
                return list(listed)
    return list(listed)


def _row_end(text: str) -> int:
    for word in reversed(list(_WORD.finditer(text))):
        token = word.group(0)
        if token.lower() not in _TRAILING_WORDS and currency_code(token) is None:
            return word.end()
    return 0


def _label_before(text: str, end: int) -> str | None:
    """The nearest words left of a position, as a person would read the label."""
    for piece in reversed(_LABEL_SPLIT.split(text[max(0, end - _LABEL_WINDOW) : end])):
        label = piece.strip(_LABEL_TRIM)
        label = _TRAILING_FIGURES.sub("", label).strip(_LABEL_TRIM)
        if any(char.isalpha() for char in label):
            return label[-_MAX_LABEL:].strip()
    return None
