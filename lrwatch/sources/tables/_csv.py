"""CSV (also TSV, semicolon-separated with decimal commas, and numpy ``savetxt``'s runs of
spaces): numpy's parser for the common all-numeric file, pyarrow's in a batch, and a row
reader for sparse logging, ragged rows and text columns."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from lrwatch.errors import InputError
from lrwatch.sources.tables._arrow import arrow_columns
from lrwatch.sources.tables._table import (
    MISSING_CELLS,
    WHITESPACE,
    Column,
    Table,
    not_a_table,
    parse_cells,
)

# A number written with a decimal comma, as spreadsheets in many locales export it; read only
# from semicolon-separated files, where the comma cannot be the field separator.
_DECIMAL_COMMA = re.compile(r"([+-]?\d*),(\d+(?:[eE][+-]?\d+)?)")


def read_csv_text(
    path: Path, data: bytes, text: str, table: Table, csv_engine: str
) -> dict[str, Column]:
    if "\r" in text and "\n" not in text:
        # Lines ended by a carriage return alone: Excel for Mac's "CSV (Macintosh)" export.
        text = text.replace("\r", "\n")
        data = text.encode()
    if text.startswith("#"):
        text = _without_leading_comments(text, table.notes)
        data = text.encode()
    first_end = text.find("\n")
    header = text[:first_end].rstrip("\r")
    if first_end >= 0 and ("\n#" in text or text.find("\n" + header, first_end) >= 0):
        # (searched in place: most files have neither, and a big one is not copied for it)
        text = text[:first_end] + "\n" + _rows_only(text[first_end + 1 :], header, table.notes)
        data = text.encode()
    try:
        if csv_engine == "arrow":
            return _read_csv_arrow(data, text, table) or _read_csv(path, text, table)
        return _read_csv(path, text, table)
    except csv.Error as exc:  # a stray carriage return or NUL inside a line
        raise InputError(f"{path}: not a readable CSV ({exc})") from None


def _read_csv(path: Path, text: str, table: Table) -> dict[str, Column]:
    first_line = text.split("\n", 1)[0]
    delimiter = delimiter_of(text)
    header = split_fields(first_line, delimiter)
    if len(header) < 1 or not any(header):
        raise not_a_table(path)
    body = text.split("\n", 1)[1] if "\n" in text else ""
    if not body.strip():
        raise InputError(f"{path}: no rows, only a header ({', '.join(header)})")
    try:
        # numpy's C parser handles the common all-numeric, no-gaps file ~3x faster than csv.
        numbers = np.loadtxt(
            io.StringIO(body),
            delimiter=None if delimiter == WHITESPACE else delimiter,
            ndmin=2,
            comments=None,
            quotechar='"',
        )
    except ValueError:
        return _read_csv_slow(path, header, body, delimiter, table)
    if numbers.shape[1] != len(header):
        return _read_csv_slow(path, header, body, delimiter, table)
    present = np.ones(numbers.shape[0], dtype=bool)
    return {name: (numbers[:, i].copy(), present) for i, name in enumerate(header) if name}


def _read_csv_arrow(data: bytes, text: str, table: Table) -> dict[str, Column] | None:
    """pyarrow's CSV reader; None when it refuses the file (the numpy/row paths then decide)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = delimiter_of(text)
    if delimiter == WHITESPACE:
        return None  # pyarrow splits at each single space
    # Only MISSING_CELLS are "not logged" ("nan"/"NaN" stay NaN: evidence), quoted or not, as
    # the row reader reads them.
    convert = pacsv.ConvertOptions(null_values=list(MISSING_CELLS), quoted_strings_can_be_null=True)
    try:
        arrow_table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, ValueError):
        return None
    if arrow_table.num_rows == 0:
        return None
    found_text = Table({})
    columns = arrow_columns(arrow_table, found_text)
    if delimiter == ";" and found_text.text_columns:
        return None  # perhaps decimal commas, which only the row reader takes
    table.text_columns.update(found_text.text_columns)
    table.labels.update(found_text.labels)
    return columns


def delimiter_of(text: str) -> str:
    """The header line's separator: a comma, tab or semicolon, whichever it holds most of; else
    :data:`WHITESPACE` when the header and the first row split into as many fields at runs of
    spaces (numpy's ``savetxt`` default); else a comma (a one-column table)."""
    first_line, second_line = _line(text, 0), _line(text, 1)
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.__getitem__)
    if counts[best]:
        return best
    width = len(first_line.split())
    return WHITESPACE if width > 1 and len(second_line.split()) == width else ","


