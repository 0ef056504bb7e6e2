"""Delimited tables (CSV, TSV): delimiter, quoted fields and ragged rows.

The delimiter is chosen by parsing a sample with each candidate and keeping
the one that gives the most rows of one consistent width; the csv module does
the parsing, so quoted fields may hold delimiters, quotes and line breaks.
Rows of the wrong width are kept as read and listed in ``Table.problems``.

Size is bounded before anything is parsed: a delimiter that would give a
line more than ``MAX_COLUMNS`` cells is not a candidate (20 MiB of commas
is not a table), and rows past ``max_rows`` or ``MAX_CELLS`` are counted but
not kept.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from typing import Final

from shared.documents import Table
from shared.errors import DocumentRejected

DELIMITERS: Final = (",", ";", "\t", "|")
_SAMPLE_RECORDS: Final = 50
# Telling a table from prose needs most sampled rows to agree on the width.
_MIN_TABULAR_SHARE: Final = 0.9
_MIN_TABULAR_RECORDS: Final = 2
_MAX_PROBLEMS: Final = 50
MAX_COLUMNS: Final = 1000
# Rows are kept until their cells reach this many: 1,000 columns by 10,000
# rows took a gigabyte to hold and was then too large to pass on anyway.
MAX_CELLS: Final = 500_000


def detect_delimiter(text: str, hint: str | None = None) -> str:
    """The candidate delimiter that splits the text into the most regular rows.

    ``hint`` (from a ``.tsv`` name, say) wins ties; without any candidate
    producing two columns, it is the answer, or ``,``.
    """
    best: tuple[float, bool, int] | None = None
    chosen = hint or ","
    for delimiter in _bounded(text):
        share, width = _regularity(text, delimiter)
        if width < 2:
            continue
        score = (share, delimiter == hint, width)
        if best is None or score > best:
            best, chosen = score, delimiter
    return chosen


def looks_tabular(text: str) -> bool:
    """Whether text with no declared type reads as a delimited table."""
    for delimiter in _bounded(text):
        records = [r for r in _sample(text, delimiter) if r]
        if len(records) < _MIN_TABULAR_RECORDS:
            continue
        share, width = _regularity(text, delimiter)
        if width >= 2 and share >= _MIN_TABULAR_SHARE and len(records[0]) == width:
            return True
    return False


def read_table(
    text: str,
    *,
    encoding: str,
    delimiter_hint: str | None = None,
    max_rows: int | None = None,
) -> Table:
    """Parse delimited text into a header and rows, noting what was wrong.

    Only the first ``max_rows`` rows, and no more than ``MAX_CELLS`` cells,
    are kept; ``row_count`` counts them all.
    """
    delimiter = detect_delimiter(text, delimiter_hint)
    if _widest_line(text, delimiter) > MAX_COLUMNS:
        raise DocumentRejected(
            "too_large",
            f"A line of the table has more than {MAX_COLUMNS} cells; "
            f"tables of up to {MAX_COLUMNS} columns are read",
        )
    header: list[str] | None = None
    rows: list[list[str]] = []
    problems: list[str] = []
    ragged = 0
    counted = 0
    cells = 0

    for number, record in _records(text, delimiter, problems):
        if not record:
            continue
        if header is None:
            header = [_normalise_cell(cell).strip() for cell in record]
            continue

        counted += 1
        within_rows = max_rows is None or len(rows) < max_rows
        if within_rows and cells + len(record) <= MAX_CELLS:
            rows.append([_normalise_cell(cell) for cell in record])
            cells += len(record)
        # Blank rows are reported by the validator, whatever their width.
        if len(record) != len(header) and any(cell.strip() for cell in record):
            ragged += 1
            if ragged <= _MAX_PROBLEMS:
                problems.append(_ragged(number, len(record), len(header)))

    if ragged > _MAX_PROBLEMS:
        problems.append(
            f"{ragged - _MAX_PROBLEMS} more rows have the wrong number of cells"
        )
    header = header or []
    return Table(
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        rows=rows,
        row_count=counted,
        column_count=len(header),
        problems=problems,
    )


def render_table(table: Table) -> str:
    """The table as readable text: one line a row, cells separated by `` | ``."""
    lines = [" | ".join(table.header)]
    lines += [" | ".join(" ".join(cell.split()) for cell in row) for row in table.rows]
    return "\n".join(lines)


def _records(
    text: str, delimiter: str, problems: list[str]
) -> Iterator[tuple[int, list[str]]]:
    """Records numbered from 1 (the header), stopping at the first parse error."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    number = 0
    while True:
        number += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(f"row {number} could not be read ({exc}); reading stopped")
            return
        yield number, record


def _bounded(text: str) -> list[str]:
    """The delimiters that give no line more than ``MAX_COLUMNS`` cells."""
    return [d for d in DELIMITERS if _widest_line(text, d) <= MAX_COLUMNS]


def _widest_line(text: str, delimiter: str) -> int:
    # Counted on physical lines: a quoted cell holding many delimiters may
    # overcount, which only errs towards refusing a pathological line.
    return max((line.count(delimiter) for line in text.splitlines()), default=0) + 1


def _sample(text: str, delimiter: str) -> list[list[str]]:
    sample: list[list[str]] = []
    for _, record in _records(text, delimiter, []):
        sample.append(record)
        if len(sample) >= _SAMPLE_RECORDS:
            break
    return sample


def _regularity(text: str, delimiter: str) -> tuple[float, int]:
    """The share of sampled rows having the most common width, and that width."""
    widths = Counter(len(record) for record in _sample(text, delimiter) if record)
    if not widths:
        return 0.0, 0
    width, count = widths.most_common(1)[0]
    return count / widths.total(), width


def _normalise_cell(cell: str) -> str:
    return cell.replace("\r\n", "\n").replace("\r", "\n")


def _ragged(number: int, cells: int, expected: int) -> str:
    noun = "cell" if cells == 1 else "cells"
    return f"row {number} has {cells} {noun}, expected {expected}"
