"""Money amounts in any common notation, with their currency."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.extractor.amounts import (
    currency_code,
    dominant_currency,
    find_amounts,
    format_value,
    parse_money_cell,
    parse_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15,600.00", "15600.00"),
        ("1 250,00", "1250.00"),
        ("15.750,00", "15750.00"),
        ("1,204.50", "1204.50"),
        ("15 300.00", "15300.00"),
        ("1'250.00", "1250.00"),
        ("34,73", "34.73"),
        ("1939", "1939.00"),
        ("-40.00", "-40.00"),
        ("(12.50)", "-12.50"),
        ("3.441.812", "3441812.00"),
        ("1\u00a0250,00", "1250.00"),
    ],
)
def test_parse_number_reads_every_notation(text: str, expected: str) -> None:
    value = parse_number(text)

    assert value is not None
    assert format_value(value) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "not-a-number", "12.5.3", "0.125", "1,2,3"]
)
def test_parse_number_refuses_non_numbers(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("token", "code"),
    [("€", "EUR"), ("$", "USD"), ("Rs.", "INR"), ("₹", "INR"), ("eur", "EUR")],
)
def test_currency_code(token: str, code: str) -> None:
    assert currency_code(token) == code


def test_currency_code_of_unknown_token_is_none() -> None:
    assert currency_code("XYZ") is None


@pytest.mark.parametrize(
    ("line", "value", "currency"),
    [
        ("Subtotal  €13,000.00", "13000.00", "EUR"),
        ("TOTAL AMOUNT DUE ON  $4.11", "4.11", "USD"),
        ("Grand Total  Rs 1939", "1939.00", "INR"),
        ("Total EUR 34,73", "34.73", "EUR"),
        ("Somme à payer  29.99  € TTC", "29.99", "EUR"),
        ("Discount of Rs -40.00,", "-40.00", "INR"),
        ("capital de 3.441.812 Euros", "3441812.00", "EUR"),
        ("Amount 319.00", "319.00", None),
    ],
)
def test_find_amounts_attaches_the_currency(
    line: str, value: str, currency: str | None
) -> None:
    (amount,) = find_amounts(line)

    assert (amount.text_value, amount.currency) == (value, currency)


def test_find_amounts_skips_percentages() -> None:
    amounts = find_amounts("Tax(%) 14.50%  40.39")

    assert [a.text_value for a in amounts] == ["40.39"]


def test_find_amounts_notes_cents() -> None:
    cents, whole = find_amounts("5.39 and 1939")

    assert cents.has_cents
    assert not whole.has_cents


def test_parse_money_cell() -> None:
    assert parse_money_cell("€ 12.00") == (Decimal("12.00"), "EUR")
    assert parse_money_cell("34.73 EUR") == (Decimal("34.73"), "EUR")
    assert parse_money_cell("1 250,00") == (Decimal("1250.00"), None)
    assert parse_money_cell("not-a-number") is None


def test_dominant_currency() -> None:
    assert dominant_currency("Rs -40.00 then 319.00, and Rs 12") == "INR"
    assert dominant_currency("RS-232 cable, cad drawings") is None
