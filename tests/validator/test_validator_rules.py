"""Unit tests for the validator's scoring rules, on hand-built extractions."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from services.validator.rules import PASS_SCORE, RuleDescription, rules_for, validate
from shared.documents import (
    Amount,
    DocumentType,
    Extraction,
    KeyFields,
    Page,
    RuleResult,
    Table,
    Validation,
)

SAMPLE_INVOICE = """Invoice for Professional Services

Invoice #: INV-2025-001
Date: December 18, 2025

Services Provided:
1. Cloud Infrastructure Setup        €5,000.00
2. AWS ECS Configuration             €3,500.00

Subtotal:                            €13,000.00
Tax (20%):                           €2,600.00
Total Amount Due:                    €15,600.00
"""

SAMPLE_CONTRACT = """PROFESSIONAL SERVICES AGREEMENT
Effective Date: December 18, 2025
PARTIES:
This Agreement is entered into between:
Provider: Tech Services SARL, 45 Avenue des Champs-Elysees, 75008 Paris
Client: Acme Corporation, 123 Business Street, 75001 Paris
1. SCOPE OF SERVICES
The Provider agrees to deliver cloud infrastructure consulting services.
2. TERM AND TERMINATION
Either party may terminate this Agreement with thirty (30) days written notice.
3. COMPENSATION
Client agrees to pay Provider a monthly retainer of 10,000 EUR.
_____________________________
Provider Signature
"""

FINANCIAL_REPORT = """\ufeffFINANCIAL REPORT Q4 2024

Company: Acme Corporation
Period: Q4 2024
Report Date: December 31, 2024

EXECUTIVE SUMMARY
=================
Total Revenue: 2,500,000
Net Profit: 700,000
Profit Margin: 28%

NOTES
=====
- Strong performance in product sales
"""

INCOMPLETE_REPORT = """\ufeffINCOMPLETE REPORT

Company: Unknown
Period: \n
SUMMARY
Revenue: [DATA MISSING]
Expenses: \nNet Profit: ERROR

Some data here but mostly incomplete...
"""

SHORT_REPORT = """REPORT 1

