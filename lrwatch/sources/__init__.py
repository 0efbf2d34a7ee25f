"""Loading runs: saved tables (CSV, Parquet, Feather, JSON Lines), folders of them, and MLflow.

A *spec* names runs; see :mod:`lrwatch.sources.specs` for how a string is read (``runs:/ID``,
``experiment:NAME``, an existing file or folder, a 32-hex run id, else an experiment name).

Example::

    from lrwatch.sources import load_run, load_runs
    run = load_run("runs/lr0.1.csv")                       # a file
    run = load_run("runs:/0123456789abcdef0123456789abcdef", tracking_uri="sqlite:///mlflow.db")
    runs = load_runs(["experiment:lr-sweep"])              # every run of an experiment
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from lrwatch.errors import InputError
from lrwatch.run import Run
from lrwatch.sources.specs import RunRef, classify, expand, mlflow_errors, needs_mlflow

__all__ = [
    "RunRef",
    "SkippedRun",
    "classify",
    "expand",
    "iter_runs",
    "load_ref",
    "load_run",
    "load_runs",
    "needs_mlflow",
    "require_loss",
]


class SkippedRun(InputError):
    """A run found by listing an experiment or a folder that is not a log of training steps - it
    logged no loss (an experiment's parent run, a folder's ``config.json``), or it is a one-row
    JSON document (``wandb-summary.json``, a manifest): not an error. ``reason`` says which."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# Skip reasons (the summary line counts runs by them).
SKIPPED_NO_LOSS = "no loss"
SKIPPED_DOCUMENT = "a one-row JSON document"


def load_run(
    spec: str,
    *,
    tracking_uri: str | None = None,
    loss_key: str | None = None,
    lr_key: str | None = None,
) -> Run:
    """Load the one run ``spec`` names (a file, ``runs:/ID`` or a run id).

    Args:
        spec: a path, ``runs:/RUN_ID`` or a run id (see :mod:`lrwatch.sources.specs`).
        tracking_uri: MLflow store for run ids; default ``MLFLOW_TRACKING_URI`` or the embedded
            default (:func:`lrwatch.store.resolve_tracking_uri`).
        loss_key / lr_key: metric keys to use as loss and LR (found among common names if None).

    Raises:
        InputError: bad input (missing file, not a table, no loss, unknown run, unreachable
            store), or a spec naming several runs (a folder, an experiment: use
            :func:`load_runs`).
    """
    refs = expand(spec, tracking_uri=tracking_uri)
    if len(refs) != 1:
        raise InputError(f"{spec!r} names {len(refs)} runs; use load_runs() for several")
    return load_ref(refs[0], loss_key=loss_key, lr_key=lr_key)


def iter_runs(
    specs: Iterable[str],
    *,
    tracking_uri: str | None = None,
    loss_key: str | None = None,
    lr_key: str | None = None,
) -> Iterator[Run]:
    """Every run the specs name, loaded one at a time (experiment runs without a loss skipped)."""
    for spec in specs:
        for ref in expand(spec, tracking_uri=tracking_uri):
            try:
                yield load_ref(ref, loss_key=loss_key, lr_key=lr_key)
            except SkippedRun:
                continue


def load_runs(
    specs: Iterable[str],
    *,
    tracking_uri: str | None = None,
    loss_key: str | None = None,
    lr_key: str | None = None,
) -> list[Run]:
    """:func:`iter_runs` as a list."""
    return list(iter_runs(specs, tracking_uri=tracking_uri, loss_key=loss_key, lr_key=lr_key))


