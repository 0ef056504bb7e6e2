"""Large documents are cut to the extractor's limits, with a warning."""

from __future__ import annotations

import pytest

from services.extractor.extraction import extract
from services.extractor.tabular import MAX_CELLS, MAX_COLUMNS, read_table
from shared.errors import DocumentRejected


def test_long_text_is_cut_with_a_warning() -> None:
    data = ("lorem ipsum dolor sit amet\n" * 100_000).encode()

    extraction = extract(data, s3_key="uploads/long.txt", max_text_chars=1_000)

    assert len(extraction.text) == 1_000
    assert extraction.size_bytes == len(data)
    assert any("cut to its first 1000" in w for w in extraction.warnings)


def test_many_rows_are_cut_with_a_warning() -> None:
    rows = "".join(f"{i},item {i},{i}.00\n" for i in range(2_000))
    data = f"id,name,amount\n{rows}".encode()

    extraction = extract(data, s3_key="uploads/rows.csv", max_table_rows=500)

    (table,) = extraction.tables
    assert len(table.rows) == 500
    assert table.row_count == 2_000
    assert any("first 500 of 2000 rows" in w for w in extraction.warnings)


def test_documents_within_the_limits_carry_no_warning() -> None:
    extraction = extract(b"id,name\n1,a\n", s3_key="uploads/small.csv")

    assert extraction.warnings == []


def test_csv_line_of_a_million_cells_is_rejected_before_it_is_parsed() -> None:
    # 20 MiB of commas once took the extractor past 900 MiB: a row that wide
    # is refused up front, with the reason.
    data = b"," * 1_000_000

    with pytest.raises(DocumentRejected) as refused:
        extract(data, s3_key="uploads/commas.csv")

    assert refused.value.reason == "too_large"
    assert f"more than {MAX_COLUMNS} cells" in refused.value.message


def test_text_with_a_delimiter_storm_is_read_as_text_not_as_a_table() -> None:
    # Without a declared type, a delimiter giving absurd widths is no table.
    data = b"a" + b";" * 100_000 + b"\nb;c\n"

    extraction = extract(data, s3_key="uploads/odd.txt")

    assert extraction.format == "text"
    assert extraction.tables == []


def test_rows_past_the_limit_are_counted_but_never_kept() -> None:
    # The cut happens while reading: memory follows the limit, not the file.
    data = b"id\n" + b"1\n" * 200_000

    table = read_table(data.decode(), encoding="utf-8", max_rows=10)

    assert len(table.rows) == 10
    assert table.row_count == 200_000


def test_a_table_as_wide_as_the_limit_is_read() -> None:
    header = ",".join(f"c{i}" for i in range(MAX_COLUMNS))
    data = f"{header}\n{',' * (MAX_COLUMNS - 1)}\n".encode()

    (table,) = extract(data, s3_key="uploads/wide.csv").tables

    assert table.column_count == MAX_COLUMNS


def test_wide_table_keeps_rows_only_up_to_the_cell_budget() -> None:
    # 1,000 columns by 1,000 rows is within both limits on its own, but
    # holding it all took gigabytes: rows stop being kept at MAX_CELLS.
    line = ",".join(f"{i % 100:02d}" for i in range(MAX_COLUMNS))
    data = ("\n".join([line] * 1_001) + "\n").encode()

    extraction = extract(data, s3_key="uploads/wide.csv")

    (table,) = extraction.tables
    assert len(table.rows) == MAX_CELLS // MAX_COLUMNS
    assert table.row_count == 1_000
    assert any(
        f"first {len(table.rows)} of 1000 rows" in w for w in extraction.warnings
    )
