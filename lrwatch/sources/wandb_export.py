"""W&B's chart export: a line plot's "Export panel -> CSV" holds every run the chart shows.

Its first column is the chart's x-axis (``Step``); then, for each run and metric,
``<run> - <metric>`` and the companions ``<run> - <metric>__MIN`` / ``__MAX`` (the range of each
point when W&B sampled the curve)::

    Step,eager-sun-12 - train/loss,eager-sun-12 - train/loss__MIN,eager-sun-12 - train/loss__MAX,...

Read as one table, such a file looked like one run whose loss was the first run's column: the
other runs were silently left out. Each run in it is now a run of its own, its metrics named
without the run prefix (``train/loss``), the companions left out.
"""

from __future__ import annotations

from collections.abc import Sequence

# Between the run's name and the metric's in a column name. Split at its last occurrence: a
# run name ("resnet - lr 0.1") is likelier to hold one than a metric key.
SEPARATOR = " - "
# W&B's per-point range columns, next to the value column they bound.
BOUND_SUFFIXES = ("__MIN", "__MAX")


def runs_in_export(columns: Sequence[str]) -> dict[str, dict[str, str]] | None:
    """``{run name: {metric: column}}`` when ``columns`` (in file order) are a W&B chart
    export's, else None.

    The first column is the x-axis when it has no run prefix; every other column must have one.
    Run names and metrics keep their order of first appearance.
    """
    named = [name for name in columns if name]
    if named and SEPARATOR not in named[0]:
        named = named[1:]
    if not named or not all(SEPARATOR in name for name in named):
        return None
    present = set(named)
    runs: dict[str, dict[str, str]] = {}
    for column in named:
        if column.endswith(BOUND_SUFFIXES) and column[: -len(BOUND_SUFFIXES[0])] in present:
            continue
        run, metric = (part.strip() for part in column.rsplit(SEPARATOR, 1))
        if run and metric:
            runs.setdefault(run, {})[metric] = column
    return runs or None


def unprefixed(key: str | None, run: str) -> str | None:
    """A ``--loss-key``/``--lr-key`` given as the export's column (``run - train/loss``) names
    the metric ``train/loss`` of that run."""
    prefix = run + SEPARATOR
    return key[len(prefix) :] if key is not None and key.startswith(prefix) else key
