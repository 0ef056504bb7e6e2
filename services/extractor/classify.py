"""Which kind of document this is: invoice, contract, report, table or document.

Each kind has weighted keyword patterns, counted once each; a kind named in
the first lines (the title) scores extra, and an invoice number with a total
is strong evidence of an invoice. Below a minimum score a text is just a
"document". A table is an invoice only when it is a single invoice record.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Final

from shared.documents import DocumentFormat, DocumentType, KeyFields, Table

_KEYWORDS: Final[dict[DocumentType, tuple[tuple[re.Pattern[str], int], ...]]] = {
    "invoice": (
        (re.compile(r"\b(?:invoice|facture|rechnung|fattura|factura)\b", re.I), 3),
        (re.compile(r"\b(?:receipt|quittung|reçu)\b", re.I), 2),
        (re.compile(r"\bbill(?:ed)?\s+to\b|\bfactur[ée] à\b", re.I), 1),
        (re.compile(r"\b(?:amount|balance|total)\s+due\b|\bgrand\s+total\b", re.I), 1),
        (re.compile(r"\b(?:sub-?total|vat|gst|tva|mwst|ttc)\b", re.I), 1),
        (re.compile(r"\bdue\s+date\b|\bpayment\s+terms\b|\bzahlungsziel\b", re.I), 1),
    ),
    "contract": (
        (re.compile(r"\b(?:agreement|contract|contrat|vertrag)\b", re.I), 3),
        (re.compile(r"\bhereinafter\b|\bin witness whereof\b", re.I), 2),
        (re.compile(r"\b(?:parties|party)\b", re.I), 1),
        (re.compile(r"\bshall\b", re.I), 1),
        (re.compile(r"\bterminat(?:e|ion)\b|\brésiliation\b", re.I), 1),
        (re.compile(r"\bgoverning law\b|\bconfidential(?:ity)?\b", re.I), 1),
        (re.compile(r"\bsignature\b|\bsigned\b|\beffective date\b", re.I), 1),
    ),
    "report": (
        (re.compile(r"\b(?:report|rapport|bericht)\b", re.I), 3),
        (re.compile(r"\b(?:executive\s+)?summary\b|\bsynthèse\b", re.I), 1),
        (re.compile(r"\b(?:Q[1-4]|H[12]|FY)\s*\d{2,4}\b|\bquarter(?:ly)?\b", re.I), 1),
        (re.compile(r"\brevenue\b|\bexpenses?\b|\bnet\s+profit\b", re.I), 1),
        (re.compile(r"\bperiod\b|\bfindings\b|\bconclusions?\b", re.I), 1),
    ),
}
_READ_LIMIT: Final = 50_000
_TITLE_LINES: Final = 3
_TITLE_BONUS: Final = 3
_FIELDS_BONUS: Final = 3
_MIN_SCORE: Final = 3
# On equal scores the more specific kind wins.
_PRECEDENCE: Final[tuple[DocumentType, ...]] = ("invoice", "contract", "report")


def classify(
    document_format: DocumentFormat,
    text: str,
    fields: KeyFields,
    tables: list[Table],
) -> DocumentType:
    """The document type that the text, tables and key fields point to."""
    if document_format in ("csv", "tsv") or tables:
        return _classify_table(fields, tables)

    # A document shows its kind early; reading all of a huge one buys nothing.
    head = text[:_READ_LIMIT]
    title = "\n".join(
        islice((line for line in head.splitlines() if line.strip()), _TITLE_LINES)
    )
    scores = {kind: _score(kind, head, title) for kind in _PRECEDENCE}
    if fields.invoice_number and fields.total:
        scores["invoice"] += _FIELDS_BONUS

    best = max(_PRECEDENCE, key=lambda kind: scores[kind])
    return best if scores[best] >= _MIN_SCORE else "document"


def _classify_table(fields: KeyFields, tables: list[Table]) -> DocumentType:
    records = sum(
        1 for table in tables for row in table.rows if any(c.strip() for c in row)
    )
    if records == 1 and fields.invoice_number and fields.total:
        return "invoice"
    return "table"


def _score(kind: DocumentType, text: str, title: str) -> int:
    score = 0
    for index, (pattern, weight) in enumerate(_KEYWORDS[kind]):
        if pattern.search(text):
            score += weight
        # The first pattern names the kind itself: in a title it is decisive.
        if index == 0 and pattern.search(title):
            score += _TITLE_BONUS
    return score
