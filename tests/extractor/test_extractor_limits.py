"""Large documents are cut to the extractor's limits, with a warning."""

from __future__ import annotations

from services.extractor.extraction import extract


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
