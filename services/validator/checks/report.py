"""The report checks: a title, the period, figures and no missing values."""

from __future__ import annotations

import re
from typing import Final

from services.validator.checks.common import (
    lines_of,
    listing,
    plural,
    quote,
    text_of,
)
from shared.documents import Extraction

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


def report_title(extraction: Extraction) -> tuple[bool, str]:
    """Whether the first line is a report title, or a company is named."""
    text = text_of(extraction)
    lines = lines_of(text)
    if lines and _REPORT_TITLE.search(lines[0]):
        return True, f"title {quote(lines[0])} found"

    for label, value in _labels(text):
        if label.lower() == "company" and value and value.lower() not in _PLACEHOLDERS:
            return True, f"company {quote(value)} found"
    return False, "no report title on the first line and no company name found"


def has_period(extraction: Extraction) -> tuple[bool, str]:
    """Whether the period reported on, or at least a date, is given."""
    text = text_of(extraction)
    for label, value in _labels(text):
        if label.lower() == "period" and value and value.lower() not in _PLACEHOLDERS:
            return True, f"period {quote(value)} found"

    match = _PERIOD.search(text)
    if match:
        return True, f"period {quote(match.group(0))} found"

    dates = extraction.key_fields.dates
    if dates:
        return True, f"dated {dates[0]}"
    return False, "no reporting period or date found"


def has_figures(extraction: Extraction) -> tuple[bool, str]:
    """Whether the text holds at least three figures."""
    figures = _FIGURE.findall(text_of(extraction))
    if not figures:
        return False, "no figures found"
    if len(figures) < _MIN_FIGURES:
        return False, (
            f"only {plural(len(figures), 'figure')} found; "
            f"at least {_MIN_FIGURES} expected"
        )
    return True, f"{len(figures)} figures found, such as {listing(figures, 3)}"


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


def no_missing_markers(extraction: Extraction) -> tuple[bool, str]:
    """Whether no label is empty and no value is a placeholder or marker."""
    text = text_of(extraction)
    if not text.strip():
        return False, "no text at all, so every value is missing"

    findings = _missing_values(text)
    if findings:
        return False, f"missing or placeholder values: {listing(findings)}"
    return True, "no empty, missing or placeholder values found"
