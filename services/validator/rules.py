"""The validator's scoring rules: one table of weighted checks per document type.

Every check is a pure function of an :class:`Extraction` that answers whether it
passed and why, in words a person can read; the checks live in
:mod:`services.validator.checks`, one module per document type. The score is the
share of the weights that passed, from 0 to 100; a document passes at
``PASS_SCORE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict

from services.validator.checks import contract, document, invoice, report, table
from services.validator.checks.common import Check, has_date, has_text
from shared.documents import DocumentType, Extraction, RuleResult, Validation

PASS_SCORE: Final = 60


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


def _text_rule(weight: int, minimum: int) -> _Rule:
    description = f"at least {minimum} characters of text besides whitespace"
    return _Rule("has_text", weight, description, has_text(minimum))


_RULES: Final[dict[DocumentType, tuple[_Rule, ...]]] = {
    "invoice": (
        _Rule(
            "has_invoice_number", 25, "an invoice number", invoice.has_invoice_number
        ),
        _Rule("has_date", 15, "an invoice date", has_date),
        _Rule("has_total", 25, "a total amount with its currency", invoice.has_total),
        _Rule(
            "amounts_consistent",
            20,
            "no amount exceeds the total; subtotal plus tax makes the total",
            invoice.amounts_consistent,
        ),
        _text_rule(15, 50),
    ),
    "contract": (
        _Rule("has_title", 20, "a title naming an agreement", contract.contract_title),
        _Rule("has_parties", 20, "the parties are introduced", contract.has_parties),
        _Rule("has_date", 15, "a date (effective or signing)", has_date),
        _Rule("has_terms", 15, "at least two contract clauses", contract.has_terms),
        _Rule(
            "has_signature_block", 15, "a signature block", contract.has_signature_block
        ),
        _text_rule(15, 200),
    ),
    "report": (
        _Rule("has_title", 20, "a report title or a company name", report.report_title),
        _Rule("has_period", 15, "the period or date reported on", report.has_period),
        _Rule("has_figures", 20, "at least three figures", report.has_figures),
        _Rule(
            "no_missing_markers",
            30,
            "no empty labels, missing-data markers or placeholders",
            report.no_missing_markers,
        ),
        _text_rule(15, 50),
    ),
    "table": (
        _Rule(
            "has_header",
            20,
            "a header row naming the columns",
            table.each_table(table.has_header),
        ),
        _Rule(
            "has_rows", 20, "at least one data row", table.each_table(table.has_rows)
        ),
        _Rule(
            "consistent_row_width",
            20,
            "every row as wide as the header, and no problems while reading",
            table.each_table(table.consistent_row_width),
        ),
        _Rule(
            "numeric_columns_parse",
            20,
            "amount, total, price and similar columns hold numbers",
            table.each_table(table.numeric_columns_parse),
        ),
        _Rule(
            "no_empty_rows", 20, "no blank rows", table.each_table(table.no_empty_rows)
        ),
    ),
    "document": (
        _text_rule(50, 100),
        _Rule(
            "readable_text",
            25,
            "at least 95% readable characters",
            document.readable_text,
        ),
        _Rule(
            "has_structure",
            25,
            "at least three lines of text, or several pages",
            document.has_structure,
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