def load_ref(
    ref: RunRef,
    *,
    loss_key: str | None = None,
    lr_key: str | None = None,
    csv_engine: str = "numpy",
    analysed_only: bool = False,
) -> Run:
    """Load one :class:`RunRef` and check it has a loss to analyse.

    ``csv_engine="arrow"`` reads CSV files with pyarrow (faster per file; for batches).
    ``analysed_only`` reads only the loss and LR series of an MLflow run (see
    :func:`lrwatch.sources.mlflow_store.read_run`); a file is read whole either way.

    Raises:
        SkippedRun: a run found by listing an experiment or a folder is not a log of steps
            (callers may skip it quietly).
        InputError: anything else wrong with the input.
    """
    if ref.kind == "file":
        run = _load_file_ref(ref, loss_key=loss_key, lr_key=lr_key, csv_engine=csv_engine)
    else:
        from lrwatch.sources.mlflow_store import read_run
        from lrwatch.store import resolve_tracking_uri

        # expand() always sets the URI; a RunRef built by hand may leave it to the default store.
        uri = resolve_tracking_uri(ref.tracking_uri)
        with mlflow_errors(uri):
            run = read_run(
                uri, ref.target, loss_key=loss_key, lr_key=lr_key, analysed_only=analysed_only
            )
        if lr_key and lr_key not in run.metrics:
            found = ", ".join(run.metrics) or "none"
            raise InputError(f"{ref.label}: no metric {lr_key!r} (--lr-key); metrics: {found}")
    if loss_key is None:
        from lrwatch.sources.loss_parts import add_summed_loss

        add_summed_loss(run)  # Ultralytics logs only the parts of its loss
    from lrwatch.sources.range_tests import mark_range_test

    mark_range_test(run)  # fastai's or Lightning's range test, saved without lrwatch's tag
    try:
        require_loss(run, label=ref.label, where="metrics" if ref.kind == "mlflow" else "columns")
    except InputError as exc:
        if ref.optional and run.loss is None:
            raise SkippedRun(str(exc), SKIPPED_NO_LOSS) from None
        raise
    if ref.optional and ref.kind == "file" and _is_json_document(ref.target, run):
        message = f"{ref.label}: one row of JSON, the settings or final numbers of a run, not a log"
        raise SkippedRun(message, SKIPPED_DOCUMENT)
    return run


def _is_json_document(path: str, run: Run) -> bool:
    """A ``.json`` file of one row: the settings or final numbers of a run (a W&B
    ``wandb-summary.json``, a sweep's manifest), not its log of steps. Found in a folder it is
    left out; named on its own it is read (and is too short to judge)."""
    from lrwatch.sources.tables import table_suffix

    return table_suffix(Path(path)) == ".json" and run.loss is not None and len(run.loss) <= 1


def _load_file_ref(ref: RunRef, **options) -> Run:
    from lrwatch.sources.files import load_file
    from lrwatch.sources.stdin import STDIN_SPEC, shown

    if ref.spec != STDIN_SPEC:
        return load_file(ref.target, part=ref.part, **options)
    try:  # piped in: shown as "stdin", not by the temporary file that holds it
        run = load_file(ref.target, part=ref.part, **options)
    except InputError as exc:
        raise InputError(shown(str(exc), ref.target)) from None
    run.id, run.source = shown(run.id, ref.target), shown(run.source, ref.target)
    return run


def require_loss(run: Run, *, label: str | None = None, where: str = "columns") -> None:
    """Raise :class:`InputError` unless ``run`` has a loss series with at least one point."""
    label = label or run.id
    found = ", ".join(run.metrics) or "none"
    if run.loss_key is None or run.loss_key not in run.metrics:
        wanted = f"no column {run.loss_key!r}" if run.loss_key else "no loss column"
        if where != "columns":
            wanted = wanted.replace("column", "metric")
        elif run.loss_key is None and run.metrics and all(map(_is_number, run.metrics)):
            raise InputError(
                f"{label}: no header row: the first row holds numbers ({found}), not column "
                "names; add one, such as step,loss,lr"
            )
        raise InputError(f"{label}: {wanted} among {where} ({found}); name it with --loss-key")
    if run.metrics[run.loss_key].is_empty:
        raise InputError(f"{label}: the loss {run.loss_key!r} has no numeric rows")


def _is_number(column_name: str) -> bool:
    """A column named by a number: in a table written without its header row
    (``to_csv(header=False)``), its first row of values became the column names."""
    try:
        float(column_name)
    except ValueError:
        return False
    return True