Company: Demo Corp 1
Revenue: 1000000
Expenses: 800000
Status: Complete
"""

LOREM = (
    "Lorem ipsum dolor sit amet, consetetur sadipscing elitr, sed diam nonumy\n"
    "eirmod tempor invidunt ut labore et dolore magna aliquyam erat, sed diam\n"
    "voluptua. At vero eos et accusam et justo duo dolores et ea rebum.\n"
)

EUR_TOTAL = Amount(value="15600.00", currency="EUR", label="Total Amount Due")
WELL_FORMED_INVOICE_FIELDS = KeyFields(
    invoice_number="INV-2025-001",
    dates=["2025-12-18"],
    amounts=[
        Amount(value="5000.00", currency="EUR"),
        Amount(value="13000.00", currency="EUR", label="Subtotal"),
        Amount(value="2600.00", currency="EUR", label="Tax (20%)"),
        EUR_TOTAL,
    ],
    total=EUR_TOTAL,
)


def _extraction(
    document_type: DocumentType = "document",
    *,
    text: str = "",
    pages: list[Page] | None = None,
    page_count: int | None = None,
    tables: list[Table] | None = None,
    key_fields: KeyFields | None = None,
) -> Extraction:
    return Extraction(
        s3_key="uploads/test-document",
        content_hash="0" * 64,
        size_bytes=len(text.encode()),
        content_type="text/plain",
        format="text",
        document_type=document_type,
        page_count=page_count,
        pages=pages or [],
        text=text,
        tables=tables or [],
        key_fields=key_fields or KeyFields(),
    )


def _table(
    rows: list[list[str]],
    header: list[str] | None = None,
    problems: list[str] | None = None,
) -> Table:
    header = ["id", "name", "amount"] if header is None else header
    return Table(
        encoding="utf-8",
        delimiter=",",
        header=header,
        rows=rows,
        row_count=len(rows),
        column_count=len(header),
        problems=problems or [],
    )


def _rule(validation: Validation, name: str) -> RuleResult:
    return next(result for result in validation.rules if result.rule == name)


def _invoice_rule(name: str, key_fields: KeyFields, text: str = "") -> RuleResult:
    extraction = _extraction("invoice", text=text, key_fields=key_fields)
    return _rule(validate("invoice", extraction), name)


def _text_rule(document_type: DocumentType, name: str, text: str) -> RuleResult:
    return _rule(validate(document_type, _extraction(document_type, text=text)), name)


def _table_rule(name: str, *tables: Table) -> RuleResult:
    extraction = _extraction("table", tables=list(tables))
    return _rule(validate("table", extraction), name)


# Scoring -------------------------------------------------------------------


def test_validate_score_is_share_of_passed_weights() -> None:
    fields = KeyFields(invoice_number="INV-1", dates=["2025-01-02"])

    validation = validate("invoice", _extraction("invoice", key_fields=fields))

    earned = sum(r.weight for r in validation.rules if r.passed)
    total = sum(r.weight for r in validation.rules)
    assert earned == 40
    assert validation.score == round(100 * earned / total) == 40
    assert validation.passed is False


def test_validate_score_at_threshold_passes() -> None:
    # Number (25), consistent amounts (20) and text (15) pass: exactly 60.
    fields = KeyFields(invoice_number="INV-1", total=Amount(value="10.00"))

    validation = validate(
        "invoice", _extraction("invoice", text=LOREM, key_fields=fields)
    )

    assert PASS_SCORE == 60
    assert validation.score == 60
    assert validation.passed is True


def test_validate_score_below_threshold_fails() -> None:
    fields = KeyFields(invoice_number="INV-1", dates=["2025-01-02"])

    validation = validate(
        "invoice", _extraction("invoice", text=LOREM, key_fields=fields)
    )

    assert validation.score == 55
    assert validation.passed is False


def test_validate_uses_requested_type_not_extraction_type() -> None:
    validation = validate("report", _extraction("document", text=SHORT_REPORT))

    assert validation.document_type == "report"
    assert [r.rule for r in validation.rules] == [d.name for d in rules_for("report")]


@pytest.mark.parametrize("document_type", get_args(DocumentType))
def test_validate_empty_extraction_scores_zero(document_type: DocumentType) -> None:
    validation = validate(document_type, _extraction(document_type))

    assert validation.passed is False
    assert validation.score == 0
    assert all(result.reason for result in validation.rules)


@pytest.mark.parametrize("document_type", get_args(DocumentType))
def test_rules_for_every_type_describes_weighted_rules(
    document_type: DocumentType,
) -> None:
    rules = rules_for(document_type)

    names = [rule.name for rule in rules]
    assert len(names) == len(set(names))
    assert all(rule.weight > 0 and rule.description for rule in rules)
    assert sum(rule.weight for rule in rules) == 100
    assert "has_text" in names or document_type == "table"


def test_rules_for_returns_frozen_descriptions() -> None:
    rule = rules_for("invoice")[0]

    assert rule == RuleDescription(
        name="has_invoice_number", weight=25, description="an invoice number"
    )
    with pytest.raises(ValidationError):
        rule.weight = 1  # type: ignore[misc]


def test_rules_for_has_text_description_states_minimum() -> None:
    descriptions = {r.name: r.description for r in rules_for("contract")}

    assert descriptions["has_text"] == (
        "at least 200 characters of text besides whitespace"
    )


# Invoice -------------------------------------------------------------------


def test_validate_well_formed_invoice_scores_full_marks() -> None:
    extraction = _extraction(
        "invoice", text=SAMPLE_INVOICE, key_fields=WELL_FORMED_INVOICE_FIELDS
    )

    validation = validate("invoice", extraction)

    assert validation.score == 100
    assert validation.passed is True
    assert _rule(validation, "has_invoice_number").reason == (
        "invoice number INV-2025-001 found"
    )
    assert _rule(validation, "has_total").reason == "total 15600.00 EUR found"
    assert _rule(validation, "amounts_consistent").reason == (
        "subtotal 13000.00 plus tax makes the total 15600.00"
    )


def test_invoice_number_missing_fails() -> None:
    result = _invoice_rule("has_invoice_number", KeyFields(invoice_number="  "))

    assert result.passed is False
    assert result.reason == "no invoice number found"


def test_invoice_date_present_passes_naming_it() -> None:
    result = _invoice_rule("has_date", KeyFields(dates=["2025-12-18"]))

    assert result.passed is True
    assert result.reason == "date 2025-12-18 found"


def test_invoice_several_dates_pass_naming_first() -> None:
    result = _invoice_rule("has_date", KeyFields(dates=["2025-12-18", "2026-01-18"]))

    assert result.passed is True
    assert result.reason == "2 dates found, the first 2025-12-18"


def test_invoice_date_missing_fails() -> None:
    result = _invoice_rule("has_date", KeyFields())

    assert result.passed is False
    assert result.reason == "no date found"


def test_invoice_total_missing_fails() -> None:
    result = _invoice_rule("has_total", KeyFields())

    assert result.passed is False
    assert result.reason == "no total amount found"


def test_invoice_total_not_a_number_fails() -> None:
    fields = KeyFields(total=Amount(value="lots", currency="EUR"))

    result = _invoice_rule("has_total", fields)

    assert result.passed is False
    assert result.reason == 'total "lots" is not a number'


def test_invoice_total_without_currency_fails() -> None:
    result = _invoice_rule("has_total", KeyFields(total=Amount(value="17280.00")))

    assert result.passed is False
    assert result.reason == "total 17280.00 found but without a currency"


def test_amounts_consistent_without_total_fails() -> None:
    fields = KeyFields(amounts=[Amount(value="10.00")])

    result = _invoice_rule("amounts_consistent", fields)

    assert result.passed is False
    assert result.reason == "no total amount to check the other amounts against"


def test_amounts_consistent_total_not_a_number_fails() -> None:
    result = _invoice_rule("amounts_consistent", KeyFields(total=Amount(value="x")))

    assert result.passed is False
    assert result.reason == 'total "x" is not a number'


def test_amounts_consistent_amount_above_total_fails() -> None:
    total = Amount(value="100.00", currency="EUR")
    fields = KeyFields(
        amounts=[Amount(value="250.00", currency="EUR", label="Line 1"), total],
        total=total,
    )

    result = _invoice_rule("amounts_consistent", fields)

    assert result.passed is False
    assert result.reason == (
        "amount 250.00 EUR (Line 1) is larger than the total 100.00 EUR"
    )


def test_amounts_consistent_subtotal_plus_tax_mismatch_fails() -> None:
    fields = KeyFields(
        amounts=[
            Amount(value="13000.00", label="Subtotal"),
            Amount(value="2000.00", label="TVA"),
        ],
        total=Amount(value="15600.00"),
    )

    result = _invoice_rule("amounts_consistent", fields)

    assert result.passed is False
    assert result.reason == (
        "subtotal 13000.00 plus tax 2000.00 does not make the total 15600.00"
    )


def test_amounts_consistent_several_tax_rates_sum_to_total_passes() -> None:
    fields = KeyFields(
        amounts=[
            Amount(value="200.00", label="subtotal_ht"),
            Amount(value="5.50", label="VAT 5.5%"),
            Amount(value="20.00", label="VAT 20%"),
        ],
        total=Amount(value="225.50", label="total_ttc"),
    )

    result = _invoice_rule("amounts_consistent", fields)

    assert result.passed is True


def test_amounts_consistent_only_total_passes() -> None:
    result = _invoice_rule("amounts_consistent", KeyFields(total=Amount(value="4.11")))

    assert result.passed is True
    assert result.reason == (
        "the total is the only amount found, so nothing contradicts it"
    )


def test_amounts_consistent_smaller_amounts_pass() -> None:
    total = Amount(value="4.11", currency="USD")
    fields = KeyFields(
        amounts=[Amount(value="1.87"), Amount(value="2.22", label="Tax *"), total],
        total=total,
    )

    result = _invoice_rule("amounts_consistent", fields)

    assert result.passed is True
    assert result.reason == "none of the 2 other amounts exceeds the total 4.11 USD"


def test_amounts_consistent_ignores_other_currency_and_bad_values() -> None:
    fields = KeyFields(
        amounts=[
            Amount(value="9000.00", currency="NOK"),
            Amount(value="n/a", currency="EUR"),
        ],
        total=Amount(value="800.00", currency="EUR"),
    )

    result = _invoice_rule("amounts_consistent", fields)

    assert result.passed is True


def test_amounts_consistent_credit_note_compares_sizes() -> None:
    fields = KeyFields(
        amounts=[Amount(value="-50.00", label="Refund")],
        total=Amount(value="-100.00"),
    )

    result = _invoice_rule("amounts_consistent", fields)

    assert result.passed is True


def test_invoice_text_too_short_fails() -> None:
    result = _invoice_rule("has_text", KeyFields(), text="Invoice 12\n\n")

    assert result.passed is False
    assert result.reason == (
        "text has only 9 characters besides whitespace; at least 50 expected"
    )


def test_invoice_text_long_enough_passes() -> None:
    result = _invoice_rule("has_text", KeyFields(), text=SAMPLE_INVOICE)

    assert result.passed is True
    assert result.reason.startswith("text has ")


# Contract ------------------------------------------------------------------


def test_validate_well_formed_contract_scores_full_marks() -> None:
    extraction = _extraction(
        "contract", text=SAMPLE_CONTRACT, key_fields=KeyFields(dates=["2025-12-18"])
    )

    validation = validate("contract", extraction)

    assert validation.score == 100
    assert _rule(validation, "has_title").reason == (
        'title "PROFESSIONAL SERVICES AGREEMENT" names an agreement'
    )
    assert _rule(validation, "has_parties").reason == (
        'parties introduced by "parties", "between", "party"'
    )
    assert _rule(validation, "has_signature_block").reason == (
        'signature block found: a signature line, "signature"'
    )


def test_contract_title_missing_fails() -> None:
    text = "Memo\nOne\nTwo\nThree\nFour\nThis agreement is late."

    result = _text_rule("contract", "has_title", text)

    assert result.passed is False
    assert result.reason == "none of the first 5 lines names an agreement"


def test_contract_title_long_line_is_shortened() -> None:
    title = "CONTRACT " + "x" * 100

    result = _text_rule("contract", "has_title", title)

    assert result.passed is True
    assert result.reason == f'title "{title[:77]}..." names an agreement'


def test_contract_parties_missing_fails() -> None:
    result = _text_rule("contract", "has_parties", "A note about nothing.")

    assert result.passed is False
    assert result.reason == 'no parties named (no "between" or "parties")'


def test_contract_date_missing_fails() -> None:
    result = _text_rule("contract", "has_date", SAMPLE_CONTRACT)

    assert result.passed is False
    assert result.reason == "no date found"


def test_contract_terms_present_pass() -> None:
    result = _text_rule("contract", "has_terms", SAMPLE_CONTRACT)

    assert result.passed is True
    assert result.reason.startswith("contract terms found: scope of services, term")


def test_contract_single_term_fails() -> None:
    result = _text_rule("contract", "has_terms", "Payment is due on receipt.")

    assert result.passed is False
    assert result.reason == "only 1 contract term found: payment; at least 2 expected"


def test_contract_no_terms_fails() -> None:
    result = _text_rule("contract", "has_terms", "Hello.")

    assert result.passed is False
    assert result.reason == "only 0 contract terms found; at least 2 expected"


def test_contract_signature_words_pass() -> None:
    result = _text_rule("contract", "has_signature_block", "Signed by both.")

    assert result.passed is True
    assert result.reason == 'signature block found: "signed"'


def test_contract_signature_missing_fails() -> None:
    result = _text_rule("contract", "has_signature_block", "No marks here.")

    assert result.passed is False
    assert result.reason == "no signature block found"


def test_contract_short_text_fails() -> None:
    result = _text_rule("contract", "has_text", SAMPLE_INVOICE[:150])

    assert result.passed is False
    assert result.reason.endswith("at least 200 expected")


# Report --------------------------------------------------------------------


def test_validate_incomplete_report_scores_low() -> None:
    validation = validate("report", _extraction("report", text=INCOMPLETE_REPORT))

    assert validation.score < PASS_SCORE
    assert validation.score == 35
    assert validation.passed is False
    assert _rule(validation, "no_missing_markers").reason == (
        'missing or placeholder values: Company is "Unknown", Period is empty, '
        'Revenue is "[DATA MISSING]", Expenses is empty, Net Profit is "ERROR"'
    )
    assert _rule(validation, "has_period").passed is False
    assert _rule(validation, "has_figures").reason == "no figures found"


def test_validate_complete_report_scores_full_marks() -> None:
    extraction = _extraction(
        "report", text=FINANCIAL_REPORT, key_fields=KeyFields(dates=["2024-12-31"])
    )

    validation = validate("report", extraction)

    assert validation.score == 100
    assert _rule(validation, "has_title").reason == (
        'title "FINANCIAL REPORT Q4 2024" found'
    )
    assert _rule(validation, "has_period").reason == 'period "Q4 2024" found'


def test_validate_short_report_without_period_still_passes() -> None:
    validation = validate("report", _extraction("report", text=SHORT_REPORT))

    assert validation.score == 85
    assert validation.passed is True
    assert _rule(validation, "has_period").reason == (
        "no reporting period or date found"
    )


def test_report_title_from_company_label_passes() -> None:
    result = _text_rule("report", "has_title", "Figures\nCompany: Demo Corp 2\n")

    assert result.passed is True
    assert result.reason == 'company "Demo Corp 2" found'


def test_report_title_and_company_missing_fails() -> None:
    result = _text_rule("report", "has_title", "Figures\nCompany: Unknown\n")

    assert result.passed is False
    assert result.reason == (
        "no report title on the first line and no company name found"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Revenue up in Q3 2025.", 'period "Q3 2025" found'),
        ("Sales for March 2024 rose.", 'period "March 2024" found'),
        ("Results for the fiscal year 2023.", 'period "fiscal year 2023" found'),
    ],
)
def test_report_period_in_text_passes(text: str, reason: str) -> None:
    result = _text_rule("report", "has_period", text)

    assert result.passed is True
    assert result.reason == reason


def test_report_period_from_dates_passes() -> None:
    extraction = _extraction(
        "report", text="Sales rose.", key_fields=KeyFields(dates=["2024-06-30"])
    )

    result = _rule(validate("report", extraction), "has_period")

    assert result.passed is True
    assert result.reason == "dated 2024-06-30"


def test_report_few_figures_fail() -> None:
    result = _text_rule("report", "has_figures", "Revenue: 12\nCosts: 3.5")

    assert result.passed is False
    assert result.reason == "only 2 figures found; at least 3 expected"


def test_report_figures_pass_with_examples() -> None:
    result = _text_rule("report", "has_figures", "A: 1,000\nB: 2.5%\nC: 7\nD: 9")

    assert result.passed is True
    assert result.reason == "4 figures found, such as 1,000, 2.5%, 7 and 1 more"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Revenue: N/A\n", 'Revenue is "N/A"'),
        ("Revenue: 100 [TBD]\n", 'Revenue is "100 [TBD]"'),
        ("Summary\nERROR in totals\n", '"ERROR" on line 2'),
        ("Summary\n\n\nsee #N/A below\n", '"#N/A" on line 4'),
        ("Revenue: 10\nExpenses:\n", "Expenses is empty"),
        ("Expenses:\n=====\n", "Expenses is empty"),
    ],
)
def test_report_missing_marker_fails_naming_it(text: str, reason: str) -> None:
    result = _text_rule("report", "no_missing_markers", text)

    assert result.passed is False
    assert result.reason == f"missing or placeholder values: {reason}"


def test_report_label_with_value_on_next_line_passes() -> None:
    text = "Highlights:\nRevenue grew in every region.\nError rate: 0.1%\n"

    result = _text_rule("report", "no_missing_markers", text)

    assert result.passed is True
    assert result.reason == "no empty, missing or placeholder values found"


def test_report_sentence_ending_in_colon_is_not_an_empty_label() -> None:
    text = "This agreement is entered into between:\nProvider: Tech Services\n"

    result = _text_rule("report", "no_missing_markers", text)

    assert result.passed is True


def test_report_without_text_fails_missing_markers() -> None:
    result = _text_rule("report", "no_missing_markers", "")

    assert result.passed is False
    assert result.reason == "no text at all, so every value is missing"


def test_report_short_text_fails() -> None:
    result = _text_rule("report", "has_text", "REPORT\n")

    assert result.passed is False


# Table ---------------------------------------------------------------------

RAGGED_ROWS = [
    ["1", "alpha", "10"],
    ["2", "beta"],
    ["3", "gamma", "30", "extra"],
    ["", "", ""],
    ["4", "delta", "not-a-number"],
]


def test_validate_ragged_table_reports_problems() -> None:
    problems = ["line 3 has 2 fields, expected 3", "line 4 has 4 fields, expected 3"]
    extraction = _extraction("table", tables=[_table(RAGGED_ROWS, problems=problems)])

    validation = validate("table", extraction)

    assert validation.score == 40
    assert validation.passed is False
    assert _rule(validation, "consistent_row_width").reason == (
        "data row 2 has 2 cells, data row 3 has 4 cells; the header has 3; "
        "the reader reported: line 3 has 2 fields, expected 3, "
        "line 4 has 4 fields, expected 3"
    )
    assert _rule(validation, "numeric_columns_parse").reason == (
        'column amount has non-numbers: "not-a-number" in data row 5'
    )
    assert _rule(validation, "no_empty_rows").reason == "data row 4 is empty"


def test_validate_well_formed_table_scores_full_marks() -> None:
    table = _table([["1", "alpha", "10.50"], ["2", "beta", "1,204.50"]])

    validation = validate("table", _extraction("table", tables=[table]))

    assert validation.score == 100
    assert [r.reason for r in validation.rules] == [
        "header names 3 columns: id, name, amount",
        "2 data rows found",
        "every row has 3 cells, like the header",
        "every value in amount is a number",
        "no empty rows",
    ]


def test_validate_without_table_fails_every_table_rule() -> None:
    validation = validate("table", _extraction("table", text="a,b\n1,2"))

    assert validation.score == 0
    assert {r.reason for r in validation.rules} == {"no table found"}


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ([], "no header row"),
        (["id", " ", "amount"], "header has no name for column 2"),
        (
            ["1", "2.5", "3"],
            "the first row holds only numbers, so it is data, not a header",
        ),
    ],
)
def test_table_bad_header_fails(header: list[str], reason: str) -> None:
    result = _table_rule("has_header", _table([["1", "2", "3"]], header=header))

    assert result.passed is False
    assert result.reason == reason


def test_table_without_rows_fails() -> None:
    result = _table_rule("has_rows", _table([]))

    assert result.passed is False
    assert result.reason == "no data rows"


def test_table_reader_problems_fail_row_width() -> None:
    table = _table([["1", "a", "2"]], problems=["line 2 had a stray quote"])

    result = _table_rule("consistent_row_width", table)

    assert result.passed is False
    assert result.reason == "the reader reported: line 2 had a stray quote"


def test_table_without_amount_columns_passes_numeric_rule() -> None:
    table = _table([["S-7", "18.5"]], header=["sensor", "temp_c"])

    result = _table_rule("numeric_columns_parse", table)

    assert result.passed is True
    assert result.reason == "no amount-like columns to check"


@pytest.mark.parametrize(
    "value",
    [
        "1 250,00",
        "€5,000.00",
        "(12.50)",
        "17280.00",
        "15 300.00",
        "1.204,50",
        "EUR 12.00",
        "20%",
        "-3",
        "",
    ],
)
def test_table_money_formats_parse(value: str) -> None:
    header = ["Libellé", "Débit", "total_ttc"]
    table = _table([["x", value, "1"]], header=header)

    result = _table_rule("numeric_columns_parse", table)

    assert result.passed is True
    assert result.reason == "every value in Débit, total_ttc is a number"


@pytest.mark.parametrize("value", ["abc", "1.2.3", "12 EURO", "--5"])
def test_table_non_numbers_in_price_column_fail(value: str) -> None:
    table = _table([["x", value]], header=["item", "unit_price"])

    result = _table_rule("numeric_columns_parse", table)

    assert result.passed is False
    assert result.reason == (
        f'column unit_price has non-numbers: "{value}" in data row 1'
    )


def test_table_several_empty_rows_fail() -> None:
    table = _table([[], ["1", "a", "2"], [" ", "", ""]])

    result = _table_rule("no_empty_rows", table)

    assert result.passed is False
    assert result.reason == "data rows 1, 3 are empty"


def test_table_rules_over_several_tables_name_the_failing_table() -> None:
    good = _table([["1", "a", "2"]])
    empty = _table([])

    failed = _table_rule("has_rows", good, empty)
    passed = _table_rule("has_header", good, good)

    assert failed.passed is False
    assert failed.reason == "table 2: no data rows"
    assert passed.passed is True
    assert passed.reason == (
        "table 1: header names 3 columns: id, name, amount; "
        "table 2: header names 3 columns: id, name, amount"
    )


# Generic document ------------------------------------------------------------


def test_validate_form_with_almost_no_text_scores_low() -> None:
    # Like pdflatex-forms.pdf: field labels only.
    text = "Name\nCheck\nSubmit\n1\n"
    extraction = _extraction(text=text, pages=[Page(number=1, text=text)], page_count=1)

    validation = validate("document", extraction)

    assert validation.score == 50
    assert validation.passed is False
    assert _rule(validation, "has_text").reason == (
        "text has only 16 characters besides whitespace; at least 100 expected"
    )


def test_validate_empty_document_scores_zero() -> None:
    validation = validate("document", _extraction(text=" \n\n "))

    assert validation.score == 0
    assert [r.reason for r in validation.rules] == [
        "text has only 0 characters besides whitespace; at least 100 expected",
        "no text to read",
        "no text",
    ]


def test_validate_readable_multiline_document_scores_full_marks() -> None:
    validation = validate("document", _extraction(text=LOREM, page_count=1))

    assert validation.score == 100
    assert _rule(validation, "has_structure").reason == "3 lines of text over 1 page"


def test_document_text_taken_from_pages_when_text_empty() -> None:
    pages = [Page(number=1, text=LOREM), Page(number=2, text="Second page.")]

    validation = validate("document", _extraction(pages=pages, page_count=2))

    assert validation.score == 100
    assert _rule(validation, "has_structure").reason == "4 lines of text over 2 pages"


def test_document_undecodable_characters_fail_readability() -> None:
    text = "abc\ufffd\ufffd\x07" + "d" * 10

    result = _text_rule("document", "readable_text", text)

    assert result.passed is False
    assert result.reason == (
        "only 81% of 16 characters are readable; "
        "3 are control, private-use or undecodable"
    )


def test_document_arabic_text_is_readable() -> None:
    result = _text_rule("document", "readable_text", "مرحبا بالعالم")

    assert result.passed is True
    assert result.reason == "100% of 12 characters are readable"


def test_document_single_line_lacks_structure() -> None:
    result = _text_rule("document", "has_structure", LOREM.replace("\n", " "))

    assert result.passed is False
    assert result.reason == "only 1 line of text"
