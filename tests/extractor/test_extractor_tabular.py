"""Delimited tables: delimiter detection, quoting, ragged rows, rendering."""

from __future__ import annotations

import pytest

from services.extractor.tabular import (
    detect_delimiter,
    looks_tabular,
    read_table,
    render_table,
)


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("a,b,c\n1,2,3\n4,5,6\n", ","),
        ("Date;Libellé;Débit\n02/01/2026;LOYER;1 250,00\n05/01/2026;CB;86,43\n", ";"),
        ("t\ts\tv\n1\t2\t3\n", "\t"),
        ("a|b|c\n1|2|3\n", "|"),
        ('name,note\n"Smith; John","a;b;c"\n"Doe; Jane","d;e"\n', ","),
    ],
)
def test_detect_delimiter(text: str, delimiter: str) -> None:
    assert detect_delimiter(text) == delimiter


def test_detect_delimiter_uses_the_hint_on_a_tie() -> None:
    text = "a,b\tc\n1,2\t3\n"

    assert detect_delimiter(text, "\t") == "\t"
    assert detect_delimiter(text) == ","


def test_detect_delimiter_of_a_single_column_falls_back() -> None:
    assert detect_delimiter("name\nalpha\nbeta\n") == ","
    assert detect_delimiter("name\nalpha\n", "\t") == "\t"


def test_quoted_fields_keep_newlines_quotes_and_delimiters() -> None:
    text = 'id,address,note\r\n1,"12 Main St\r\nSpringfield","say ""hi"", then"\r\n'
    table = read_table(text, encoding="utf-8")

    assert table.rows == [["1", "12 Main St\nSpringfield", 'say "hi", then']]
    assert table.problems == []


def test_ragged_rows_are_kept_and_reported_by_record_number() -> None:
    text = "id,name,amount\n1,alpha,10\n2,beta\n3,gamma,30,extra\n,,\n\n4,d\n"
    table = read_table(text, encoding="utf-8")

    assert table.row_count == 5
    assert table.column_count == 3
    assert table.rows[3] == ["", "", ""]
    assert table.problems == [
        "row 3 has 2 cells, expected 3",
        "row 4 has 4 cells, expected 3",
        "row 7 has 2 cells, expected 3",
    ]


def test_a_single_cell_row_is_reported_in_the_singular() -> None:
    table = read_table("a,b\nonly\n", encoding="utf-8")

    assert table.problems == ["row 2 has 1 cell, expected 2"]


def test_too_many_ragged_rows_are_summarised() -> None:
    text = "a,b,c\n" + "1,2,3\n" * 10 + "1,2\n" * 60
    table = read_table(text, encoding="utf-8")

    assert len(table.problems) == 51
    assert table.problems[-1] == "10 more rows have the wrong number of cells"


def test_an_oversized_field_stops_reading_with_a_problem() -> None:
    text = 'a,b\n1,2\n3,"' + "x" * 200_000 + '"\n5,6\n'
    table = read_table(text, encoding="utf-8")

    assert table.rows == [["1", "2"]]
    assert len(table.problems) == 1
    assert table.problems[0].startswith("row 3 could not be read")


def test_header_only_table_has_no_rows() -> None:
    table = read_table("a;b;c\n", encoding="utf-8")

    assert (table.header, table.rows, table.row_count) == (["a", "b", "c"], [], 0)


def test_render_table_puts_one_row_a_line() -> None:
    table = read_table('a,b\n1,"x\ny"\n', encoding="utf-8")

    assert render_table(table) == "a | b\n1 | x y"


@pytest.mark.parametrize(
    ("text", "tabular"),
    [
        ("a,b,c\n1,2,3\n4,5,6\n", True),
        ("x\ty\n1\t2\n", True),
        ("Hello, world. This is prose, with commas.\nAnother line, here.\n", False),
        ("one line, only\n", False),
        ("REPORT 1\n\nCompany: Demo Corp\nRevenue: 1000000\n", False),
    ],
)
def test_looks_tabular(text: str, tabular: bool) -> None:
    assert looks_tabular(text) is tabular
