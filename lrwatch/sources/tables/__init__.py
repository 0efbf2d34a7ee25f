"""Reading saved-run tables (CSV, Parquet, Feather / Arrow IPC, JSON Lines, Hugging Face
``trainer_state.json``) into columns of float64, also compressed as pandas' ``to_csv`` writes by
suffix (``run.csv.gz``, ``.bz2``, ``.xz``, a ``.zip`` holding the one table).

A table is one row per logged step: a step column plus one column per metric. Each column comes
back as ``(values, present)``: ``present`` is False where the row logged nothing for that metric
(an empty CSV cell, a Parquet null, a key missing from a JSON line) - sparse logging - while a
logged ``nan``/``inf`` is present and kept as evidence. Columns that are not numbers (a run
name, a timestamp string) are left out, each remembered with one of its cells so that an error
about a loss written as text (``"tensor(0.51, grad_fn=...)"``) can say so. A semicolon-separated
CSV (a European spreadsheet's export) may use a decimal comma (``0,51``).

A writer that crashed mid-line leaves a JSON Lines file (or a compressed stream) cut off at its end:
the lines before the cut are read and a note says what was left out (:class:`Table`).

Only numpy and the standard library are imported here (pyarrow for Parquet and Feather only;
``bz2``, ``lzma`` and ``zipfile`` for such files only), so ``lrwatch analyze run.csv`` starts
fast.

Each format is read in a private module of its own: ``_bytes`` (sniffing, decompressing,
decoding), ``_csv``, ``_json`` and ``_arrow`` (Parquet, Feather), all on the model in
``_table``. This module picks the reader and holds the public API.
"""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import numpy as np

from lrwatch.errors import InputError
from lrwatch.sources.tables._arrow import (
    arrow_columns,
    arrow_ipc_column_names,
    arrow_ipc_table,
    parquet_column_names,
    read_parquet,
)
from lrwatch.sources.tables._bytes import (
    CODEC_HEAD_BYTES,
    SPREADSHEET_SUFFIXES,
    binary_format,
    codec_of,
    decode,
    opened_decompressed,
    read_head,
)
from lrwatch.sources.tables._csv import delimiter_of, read_csv_text, split_fields
from lrwatch.sources.tables._json import flattened, has_objects, read_json_rows
from lrwatch.sources.tables._table import (
    COMPRESSED_SUFFIXES,
    EPOCH_COLUMNS,
    JSONL_SUFFIXES,
    STEP_COLUMNS,
    TABLE_SUFFIXES,
    Table,
)

__all__ = [
    "EPOCH_COLUMNS",
    "SPREADSHEET_SUFFIXES",
    "STEP_COLUMNS",
    "TABLE_SUFFIXES",
    "Table",
    "column_names",
    "is_table_file",
    "read_table",
    "table_stem",
    "table_suffix",
]

# The longest header line read on its own (a chart export of hundreds of runs fits).
_MAX_HEADER_BYTES = 1 << 20


def table_suffix(path: Path) -> str:
    """The table format's suffix, looking through a compression suffix (``run.csv.gz`` ->
    ``.csv``)."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix in COMPRESSED_SUFFIXES else suffix


def table_stem(path: Path) -> str:
    """The file name without its table suffixes (``lr0.1.csv.gz`` -> ``lr0.1``)."""
    return Path(path.stem).stem if path.suffix.lower() in COMPRESSED_SUFFIXES else path.stem


def is_table_file(path: Path) -> bool:
    return table_suffix(path) in TABLE_SUFFIXES


def read_table(path: Path, *, csv_engine: str = "numpy") -> Table:
    """Numeric columns of the table at ``path``, in file order.

    ``csv_engine``: ``"numpy"`` (no import beyond numpy: fastest start for one file) or
    ``"arrow"`` (pyarrow's CSV reader: ~2-3x faster per file, worth its ~0.3 s import in a batch).

    Raises:
        InputError: missing, empty, unreadable, not a table, or without numeric columns/rows.
    """
    from lrwatch.sources.tensorboard import EVENT_FILE_MARK

    if path.is_dir() or EVENT_FILE_MARK in path.name:
        return _read_tensorboard(path)
    head = read_head(path)
    suffix = table_suffix(path)
    table = Table({})
    binary = binary_format(head, suffix)
    if binary and codec_of(head[:CODEC_HEAD_BYTES]) is not None:
        # Parquet and Arrow compress their own columns: a compressed copy gains little, and is
        # read by offset, which a compressed stream cannot give.
        raise InputError(f"{path}: a compressed {binary} file: decompress it first")
    if binary == "Parquet":
        table.columns = read_parquet(path, table)
    elif binary == "Feather":
        table.columns = arrow_columns(arrow_ipc_table(path), table)
    else:
        data, text = decode(path, table.notes)
        if suffix in JSONL_SUFFIXES or text.lstrip()[:1] in ("{", "["):
            # line numbers as in the file
            table.columns = read_json_rows(path, text, table)
        else:
            table.columns = read_csv_text(path, data, text, table, csv_engine)
    if not table.columns:
        text_columns = "; ".join(table.describe_text(name) for name in table.text_columns)
        raise InputError(
            f"{path}: no numeric columns ({text_columns})"
            if text_columns
            else f"{path}: no numeric columns (is it a table of logged steps?)"
        )
    if not any(present.any() for _, present in table.columns.values()):
        raise InputError(f"{path}: no numeric rows (columns: {', '.join(table.columns)})")
    return table


def _read_tensorboard(path: Path) -> Table:
    """A TensorBoard event file, or a log directory of them, as one column per scalar tag."""
    from lrwatch.sources import long_format, tensorboard

    table = Table({})
    steps, tags, values, files = tensorboard.read_scalars(path, table.notes)
    present = np.ones(len(steps), dtype=bool)
    table.columns = {
        "step": (np.array(steps, np.float64), present),
        "value": (np.array(values), present),
    }
    table.labels = {"tag": list(tags)}
    long_format.widen(table, long_format.LongLayout("step", "tag", "value", None), None)
    table.labels = {}
    table.notes.append(f"TensorBoard event files ({files}): one series per scalar tag")
    return table


def column_names(path: Path) -> list[str]:
    """The column names of a table file, read from its head alone: a CSV's header line, a JSON
    Lines file's first record, a Parquet file's schema. ``[]`` for a file that cannot be read
    so (:func:`read_table` reports what is wrong with it)."""
    suffix = table_suffix(path)
    if suffix not in TABLE_SUFFIXES:
        return []  # a TensorBoard event file, a log directory, anything else
    try:
        with path.open("rb") as raw:
            head = raw.read(CODEC_HEAD_BYTES)
        binary = binary_format(head, suffix)
        if binary == "Parquet":
            return parquet_column_names(path)
        if binary == "Feather":
            return arrow_ipc_column_names(path)
        with opened_decompressed(path, codec_of(head)) as f:
            first_line = f.readline(_MAX_HEADER_BYTES)
    except (OSError, EOFError, zlib.error, InputError):
        return []  # read_table says what is wrong
    text = first_line.decode("utf-8-sig", errors="replace").strip()
    if suffix in JSONL_SUFFIXES or text[:1] in ("{", "["):
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return []
        if not isinstance(record, dict):
            return []
        try:
            return [str(name) for name in (flattened(record) if has_objects(record) else record)]
        except RecursionError:
            return []
    try:
        return split_fields(text, delimiter_of(text))
    except csv.Error:  # a NUL, a lone carriage return: not a table, as read_table will say
        return []
