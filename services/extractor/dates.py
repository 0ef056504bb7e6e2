"""Dates found in free text, normalised to ISO 8601 (``YYYY-MM-DD``).

Numeric dates such as ``03/08/2014`` are ambiguous. The document decides: a
date that only parses one way (``18/12/2025``, ``12/18/2025``) fixes the order
for all of them; without one, day-first is assumed, except in documents whose
money is in US dollars.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Final

_MONTHS: Final = {
    # English
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3,
    "april": 4, "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7,
    "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12,
    "dec": 12,
    # German
    "januar": 1, "jänner": 1, "februar": 2, "märz": 3, "maerz": 3, "mai": 5,
    "juni": 6, "juli": 7, "oktober": 10, "okt": 10, "dezember": 12, "dez": 12,
    # French, with and without accents
    "janvier": 1, "février": 2, "fevrier": 2, "mars": 3, "avril": 4, "juin": 6,
    "juillet": 7, "août": 8, "aout": 8, "septembre": 9, "octobre": 10,
    "novembre": 11, "décembre": 12, "decembre": 12,
}  # fmt: skip
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY = r"(?P<day>\d{1,2})"
_YEAR = r"(?P<year>\d{4})"

_ISO = re.compile(
    r"(?<![\d.,/-])(?P<year>\d{4})([-/.])(?P<month>\d{1,2})\2(?P<day>\d{1,2})(?!\d)"
)
# Dots and slashes may sit next to a dash ("01.05.14-31.05.14" is a range);
# dashed dates may not, or phone numbers like 06-12-34-56-78 would be dates.
_NUMERIC = re.compile(
    r"(?<![\d.,/])(?P<first>\d{1,2})([./])(?P<second>\d{1,2})\2"
    r"(?P<year>\d{4}|\d{2})(?![\d,/]|\.\d)"
    r"|(?<![\w.,/-])(?P<dfirst>\d{1,2})-(?P<dsecond>\d{1,2})-"
    r"(?P<dyear>\d{4}|\d{2})(?![\w,/-]|\.\d)"
)
# Spaces are bounded ({1,3}): unbounded runs make the engine backtrack over
# the long blank stretches of layout text, in time quadratic in their length.
# "December 18, 2025", "Aug 3, 2014", "August 3 , 2014"
_MONTH_DAY = re.compile(
    rf"\b(?P<month>{_MONTH})\.?\s{{1,3}}{_DAY}(?:st|nd|rd|th)?"
    rf"(?:\s{{0,2}},\s{{0,3}}|\s{{1,3}}){_YEAR}(?!\d)",
    re.IGNORECASE,
)
# "18 December 2025", "7. Mai 2014", "1er juillet 2015", "3rd of March 2020"
_DAY_MONTH = re.compile(
    rf"(?<!\d){_DAY}(?:er|st|nd|rd|th)?\.?\s{{1,3}}(?:of\s{{1,3}})?"
    rf"(?P<month>{_MONTH})\.?,?\s{{1,3}}{_YEAR}(?!\d)",
    re.IGNORECASE,
)
_MIN_YEAR: Final = 1900
_MAX_YEAR: Final = 2100
_MONTHS_IN_YEAR: Final = 12


@dataclass(frozen=True)
class FoundDate:
    """A date and where its text sits, so callers can mask it out."""

    start: int
    end: int
    value: date

    @property
    def iso(self) -> str:
        return self.value.isoformat()


def find_dates(text: str, *, month_first: bool | None = None) -> list[FoundDate]:
    """Every date in the text, in reading order, without overlaps.

    ``month_first`` forces the order of numeric dates; ``None`` lets the
    document decide (see the module docstring), falling back to day-first.
    """
    if month_first is None:
        month_first = numeric_order(text) is True

    # Spans taken so far, sorted and disjoint: only the neighbours of a new
    # span can overlap it.
    starts: list[int] = []
    found: list[FoundDate] = []
    for start, end, value in _candidates(text, month_first=month_first):
        position = bisect.bisect_left(starts, start)
        if position > 0 and found[position - 1].end > start:
            continue
        if position < len(found) and found[position].start < end:
            continue
        starts.insert(position, start)
        found.insert(position, FoundDate(start, end, value))
    return found


def iso_dates(text: str, *, month_first: bool | None = None) -> list[str]:
    """The distinct ISO dates in the text, in the order they first appear."""
    seen: dict[str, None] = {}
    for item in find_dates(text, month_first=month_first):
        seen.setdefault(item.iso, None)
    return list(seen)


def numeric_order(text: str) -> bool | None:
    """True if the text's numeric dates are month-first, False if day-first.

    ``None`` when no numeric date in the text settles the question.
    """
    for match in _NUMERIC.finditer(text):
        first, second, _ = _numeric_parts(match)
        if first > _MONTHS_IN_YEAR >= second:
            return False
        if second > _MONTHS_IN_YEAR >= first:
            return True
    return None


def _candidates(text: str, *, month_first: bool) -> Iterator[tuple[int, int, date]]:
    # Named months first: they are unambiguous, and their day and year digits
    # must not be read again as parts of a numeric date.
    for match in _MONTH_DAY.finditer(text):
        yield from _built(match, match["year"], _MONTHS[match["month"].lower()])
    for match in _DAY_MONTH.finditer(text):
        yield from _built(match, match["year"], _MONTHS[match["month"].lower()])
    for match in _ISO.finditer(text):
        yield from _built(match, match["year"], int(match["month"]))
    for match in _NUMERIC.finditer(text):
        first, second, year = _numeric_parts(match)
        day, month = (second, first) if month_first else (first, second)
        yield from _built(match, year, month, day)


def _numeric_parts(match: re.Match[str]) -> tuple[int, int, str]:
    if match["first"] is not None:
        return int(match["first"]), int(match["second"]), match["year"]
    return int(match["dfirst"]), int(match["dsecond"]), match["dyear"]


def _built(
    match: re.Match[str], year_text: str, month: int, day: int | None = None
) -> Iterator[tuple[int, int, date]]:
    year = int(year_text)
    if len(year_text) == 2:
        # Two-digit years are this century's: "21.05.14" is 2014.
        year += 2000
    if day is None:
        day = int(match["day"])
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return

    try:
        value = date(year, month, day)
    except ValueError:
        return
    yield match.start(), match.end(), value
