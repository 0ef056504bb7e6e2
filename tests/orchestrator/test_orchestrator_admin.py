"""The admin routes' whole-number queries: ASCII digits within the bounds,
whatever their length, refused with -32602 and never a crash."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from services.orchestrator.admin import WholeNumber
from shared.errors import InvalidParams

LIMIT = WholeNumber("limit", 100, 1, 1000)


def query(text: str) -> Request:
    return Request({"type": "http", "query_string": text.encode(), "headers": []})


@pytest.mark.parametrize(
    ("text", "value"),
    [("", 100), ("limit=1", 1), ("limit=1000", 1000), ("limit=0000000000007", 7)],
)
def test_admin_whole_number_within_bounds_is_read(text: str, value: int) -> None:
    assert LIMIT.read(query(text)) == value


@pytest.mark.parametrize(
    "raw",
    ["0", "1001", "-1", "1.5", "\uff11", "ten", "9" * 5000, "1" + "0" * 4400],
    ids=[
        "zero",
        "above",
        "negative",
        "fraction",
        "full-width",
        "word",
        "5000-9s",
        "4401-digits",
    ],
)
def test_admin_whole_number_out_of_bounds_or_not_a_number_is_refused(raw: str) -> None:
    with pytest.raises(InvalidParams) as refused:
        LIMIT.read(query(f"limit={raw}"))

    assert refused.value.data == {"field": "limit"}
