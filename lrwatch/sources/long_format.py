"""Tables in long form: one row per step *and metric*, a column naming the metric of each row.

    step,tag,value                      tbparse's SummaryReader(logdir).scalars, the usual way
    0,train/loss,2.31                   to read TensorBoard logs into pandas
    0,lr,0.1
    1,train/loss,2.28

    key,value,step,timestamp            MLflow's metric history as a table
                                        (``[m.to_dictionary() for m in get_metric_history(...)]``)

Read as a plain table, the metric names were text and left out: "no loss column among columns
(step, value)". Each metric becomes a column holding the rows that name it, the sparse layout
:func:`lrwatch.sources.files.load_file` reads anyway. A run column (tbparse's ``dir_name`` for a
log folder of several runs, ``run_id``) with several values splits the file into runs, named by
it, as a W&B chart export is (:mod:`lrwatch.sources.wandb_export`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lrwatch.sources.tables import Table

# The column naming each row's metric, and the one holding its value (lower-case; first wins).
KEY_COLUMNS = ("tag", "key", "metric")
VALUE_COLUMNS = ("value",)
# The column naming each row's run.
RUN_COLUMNS = ("dir_name", "run_id", "run", "run_name")


@dataclass(frozen=True)
class LongLayout:
    step: str
    key: str
    value: str
    run: str | None


def layout_of(table: Table, step_name: str | None) -> LongLayout | None:
    """The long layout of ``table``, or None: a text column naming metrics, a numeric value
    column, and a step column (a row's place says nothing about its step when metrics
    interleave)."""
    if step_name is None:
        return None
    key = _first(table.labels, KEY_COLUMNS)
    value = _first(table.columns, VALUE_COLUMNS)
    if key is None or value is None:
        return None
    return LongLayout(step_name, key, value, _first(table.labels, RUN_COLUMNS))


def may_hold_runs(names: list[str]) -> bool:
    """Whether a table with these columns may be a long table of several runs (worth reading
    whole to list them)."""
    return all(
        _first(dict.fromkeys(names), wanted) for wanted in (KEY_COLUMNS, VALUE_COLUMNS, RUN_COLUMNS)
    )


def _first(names, wanted: tuple[str, ...]) -> str | None:
    lowered = {name.lower(): name for name in reversed(list(names))}  # a repeated name: the first
    return next((lowered[n] for n in wanted if n in lowered), None)


def runs_in(table: Table, layout: LongLayout) -> list[str]:
    """The runs a long table holds, in order of first appearance (``[]``: no run column)."""
    if layout.run is None:
        return []
    return list(dict.fromkeys(r for r in table.labels[layout.run] if r is not None))


def widen(table: Table, layout: LongLayout, run: str | None) -> None:
    """Replace ``table.columns`` by the step column and one column per metric, in the rows of
    ``run`` (every row when None). A metric's column is present only in the rows naming it."""
    values, value_present = table.columns[layout.value]
    steps = table.columns[layout.step]
    keys = table.labels[layout.key]
    if run is None or layout.run is None:
        rows = np.arange(len(keys))
    else:
        rows = table.rows_labelled(layout.run, run)
    named = np.array([keys[row] for row in rows.tolist()], dtype=object)
    wide = {layout.step: (steps[0][rows], steps[1][rows])}
    for metric in dict.fromkeys(m for m in named if m is not None):
        wide[metric] = (values[rows], value_present[rows] & (named == metric))
    table.columns = wide
