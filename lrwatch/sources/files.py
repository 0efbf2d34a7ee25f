"""Saved runs on disk: one table file per run (CSV, Parquet, Feather, JSON Lines), or a folder
of them.

The step comes from the first column named like a step (:data:`STEP_COLUMNS`); a file without
one uses its epoch column when that counts one row per epoch, else the row index, and the run
says so (tag :data:`TAG_STEPS_FROM`). Every
other numeric column becomes a metric series holding the rows that logged it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lrwatch import keys
from lrwatch.errors import InputError
from lrwatch.run import Run, Series
from lrwatch.sources import long_format, tensorboard, wandb_export
from lrwatch.sources.epoch_steps import epoch_steps_note, epochs_in, steps_across_epochs
from lrwatch.sources.tables import (
    EPOCH_COLUMNS,
    SPREADSHEET_SUFFIXES,
    STEP_COLUMNS,
    TABLE_SUFFIXES,
    Table,
    column_names,
    is_table_file,
    read_table,
    table_stem,
)

# Tag recording where steps came from when a file had no step column.
TAG_STEPS_FROM = "lrwatch.steps_from"
STEPS_FROM_ROW_INDEX = "row index"
# Tag holding what reading the file left out (a line cut off by a crashed writer), one per line.
TAG_READ_NOTES = "lrwatch.read_notes"
_MAX_STEP = 2.0**62
# A loss blank after its last value is read as NaN when, before, it was logged in at least
# this share of the rows logging the LR (one row per step, as a DataFrame of records is), over
# at least this many rows: 90% leaves room for a few NaN blanks within the run.
_CO_LOGGED = 0.9
_MIN_CO_LOGGED_ROWS = 30
# The columns of TensorBoard's CSV download of one scalar, besides its Step.
_TENSORBOARD_COLUMNS = {"Wall time", "Value"}
# A file of several runs at least this big is read with pyarrow's CSV reader: such a file has
# text columns (the run, the metric), which send the numpy reader to its row-by-row path
# (500,000 rows: 2.3 s, against 0.85 s with pyarrow and its ~0.3 s import).
_ARROW_MIN_BYTES = 1 << 20
# The last file of several runs read, by its path and state on disk, and its table: each of its
# runs is taken from it, not from a re-read of the file (a long table of 50 runs was read 51
# times). One file is kept: the runs of a file are loaded one after the other.
_multi_run_table: tuple[tuple, Table] | None = None


def load_file(
    path: str | Path,
    *,
    loss_key: str | None = None,
    lr_key: str | None = None,
    csv_engine: str = "numpy",
    part: str | None = None,
) -> Run:
    """One saved run from a table file (or a TensorBoard log directory or event file).

    Args:
        path: a CSV, Parquet, Feather or JSON Lines file (one row per logged step), CSV and
            JSON Lines also compressed (gzip, bz2, xz, a zip of one file).
        loss_key / lr_key: column names to use as loss and LR (found among common names if None).
        csv_engine: ``"numpy"`` or ``"arrow"`` (see :func:`lrwatch.sources.tables.read_table`).
        part: for a file holding several runs (a W&B chart export,
            :mod:`lrwatch.sources.wandb_export`; a long table with a run column,
            :mod:`lrwatch.sources.long_format`), the name of the run to load.

    Returns:
        A :class:`Run` with ``id``/``source`` the path as given and ``name`` the file stem; of
        one run of several in a file, ``id`` is ``PATH#RUN`` and ``name`` the run's; a
        TensorBoard log directory (or event file) is named by the directory.
        Series are cleaned (sorted, one value per step). Loss presence is not checked here:
        see :func:`lrwatch.sources.require_loss`.

    Raises:
        InputError: missing, empty or garbage file; no numeric rows; a named key is absent;
            a file of several runs without ``part``.

    Example::

        run = load_file("runs/lr0.1.csv", loss_key="val_loss")
    """
    path = Path(path)
    if part is not None and path.is_file():
        table = _read_multi_run_table(path, csv_engine)
    else:
        table = read_table(path, csv_engine=csv_engine)
    notes = list(table.notes)
    run_name, run_id = table_stem(path), str(path)
    is_tensorboard = path.is_dir() or tensorboard.EVENT_FILE_MARK in path.name
    if is_tensorboard:
        run_name = (path if path.is_dir() else path.parent).resolve().name  # the log directory
    step_name = _step_column(table)
    export = wandb_export.runs_in_export(list(table.columns))
    layout = None if export is not None else long_format.layout_of(table, step_name)
    if export is not None:
        part = _chosen_part(path, list(export), part, "a W&B chart export")
        loss_key = wandb_export.unprefixed(loss_key, part)
        lr_key = wandb_export.unprefixed(lr_key, part)
        _keep_export_run(table, export, part)
        run_name = part
        if len(export) > 1:
            run_id = f"{path}#{part}"
            notes.append(f"a W&B chart export of {len(export)} runs: this is {part!r}")
        else:
            notes.append(f"a W&B chart export of the run {part!r}")
    elif layout is not None:
        runs = long_format.runs_in(table, layout)
        what = f"a long table (the metric of each row in {layout.key!r})"
        if len(runs) > 1 or part is not None:
            part = _chosen_part(path, runs, part, what)
            run_name, run_id = part, f"{path}#{part}"
            notes.append(f"{what} of {len(runs)} runs (in {layout.run!r}): this is {part!r}")
        else:
            notes.append(f"{what}: read as one column per metric")
        long_format.widen(table, layout, part)
    elif part is not None:
        raise InputError(f"{path}: holds one run, not several: no run {part!r} in it")
    columns = table.columns
    if step_name is None:
        # A step column of text (timestamps, "12/500") is no step: say so, not just "no step
        # column", before falling back to an epoch column or the row numbers.
        notes += [
            f"{table.describe_text(name)}: not used as the step"
            for name in STEP_COLUMNS
            if name in table.text_columns
        ][:1]
        step_name = _epoch_as_step(columns)
    elif not _placeable(*columns[step_name]).any():
        # Not one row has a step to place it by ('nan' in every row, steps beyond int64): the
        # column is no step, as a text one is not; reporting "no numeric rows" would be wrong.
        notes.append(f"the step column {step_name!r} holds no usable step: not used as the step")
        columns.pop(step_name)
        if not columns:
            raise InputError(
                f"{run_id}: no numeric rows besides the step column {step_name!r} (which holds "
                "no usable step: blank, non-finite or beyond 2^62)"
            )
        step_name = _epoch_as_step(columns)
    steps, row_ok = _steps(columns, step_name, notes)
    tags = {TAG_STEPS_FROM: step_name or STEPS_FROM_ROW_INDEX}
    tensorboard_note = _name_tensorboard_value(path, columns)
    if tensorboard_note:
        notes.append(tensorboard_note)
    blank_losses = _blank_losses_read_as_nan(columns, steps, row_ok, loss_key, lr_key)
    if blank_losses:
        notes.append(blank_losses)
    metrics = {}
    repeated: dict[str, int] = {}  # metric -> its rows that repeat an earlier step
    epochs: dict[str, int] = {}  # metric -> epochs, when its step starts again every epoch
    # TensorBoard's event files are numbered so one by one (tensorboard.read_scalars): a second
    # file of a log directory that starts again is a rerun or a resumed writer, not an epoch.
    by_row_order = step_name is not None and not is_tensorboard
    for name, (values, present) in columns.items():
        keep = present & row_ok
        if not keep.any():
            continue
        logged = steps[keep]  # in row order: the order they were logged in
        across = steps_across_epochs(logged, values[keep]) if by_row_order else None
        if across is not None:
            epochs[name] = epochs_in(logged)
            logged = across
        metrics[name] = Series(logged, values[keep]).cleaned()
        repeated[name] = int(keep.sum()) - len(metrics[name])
    # Noted for the loss only: other metrics may share a step by design (a Hugging Face
    # trainer_state logs the epoch in the training row and in the evaluation row of a step).
    loss = loss_key or keys.find_loss_key(metrics)
    if loss in epochs:
        notes.append(epoch_steps_note(loss, epochs[loss]))
    if step_name is not None and loss is not None and repeated.get(loss):
        notes.append(repeated_steps_note(repeated[loss], loss, "row", in_file=True))
    _check_not_text(run_id, table, metrics, loss_key, lr_key)
    if not metrics:
        raise InputError(f"{run_id}: no numeric rows besides the step column {step_name!r}")
    _check_named_keys(run_id, metrics, loss_key, lr_key)
    _check_tensorboard_export_named(run_id, path, metrics, loss_key)
    lr_as_text = _lr_left_out_as_text(table, metrics, lr_key)
    if lr_as_text:
        notes.append(lr_as_text)
    if notes:
        tags[TAG_READ_NOTES] = "\n".join(notes)
    return Run(
        id=run_id,
        name=run_name,
        source=str(path),
        tags=tags,
        metrics=metrics,
        loss_key=loss_key,
        lr_key=lr_key,
    )


def _blank_losses_read_as_nan(
    columns: dict, steps: np.ndarray, row_ok: np.ndarray, loss_key, lr_key
) -> str | None:
    """pandas writes NaN as a blank cell (``to_csv``) or a null (``to_parquet``): a run saved
    from a DataFrame lost the NaN losses that are the evidence of its divergence, and read as
    one that simply stopped logging - "no problem found". Read them back as NaN where it is
    safe to: the loss is blank after its last value, in rows at later steps that still log the
    LR and nothing the last loss row did not, while before that it was logged in at least
    :data:`_CO_LOGGED` of the rows logging the LR. Rows without the LR (a Lightning CSVLogger's
    validation rows, a Trainer's summary row), evaluation rows (a val_loss the training rows
    never had) and sparse loss logging (every 10th LR row) stay "not logged". Returns the note
    saying so."""
    loss_name = loss_key or keys.find_loss_key(columns)
    lr_name = lr_key or keys.find_lr_key(columns)
    if loss_name not in columns or lr_name not in columns:
        return None
    (losses, loss_present), (_, lr_present) = columns[loss_name], columns[lr_name]
    order = np.argsort(np.where(row_ok, steps, np.iinfo(np.int64).max), kind="stable")
    order = order[row_ok[order]]
    logged = np.flatnonzero(loss_present[order])
    if logged.size < _MIN_CO_LOGGED_ROWS:
        return None
    before, after = order[: logged[-1] + 1], order[logged[-1] + 1 :]
    with_lr = lr_present[before]
    if with_lr.sum() < _MIN_CO_LOGGED_ROWS or loss_present[before][with_lr].mean() < _CO_LOGGED:
        return None
    # A training row whose loss went NaN logs what the rows before it logged, at a later step;
    # an evaluation row (a val_loss the training rows never had) is no such row.
    last = before[-1]
    blank = after[lr_present[after] & (steps[after] > steps[last])]
    for _, present in columns.values():
        if not present[last]:
            blank = blank[~present[blank]]
    if blank.size == 0:
        return None
    losses, loss_present = losses.copy(), loss_present.copy()
    losses[blank], loss_present[blank] = np.nan, True
    columns[loss_name] = (losses, loss_present)
    rows = "1 row" if blank.size == 1 else f"{blank.size} rows"
    return (
        f"the loss {loss_name!r} is blank from step {steps[blank].min()} on ({rows}) where the "
        "LR goes on: read as NaN, as pandas writes it (to_csv(na_rep='nan') keeps it explicit)"
    )


def runs_in_file(path: Path) -> list[str]:
    """The runs a table file holds when it holds several (a W&B chart export, a long table with
    a run column), else ``[]``. Reads the head alone, and the whole file only when the columns
    name a run column. Never raises: loading the file reports what is wrong with it."""
    names = column_names(path)
    export = wandb_export.runs_in_export(names)
    if export is not None:
        return list(export) if len(export) > 1 else []
    if not long_format.may_hold_runs(names):
        return []
    engine = "arrow" if path.is_file() and path.stat().st_size >= _ARROW_MIN_BYTES else "numpy"
    try:
        table = _read_multi_run_table(path, engine)
    except InputError:
        return []
    layout = long_format.layout_of(table, _step_column(table))
    runs = [] if layout is None else long_format.runs_in(table, layout)
    return runs if len(runs) > 1 else []


def _read_multi_run_table(path: Path, csv_engine: str) -> Table:
    """The table of a file of several runs, read once while the file stays as it is.

    Returns a copy whose column dict and notes the caller may change (loading a run replaces
    the columns by that run's); the columns' arrays themselves are shared and never written.
    """
    global _multi_run_table
    stat = path.stat()
    state = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if _multi_run_table is None or _multi_run_table[0] != state:
        _multi_run_table = None  # the old table's memory goes before the new one is read
        _multi_run_table = (state, read_table(path, csv_engine=csv_engine))
    table = _multi_run_table[1]
    return dataclasses.replace(table, columns=dict(table.columns), notes=list(table.notes))


def _step_column(table: Table) -> str | None:
    """The table's step column: the first of :data:`STEP_COLUMNS` it has."""
    return next((name for name in STEP_COLUMNS if name in table.columns), None)


def _epoch_as_step(columns: dict) -> str | None:
    """With no step column, an epoch column that counts 0, 1, 2, ... (one row per epoch, as
    Keras's and fastai's CSVLoggers write) is the step: a finding "at step 12" is then epoch 12
    of the log, where a row number would be off by one from an epoch counted from 1."""
    name = next((n for n in EPOCH_COLUMNS if n in columns), None)
    if name is None:
        return None
    epochs, present = columns[name]
    whole = present.all() and bool(np.all(epochs == np.trunc(epochs)))
    rising = epochs.size < 2 or bool(np.all(np.diff(epochs) > 0))
    return name if whole and rising and bool(np.all(np.abs(epochs) < _MAX_STEP)) else None


def _chosen_part(path: Path, runs: list[str], part: str | None, what: str) -> str:
    """The run of a file of several to load: ``part``, or the only one."""
    if part is None and len(runs) == 1:
        return runs[0]
    if part is None:
        raise InputError(
            f"{path}: {what} of {len(runs)} runs ({', '.join(runs)}): load them with "
            "load_runs(), or name one with part="
        )
    if part not in runs:
        raise InputError(f"{path}: no run {part!r} with numeric rows in {what}")
    return part


def _keep_export_run(table: Table, export: dict[str, dict[str, str]], part: str) -> None:
    """Keep the x-axis and ``part``'s columns, named by their metric."""
    x_axis = {n: c for n, c in table.columns.items() if wandb_export.SEPARATOR not in n}
    table.columns = x_axis | {
        metric: table.columns[column] for metric, column in export[part].items()
    }


def _steps(columns: dict, step_name: str | None, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's integer step, and which rows have one. Pops the step column from ``columns``
    and adds a note for every way the steps were read other than as they stand."""
    if step_name is None:
        n_rows = len(next(iter(columns.values()))[0])
        return np.arange(n_rows, dtype=np.int64), np.ones(n_rows, dtype=bool)
    values, present = columns.pop(step_name)
    # Rows whose step is blank, non-finite or beyond int64 cannot be placed: left out, and said
    # so when they held a value.
    row_ok = _placeable(values, present)
    unplaced = int((~row_ok & np.any([p for _, p in columns.values()], axis=0)).sum())
    if unplaced:
        rows = "1 row" if unplaced == 1 else f"{unplaced} rows"
        notes.append(
            f"{rows} without a usable step in {step_name!r} (blank, non-finite or beyond "
            "2^62): left out"
        )
    steps = np.where(row_ok, values, 0).astype(np.int64)
    epochs = _epoch_of_each_row(columns, values, row_ok)
    if epochs is not None:
        # A step counted within each epoch (it restarts where the epoch goes up): the rows of
        # later epochs would replace the earlier ones step for step. Number (epoch, step) pairs.
        pairs = np.column_stack((epochs[row_ok], values[row_ok]))
        steps[row_ok] = np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1)
        notes.append(
            f"the step column {step_name!r} restarts every epoch: steps are numbered in "
            "(epoch, step) order"
        )
        return steps, row_ok
    fractional = row_ok & (values != np.trunc(values))
    if fractional.any():
        # Steps like 0.25, 0.5 (fractional epochs) would collapse into one integer step each:
        # number the distinct values in order instead, so no row is lost.
        steps[row_ok] = np.unique(values[row_ok], return_inverse=True)[1]
        notes.append(
            f"the step column {step_name!r} holds fractions ({values[fractional][0]:g}): "
            "steps are their order (0, 1, 2, ...)"
        )
    return steps, row_ok


def _placeable(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Per row: does it have a step it can be placed by (present, finite, within int64)?"""
    return present & (np.abs(np.nan_to_num(values, nan=np.inf)) < _MAX_STEP)


def repeated_steps_note(count: int, key: str, unit: str, *, in_file: bool = False) -> str:
    """The note for ``count`` rows (or points) of metric ``key`` logged at a step already
    logged: the latest of each step is used. Right after a resume from a checkpoint; for a step
    counted per epoch it is not, and the note says what would fix it."""
    counted = f"1 {unit} of {key!r} repeats" if count == 1 else f"{count} {unit}s of {key!r} repeat"
    fix = "a global step, or an epoch column" if in_file else "a global step"
    return (
        f"{counted} an earlier step: the latest of each step is used (right for a job resumed "
        f"from a checkpoint; a step counted per epoch needs {fix})"
    )


def _epoch_of_each_row(columns: dict, steps: np.ndarray, row_ok: np.ndarray) -> np.ndarray | None:
    """The epoch column's values when the step goes back exactly where the epoch goes up."""
    name = next((n for n in EPOCH_COLUMNS if n in columns), None)
    if name is None:
        return None
    epochs, present = columns[name]
    if not present[row_ok].all():
        return None
    s, e = steps[row_ok], epochs[row_ok]
    back = np.flatnonzero(np.diff(s) < 0) + 1
    if back.size == 0 or not (e[back] > e[back - 1]).all() or (np.diff(e) < 0).any():
        return None
    return epochs


def _name_tensorboard_value(path: Path, columns: dict) -> str | None:
    """TensorBoard's "Download CSV" holds one scalar as ``Wall time, Step, Value`` and names it
    only in the file name (``run-version_0-tag-train_loss.csv``): the Value column takes that
    name, so a loss or LR export is found like any other. Returns the note saying so."""
    if set(columns) != _TENSORBOARD_COLUMNS:
        return None
    tag = table_stem(path).rsplit("-tag-", 1)[-1]
    if tag in columns or (keys.find_loss_key([tag]) is None and not keys.is_lr_key(tag)):
        return None
    columns[tag] = columns.pop("Value")
    return f"a TensorBoard scalar export: its Value column is {tag!r}, named by the file"


def _check_tensorboard_export_named(run_id, path: Path, metrics, loss_key) -> None:
    """A TensorBoard CSV download of a scalar that is neither a loss nor an LR by its file name
    (a custom tag, or a renamed file): which scalar its Value holds is the user's to say, never
    guessed, so the error names the option that says it, not just "no loss column among
    columns (Wall time, Value)"."""
    if loss_key is not None or set(metrics) != _TENSORBOARD_COLUMNS:
        return
    stem = table_stem(path)
    held = (
        f"of {stem.rsplit('-tag-', 1)[-1]!r} (the tag in its file name), not a name known for a loss"
        if "-tag-" in stem
        else "whose file name does not say which scalar it holds"
    )
    raise InputError(
        f"{run_id}: a TensorBoard scalar export (Wall time, Step, Value) {held}; "
        "if it is the loss, name it with --loss-key Value"
    )


def _check_not_text(path, table: Table, metrics, loss_key, lr_key) -> None:
    """The loss and LR columns named, or else the loss found, are not text: a loss written as
    a tensor's repr (``f"{loss}"``) is an error that says so, not "no loss column"."""
    for option, key in (("--loss-key", loss_key), ("--lr-key", lr_key)):
        if key in table.text_columns:
            raise InputError(f"{path}: {table.describe_text(key)} ({option})")
    if loss_key is None and keys.find_loss_key(metrics) is None:
        loss_as_text = keys.find_loss_key(table.text_columns)
        if loss_as_text is not None:
            hint = "; log loss.item()" if "tensor(" in table.text_columns[loss_as_text] else ""
            raise InputError(f"{path}: the loss {table.describe_text(loss_as_text)}{hint}")


def _check_named_keys(path, metrics, loss_key, lr_key) -> None:
    for option, key in (("--loss-key", loss_key), ("--lr-key", lr_key)):
        if key is not None and key not in metrics:
            raise InputError(
                f"{path}: no column {key!r} ({option}); numeric columns: {', '.join(metrics)}"
            )


def _lr_left_out_as_text(table: Table, metrics, lr_key) -> str | None:
    """A note when the only LR column holds text: the run is analysed without its LR."""
    if lr_key is not None or keys.find_lr_key(metrics) is not None:
        return None
    lr_as_text = keys.find_lr_key(table.text_columns)
    return None if lr_as_text is None else f"the LR {table.describe_text(lr_as_text)}: left out"


def folder_files(folder: str | Path) -> list[Path]:
    """The runs in ``folder``: each table file directly inside it (sorted by name), then each
    TensorBoard log directory at or below it (a folder holding event files).

    Raises:
        InputError: the folder holds neither.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_table_file(p))
    log_dirs = tensorboard.log_dirs(folder)
    if not files and not log_dirs:
        suffixes = ", ".join(TABLE_SUFFIXES)
        sheets = sorted(
            p.name for p in folder.iterdir() if p.suffix.lower() in SPREADSHEET_SUFFIXES
        )
        unread = (
            f"; its spreadsheets ({', '.join(sheets[:3])}{', ...' if len(sheets) > 3 else ''}) "
            "are not read: save their sheets as CSV"
            if sheets
            else ""
        )
        raise InputError(
            f"{folder}: no run files in this folder (looked for {suffixes}, also compressed, and "
            f"TensorBoard event files){unread}"
        )
    return files + log_dirs


def add_read_note(run: Run, note: str) -> None:
    """Add a sentence to what :func:`read_notes` reports for ``run``."""
    earlier = run.tags.get(TAG_READ_NOTES)
    run.tags[TAG_READ_NOTES] = f"{earlier}\n{note}" if earlier else note


def read_notes(run: Run) -> list[str]:
    """Sentences for the report: what reading the file left out, and steps numbered by row."""
    notes = [n for n in run.tags.get(TAG_READ_NOTES, "").split("\n") if n]
    steps_from = run.tags.get(TAG_STEPS_FROM)
    if steps_from == STEPS_FROM_ROW_INDEX:
        notes.append("no step column: steps are row numbers (0, 1, 2, ...)")
    elif steps_from in EPOCH_COLUMNS:
        notes.append(f"no step column: steps are the epochs in {steps_from!r}, one row each")
    return notes


def save_run_csv(run: Run, path: str | Path) -> Path:
    """Write ``run`` as a saved-run CSV (``step`` + one column per metric; blanks where unlogged).

    The inverse of :func:`load_file`, used to hand runs to other tools and in tests.
    """
    path = Path(path)
    all_steps = np.unique(np.concatenate([s.steps for s in run.metrics.values()] or [np.empty(0)]))
    names = list(run.metrics)
    index = {
        name: dict(zip(s.steps.tolist(), s.values.tolist())) for name, s in run.metrics.items()
    }
    lines = [",".join(["step", *names])]
    for step in all_steps.tolist():
        cells = [repr(index[n][step]) if step in index[n] else "" for n in names]
        lines.append(",".join([str(step), *cells]))
    path.write_text("\n".join(lines) + "\n")
    return path
