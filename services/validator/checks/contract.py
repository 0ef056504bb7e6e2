"""The contract checks: a title, the parties, its clauses and a signature block."""

from __future__ import annotations

import re
from typing import Final

from services.validator.checks.common import lines_of, listing, plural, quote, text_of
from shared.documents import Extraction

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


def _distinct(pattern: re.Pattern[str], text: str) -> list[str]:
    seen: dict[str, None] = {}
    for match in pattern.finditer(text):
        seen.setdefault(match.group(0).lower(), None)
    return list(seen)


def contract_title(extraction: Extraction) -> tuple[bool, str]:
    """Whether one of the first lines names an agreement."""
    for line in lines_of(text_of(extraction))[:_TITLE_LINES]:
        if _AGREEMENT.search(line):
            return True, f"title {quote(line)} names an agreement"
    return False, f"none of the first {_TITLE_LINES} lines names an agreement"


def has_parties(extraction: Extraction) -> tuple[bool, str]:
    """Whether the text introduces the parties."""
    found = _distinct(_PARTIES, text_of(extraction))
    if not found:
        return False, 'no parties named (no "between" or "parties")'
    quoted = [f'"{word}"' for word in found]
    return True, f"parties introduced by {listing(quoted)}"


def has_terms(extraction: Extraction) -> tuple[bool, str]:
    """Whether the text names at least two kinds of contract clause."""
    found = _distinct(_TERMS, text_of(extraction))
    if len(found) < _MIN_TERMS:
        shown = f": {found[0]}" if found else ""
        return False, (
            f"only {plural(len(found), 'contract term')} found{shown}; "
            f"at least {_MIN_TERMS} expected"
        )
    return True, f"contract terms found: {listing(found)}"


def has_signature_block(extraction: Extraction) -> tuple[bool, str]:
    """Whether the text holds a signature block."""
    found = _distinct(_SIGNATURE, text_of(extraction))
    if not found:
        return False, "no signature block found"
    shown = ["a signature line" if w.startswith("_") else f'"{w}"' for w in found]
    return True, f"signature block found: {listing(shown)}"