def _line(text: str, index: int) -> str:
    """Line ``index`` (0 or 1) of ``text``, without copying the rest of a large file."""
    start = 0
    for _ in range(index):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def split_fields(line: str, delimiter: str) -> list[str]:
    if delimiter == WHITESPACE:
        return line.split()
    return [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter), [])]


def _without_leading_comments(text: str, notes: list[str]) -> str:
    """``text`` less its leading ``#`` lines. numpy's ``savetxt(header="step,loss,lr")`` writes
    the header as one of them (``# step,loss,lr``); other writers put the run's settings there.
    When the line after them holds numbers only, the last of them with as many fields is the
    header; the others are left out."""
    lines = text.split("\n")
    count = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    rest = lines[count:]
    header = _commented_header(lines[:count], rest[0]) if rest else None
    if header is None:
        notes.append(f"{_comment_lines(count)} at the top: left out")
        return "\n".join(rest)
    others = f"; {_comment_lines(count - 1)} left out" if count > 1 else ""
    notes.append(f"the header is the comment line {header!r}{others}")
    return "\n".join([header.lstrip("#").strip(), *rest])


def _rows_only(body: str, header: str, notes: list[str]) -> str:
    """``body`` less the lines between its rows that hold no row: ``#`` comments (a script's
    ``# resumed from step 200``) and repeats of the header line (a script that appends to its
    CSV after a restart writes the header again, and so do files joined with ``cat``). Read as
    rows, they turned every column into text."""
    lines = body.split("\n")
    kept = [line for line in lines if not line.startswith("#") and line.rstrip("\r") != header]
    comments = sum(line.startswith("#") for line in lines)
    repeats = len(lines) - len(kept) - comments
    if comments:
        notes.append(f"{_comment_lines(comments)} between the rows: left out")
    if repeats:
        times = "once" if repeats == 1 else f"{repeats} times"
        notes.append(
            f"the header line repeats {times} between the rows (a file appended to after a "
            "restart, or files joined): left out"
        )
    return "\n".join(kept)


def _commented_header(comments: list[str], first_row: str) -> str | None:
    """The last comment line with as many fields as ``first_row``, when that row is numbers."""
    delimiter = delimiter_of(first_row + "\n" + first_row)
    cells = split_fields(first_row, delimiter)
    if not cells or isinstance(parse_cells(cells), str):
        return None
    width = len(cells)
    fits = [c for c in comments if len(split_fields(c.lstrip("#").strip(), delimiter)) == width]
    return fits[-1].strip() if fits else None


def _comment_lines(count: int) -> str:
    return f"{count} comment line{'' if count == 1 else 's'} (#)"


def _read_csv_slow(
    path: Path, header: list[str], body: str, delimiter: str, table: Table
) -> dict[str, Column]:
    """Row by row: blank cells (sparse logging), ragged rows, text columns, decimal commas."""
    if delimiter == WHITESPACE:
        rows = [line.split() for line in body.split("\n") if line.strip()]
    else:
        rows = [row for row in csv.reader(io.StringIO(body), delimiter=delimiter) if row]
    width = len(header)
    cells_by_column: list[list[str]] = [[] for _ in range(width)]
    for row in rows:
        if len(row) > width:
            raise InputError(f"{path}: a row has {len(row)} fields but the header has {width}")
        for i in range(width):
            cells_by_column[i].append(row[i].strip() if i < len(row) else "")
    columns = {}
    for name, cells in zip(header, cells_by_column):
        column = parse_cells(cells)
        if isinstance(column, str) and delimiter == ";":
            column = parse_cells([_decimal_point(cell) for cell in cells])
        if isinstance(column, str):
            if name:
                table.add_text(name, column, cells.copy)
            continue
        # A column blank in every row is no column, as for pyarrow (its type is null): with a
        # header that repeats a name, both readers then keep the same one.
        if name and column[1].any():
            columns[name] = column
    return columns


def _decimal_point(cell: str) -> str:
    """``"0,51"`` -> ``"0.51"``; any other cell as it is."""
    return cell.replace(",", ".") if _DECIMAL_COMMA.fullmatch(cell) else cell
