"""The generic document checks: readable text with some structure."""

from __future__ import annotations

from typing import Final

from services.validator.checks.common import lines_of, plural, text_of
from shared.documents import Extraction

_MIN_READABLE: Final = 0.95
_MIN_LINES: Final = 3


def readable_text(extraction: Extraction) -> tuple[bool, str]:
    """Whether at least 95% of the characters are readable."""
    chars = [char for char in text_of(extraction) if not char.isspace()]
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


def has_structure(extraction: Extraction) -> tuple[bool, str]:
    """Whether there are at least three lines of text, or several pages."""
    lines = lines_of(text_of(extraction))
    pages = extraction.page_count or len(extraction.pages)
    where = f" over {plural(pages, 'page')}" if pages else ""
    if not lines:
        return False, "no text"
    if len(lines) < _MIN_LINES and pages < 2:
        return False, f"only {plural(len(lines), 'line')} of text{where}"
    return True, f"{plural(len(lines), 'line')} of text{where}"
