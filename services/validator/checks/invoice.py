"""The invoice checks: its number, its total and amounts that agree with it."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

from services.validator.checks.common import plural
from shared.documents import Amount, Extraction

_SUBTOTAL_LABEL = re.compile(r"sub[\s_-]?total|sous[\s_-]?total|zwischensumme", re.I)
_TAX_WORDS: Final = frozenset({"tax", "vat", "tva", "gst", "mwst", "ust"})
# Rounding each line to the cent can leave the sum a cent or two off.
_AMOUNT_TOLERANCE: Final = Decimal("0.02")


def _decimal(value: str) -> Decimal | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _money(amount: Amount) -> str:
    return f"{amount.value} {amount.currency}" if amount.currency else amount.value


def _is_tax(amount: Amount) -> bool:
    label = (amount.label or "").lower()
    words = set(re.split(r"[^a-z]+", label))
    return "total" not in label and bool(words & _TAX_WORDS)


def has_invoice_number(extraction: Extraction) -> tuple[bool, str]:
    """Whether an invoice number was found."""
    number = (extraction.key_fields.invoice_number or "").strip()
    if not number:
        return False, "no invoice number found"
    return True, f"invoice number {number} found"


def has_total(extraction: Extraction) -> tuple[bool, str]:
    """Whether a total was found, as a number with its currency."""
    total = extraction.key_fields.total
    if total is None:
        return False, "no total amount found"
    if _decimal(total.value) is None:
        return False, f'total "{total.value}" is not a number'
    if not total.currency:
        return False, f"total {total.value} found but without a currency"
    return True, f"total {_money(total)} found"


def amounts_consistent(extraction: Extraction) -> tuple[bool, str]:
    """Whether no amount exceeds the total and subtotal plus tax makes it."""
    fields = extraction.key_fields
    if fields.total is None:
        return False, "no total amount to check the other amounts against"
    total = _decimal(fields.total.value)
    if total is None:
        return False, f'total "{fields.total.value}" is not a number'

    # Amounts in another currency cannot be compared with the total.
    currency = fields.total.currency
    others = [
        (amount, number)
        for amount in fields.amounts
        if amount != fields.total
        and (number := _decimal(amount.value)) is not None
        and (currency is None or amount.currency in (None, currency))
    ]
    # Credit notes are negative throughout, so sizes are compared, not signs.
    for amount, number in others:
        if abs(number) > abs(total):
            label = f" ({amount.label})" if amount.label else ""
            return False, (
                f"amount {_money(amount)}{label} is larger than the total "
                f"{_money(fields.total)}"
            )

    subtotals = [n for a, n in others if _SUBTOTAL_LABEL.search(a.label or "")]
    taxes = [n for a, n in others if _is_tax(a)]
    if subtotals and taxes:
        # One tax line, or several at different rates: either may be the match.
        candidates = {subtotals[0] + taxes[0], subtotals[0] + sum(taxes)}
        if all(abs(c - total) > _AMOUNT_TOLERANCE for c in candidates):
            return False, (
                f"subtotal {subtotals[0]} plus tax {taxes[0]} does not make "
                f"the total {total}"
            )
        return True, f"subtotal {subtotals[0]} plus tax makes the total {total}"

    if not others:
        return True, "the total is the only amount found, so nothing contradicts it"
    return True, (
        f"none of the {plural(len(others), 'other amount')} exceeds the total "
        f"{_money(fields.total)}"
    )
