"""JSON tables: JSON Lines, one array of objects, a Hugging Face ``trainer_state.json``, or one
object of whole columns (Keras's ``history.history``, pandas' ``to_json``)."""

from __future__ import annotations

import json
from pathlib import Path

from lrwatch.errors import InputError
from lrwatch.sources.tables._table import (
    EPOCH_COLUMNS,
    STEP_COLUMNS,
    Column,
    Table,
    not_a_table,
    parse_cells,
)


def read_json_rows(path: Path, text: str, table: Table) -> dict[str, Column]:
    """JSON Lines (one object per line), one JSON array of objects, a Hugging Face Trainer
    state (``trainer_state.json``: its ``log_history``, one object per logging event), or one
    object of whole columns (:func:`_column_records`)."""
    records = _json_records(path, text, table.notes)
    if not records or not all(isinstance(r, dict) for r in records):
        raise not_a_table(path)
    try:
        records = [flattened(r) if has_objects(r) else r for r in records]
    except RecursionError:
        raise not_a_table(path) from None
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {}
    for name in names:
        # Lists are not numbers: float() refuses them like any text.
        cells = [r.get(name) for r in records]
        column = parse_cells(cells)
        if isinstance(column, str):
            table.add_text(str(name), column, cells.copy)
        else:
            columns[str(name)] = column
    return columns


def has_objects(record: dict) -> bool:
    return any(isinstance(value, dict) for value in record.values())


def flattened(record: dict, prefix: str = "") -> dict:
    """``{"step": 3, "train": {"loss": 0.5}}`` -> ``{"step": 3, "train/loss": 0.5}``: the numbers
    in a nested object are metrics too, named by their path as TensorBoard tags are."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flattened(value, name + "/"))
        else:
            out[name] = value
    return out


def _json_records(path: Path, text: str, notes: list[str]) -> list:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None  # more than one document: JSON Lines
    except RecursionError:
        raise not_a_table(path) from None
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        history = document.get("log_history")  # Hugging Face Trainer's saved state
        if isinstance(history, list):
            return history
        return _column_records(document, notes) or [document]
    if document is not None:  # a bare number or string
        raise not_a_table(path)
    return _json_lines(path, text, notes)


def _column_records(document: dict, notes: list[str]) -> list[dict] | None:
    """The rows of a JSON object that holds whole columns; None when it holds one row.

    ``json.dump(history.history, f)`` after Keras's ``model.fit`` writes one list per metric,
    one value per epoch (``{"loss": [...], "val_loss": [...]}``); pandas's
    ``DataFrame.to_json()`` writes one object per column keyed by the row's index label
    (``{"loss": {"0": 0.9, "1": 0.7}}``), and ``orient="index"`` one object per row
    (``{"0": {"loss": 0.9}}``). Read as one row, the first was lists that are not numbers and
    the others a column per index label (``loss/0``, ``loss/1``, ...).
    """
    values = list(document.values())
    if not values:
        return None
    if all(isinstance(value, list) for value in values):
        return _zipped(document, notes)
    if not all(isinstance(value, dict) and value for value in values):
        return None
    if all(map(_integer_label, document)):
        return _labelled_rows(document)
    if all(all(map(_integer_label, column)) for column in values):
        rows: dict[str, dict] = {}
        for name, column in document.items():
            for label, value in column.items():
                rows.setdefault(label, {})[name] = value
        return _labelled_rows(rows)
    return None


def _zipped(lists: dict, notes: list[str]) -> list[dict]:
    """Rows of equal-length lists. A shorter list (Keras's ``val_loss`` under
    ``validation_freq=5``) does not say which rows its values belong to: left out, with a note."""
    rows = max(len(values) for values in lists.values())
    kept = {name: values for name, values in lists.items() if len(values) == rows}
    for name, values in lists.items():
        if name not in kept:
            notes.append(
                f"{name!r} holds {len(values)} values against {rows} for the others: left out "
                "(which rows they belong to is not recorded)"
            )
    return [{name: values[i] for name, values in kept.items()} for i in range(rows)]


def _labelled_rows(rows: dict[str, dict]) -> list[dict]:
    """Rows keyed by an integer index label, in order: the label is the step unless a step or
    epoch column says otherwise (a default index is the row number either way)."""
    names = {name for row in rows.values() for name in row}
    if names & set(STEP_COLUMNS + EPOCH_COLUMNS):
        return list(rows.values())
    return [{"step": int(label), **row} for label, row in rows.items()]


def _integer_label(label: str) -> bool:
    return label.lstrip("-").isdigit()


def _json_lines(path: Path, text: str, notes: list[str]) -> list:
    """One record per non-blank line. A last line that does not parse and does not end the text
    with a newline was cut off by a writer that stopped mid-line (a crash, a full disk): it is
    left out with a note. Any other line that does not parse is an error naming it."""
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            if number == len(lines) and not text.endswith("\n") and records:
                notes.append(f"line {number} is cut off (the writer stopped mid-line): left out")
                break
            if not records:
                raise not_a_table(path) from None
            raise InputError(f"{path}: line {number} is not valid JSON") from None
    return records
