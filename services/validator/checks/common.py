"""Helpers and checks that several document types share.

A check is a pure function of an :class:`Extraction` that answers whether it
passed and why, in words a person can read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shared.documents import Extraction

Check = Callable[[Extraction], tuple[bool, str]]


def text_of(extraction: Extraction) -> str:
    """The extraction's text, or its pages' text joined when that is empty."""
    text = extraction.text
    if not text.strip():
        text = "\n".join(page.text for page in extraction.pages)
    return text.lstrip("\ufeff")


def lines_of(text: str) -> list[str]:
    """The non-blank lines of ``text``, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def plural(count: int, word: str) -> str:
    """``count`` followed by ``word``, with an ``s`` unless the count is one."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def listing(items: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` items joined by commas, with how many were left out."""
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more"
    return shown


def quote(line: str) -> str:
    """``line`` in double quotes, cut short past 80 characters."""
    return f'"{line[:77]}..."' if len(line) > 80 else f'"{line}"'


def has_text(minimum: int) -> Check:
    """A check that the text holds at least ``minimum`` non-whitespace characters."""

    def check(extraction: Extraction) -> tuple[bool, str]:
        count = sum(not char.isspace() for char in text_of(extraction))
        if count < minimum:
            return False, (
                f"text has only {plural(count, 'character')} besides whitespace; "
                f"at least {minimum} expected"
            )
        return True, f"text has {count} characters besides whitespace"

    return check


def has_date(extraction: Extraction) -> tuple[bool, str]:
    """Whether the extraction found at least one date."""
    dates = extraction.key_fields.dates
    if not dates:
        return False, "no date found"
    if len(dates) == 1:
        return True, f"date {dates[0]} found"
    return True, f"{len(dates)} dates found, the first {dates[0]}"
