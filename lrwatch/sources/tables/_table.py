"""The table model shared by every format: numeric columns and notes (:class:`Table`), the
names that mark a format, a step, an epoch or a row label, and the cell rules (what counts as
"not logged", how a text cell is quoted in an error)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from lrwatch.errors import InputError

Column = tuple[np.ndarray, np.ndarray]  # (float64 values, bool present)

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
# pandas' to_feather and polars' write_ipc: the Arrow IPC file format (Feather V2), also its
# stream format and the deprecated Feather V1.
ARROW_IPC_SUFFIXES = (".feather", ".arrow", ".ipc", ".arrows")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
# Any text table may be compressed with one of these (pandas' to_csv picks the codec from them).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zip")
TABLE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + ARROW_IPC_SUFFIXES + JSONL_SUFFIXES
# Marks a table whose columns are separated by runs of spaces (numpy's savetxt default).
WHITESPACE = " "
# Cells that mean "not logged here" as a blank does: what pandas, R, spreadsheets and
# `str(None)` write for a missing value. "nan" is not among them: a NaN loss is evidence.
MISSING_CELLS = ("", "NA", "N/A", "#N/A", "null", "NULL", "None", "none", "-")
# Text columns kept whole, lower-cased: in a long table (one row per step and metric) they say
# which metric a row holds, or which run (:mod:`lrwatch.sources.long_format`).
LABEL_COLUMNS = ("tag", "key", "metric", "dir_name", "run", "run_id", "run_name")
# Step column names, in order of preference (ours, Lightning's CSVLogger, W&B, common others).
STEP_COLUMNS = ("step", "Step", "global_step", "trainer/global_step", "_step", "iteration", "iter")
# Epoch column names: a step that restarts every epoch is numbered with it.
EPOCH_COLUMNS = ("epoch", "Epoch", "trainer/epoch")
# How much of a text cell an error message quotes.
_QUOTE_CHARS = 48


@dataclass
class Table:
    """Numeric columns in file order, and notes on what reading had to leave out."""

    columns: dict[str, Column]
    notes: list[str] = field(default_factory=list)
    # Columns left out for holding something other than numbers: name -> one such cell.
    text_columns: dict[str, str] = field(default_factory=dict)
    # Every cell (None where blank) of the text columns that may label the rows of a long
    # table - which metric, which run (:data:`LABEL_COLUMNS`, any case).
    labels: dict[str, list[str | None]] = field(default_factory=dict)
    # Label column -> its distinct cells -> their row numbers (see rows_labelled); a copy of the
    # table shares it, as it shares the labels.
    label_rows: dict[str, dict[str | None, np.ndarray]] = field(default_factory=dict)

    def rows_labelled(self, name: str, cell: str | None) -> np.ndarray:
        """The rows (ascending) whose label column ``name`` holds ``cell``. The column is
        grouped once: a long table of N runs asks once per run."""
        groups = self.label_rows.get(name)
        if groups is None:
            grouped: dict[str | None, list[int]] = {}
            for row, label in enumerate(self.labels[name]):
                grouped.setdefault(label, []).append(row)
            groups = {label: np.array(rows, dtype=np.int64) for label, rows in grouped.items()}
            self.label_rows[name] = groups
        return groups.get(cell, np.empty(0, dtype=np.int64))

    def describe_text(self, name: str) -> str:
        """``column 'loss' holds text, not numbers ('tensor(0.5, grad_fn=...)')``; a column of
        timestamps or booleans is said to hold those, whether the format typed it (Parquet,
        pyarrow's CSV reader) or not (a CSV read by numpy)."""
        cell = self.text_columns[name]
        return f"column {name!r} holds {_kind_of_cell(cell)}, not numbers ({cell!r})"

    def add_text(self, name: str, quoted: str, cells: Callable[[], list]) -> None:
        """Remember a text column by one quoted cell; a label column also by all its cells."""
        if name in self.text_columns:
            return  # a header that repeats a name: the first column counts
        self.text_columns[name] = quoted
        if name.lower() in LABEL_COLUMNS:
            self.labels[name] = [
                None if cell is None or str(cell).strip() in MISSING_CELLS else str(cell).strip()
                for cell in cells()
            ]


def _kind_of_cell(cell: str) -> str:
    if cell.lower() in ("true", "false"):
        return "true/false values"
    try:
        datetime.fromisoformat(cell)  # str() of a datetime, pandas' Timestamp and ISO 8601 alike
    except ValueError:
        return "text"
    return "dates/times"


def not_a_table(path: Path) -> InputError:
    return InputError(f"{path}: not a table (expected CSV, Parquet, Feather or JSON Lines)")


def parse_cells(cells: list) -> Column | str:
    """Floats from text/number cells; if any non-blank cell is not a number, that cell, quoted."""
    values = np.full(len(cells), np.nan)
    present = np.zeros(len(cells), dtype=bool)
    for i, cell in enumerate(cells):
        if cell is None or cell in MISSING_CELLS:
            continue
        if isinstance(cell, bool):
            return quote(cell)
        try:
            values[i] = float(cell)
        except (TypeError, ValueError):
            return quote(cell)
        present[i] = True
    return values, present


def quote(cell) -> str:
    text = str(cell)
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 3] + "..."
