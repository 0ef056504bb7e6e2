"""Dates in free text, normalised to ISO 8601."""

from __future__ import annotations

import pytest

from services.extractor.dates import find_dates, iso_dates, numeric_order


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Date: December 18, 2025", "2025-12-18"),
        ("on 2014-08-03", "2014-08-03"),
        ("le 03/08/2014", "2014-08-03"),
        ("Aug 3, 2014", "2014-08-03"),
        ("Invoice Date: August 3 , 2014", "2014-08-03"),
        ("am 18.12.2025", "2025-12-18"),
        ("Rechnungsdatum 7. Mai 2014", "2014-05-07"),
        ("Facture du 02 Juillet 2015", "2015-07-02"),
        ("Date: 15 decembre 2025", "2025-12-15"),
        ("Le 1er août 2015", "2015-08-01"),
        ("Order Date: 15-10-2015", "2015-10-15"),
        ("Zahlungsziel 21.05.14", "2014-05-21"),
        ("3rd of March 2020", "2020-03-03"),
        ("2026-11-01T00:00:00Z", "2026-11-01"),
    ],
)
def test_dates_are_normalised(text: str, expected: str) -> None:
    assert iso_dates(text) == [expected]


def test_dates_keep_reading_order_without_duplicates() -> None:
    text = "Issued 18 December 2025, due 2026-01-18; issued again 18.12.2025"

    assert iso_dates(text) == ["2025-12-18", "2026-01-18"]


def test_a_date_range_yields_both_ends() -> None:
    assert iso_dates("01.05.14-31.05.14") == ["2014-05-01", "2014-05-31"]


@pytest.mark.parametrize(
    "text",
    [
        "INV-2025-12-001",
        "Tel. 06-12-34-56-78",
        "Uferweg 40-42 - D-63571",
        "capital de 3.441.812 Euros",
        "32/13/2020",
        "February 30, 2024",
        "version 1.2.3",
        "July 1 - July",
    ],
)
def test_things_that_are_not_dates(text: str) -> None:
    assert iso_dates(text) == []


def test_numeric_order_is_settled_by_an_unambiguous_date() -> None:
    assert numeric_order("03/08/2014 and 12/18/2025") is True
    assert numeric_order("03/08/2014 and 18/12/2025") is False
    assert numeric_order("03/08/2014") is None


def test_month_first_reads_us_dates() -> None:
    assert iso_dates("03/08/2014", month_first=True) == ["2014-03-08"]
    assert iso_dates("03/08/2014 and 12/18/2025") == ["2014-03-08", "2025-12-18"]


def test_found_dates_report_their_span() -> None:
    (found,) = find_dates("Date: Aug 3, 2014.")

    assert "Date: Aug 3, 2014."[found.start : found.end] == "Aug 3, 2014"
    assert found.iso == "2014-08-03"
