"""Saved runs into an MLflow store, for the dashboard: ``lrwatch import runs/``.

The dashboard reads MLflow; runs saved as files (CSV, Parquet, Feather, JSON Lines, TensorBoard
logs, a Trainer's ``trainer_state.json``: whatever ``lrwatch analyze`` reads) are charted and
compared once imported. Each becomes one finished MLflow run holding every metric series as the
file logged it (its steps, NaN/inf kept), the file's params, the LR it started at as the param
``base_lr`` (what :func:`lrwatch.watch` records; the dashboard's "base LR" column), and tags
naming the file.

Importing is idempotent: a run carries a digest of its data (:data:`keys.TAG_IMPORTED_DIGEST`),
and one already in the experiment with the same digest is reused, not written again. A run
whose import was interrupted (left unfinished) is deleted and written again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrwatch import keys
from lrwatch.errors import InputError
from lrwatch.run import Run

DEFAULT_EXPERIMENT = "lrwatch-imported"
# MLflow 3 takes tag values of up to 8000 characters; a file's read notes rarely need 500.
_MAX_TAG_CHARS = 5000


@dataclass(frozen=True)
class ImportedRun:
    """One saved run and where it went: ``run_id`` (None when skipped), ``created`` False when
    the same data was imported before; ``skipped`` says why a file found in a folder was left
    out (not a log of steps)."""

    label: str
    run_id: str | None = None
    created: bool = False
    points: int = 0
    skipped: str | None = None
    # Metric names the store refused (MLflow allows letters, digits and "_-. :/"): left out, with
    # one warning from the sink, and not counted in ``points``.
    refused: tuple[str, ...] = ()


def import_saved_runs(
    specs: Iterable[str],
    *,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    loss_key: str | None = None,
    lr_key: str | None = None,
) -> Iterator[ImportedRun]:
    """Import every saved run that ``specs`` name (files, folders, glob patterns, ``-``).

    ``loss_key`` / ``lr_key`` choose the loss and LR columns as for ``lrwatch analyze``; one
    that the usual names would not find is stored as lrwatch's own ``train/loss`` / ``lr``, so
    that the dashboard charts the series chosen here.

    Every spec is resolved before anything is written, so a typo in the last one writes
    nothing.

    Raises:
        InputError: a spec that names no saved run (a missing file, an MLflow run or
            experiment, which is in a store already), a file that is not a run, or a store
            that cannot be written.
    """
    from lrwatch.sources import SkippedRun, load_ref
    from lrwatch.sources.specs import mlflow_errors
    from lrwatch.store import resolve_tracking_uri
    from lrwatch.tracking.sink import MlflowSink

    refs = [ref for spec in specs for ref in _saved_run_refs(spec)]
    uri = resolve_tracking_uri(tracking_uri)
    sink: MlflowSink | None = None
    experiment_id = ""
    for ref in refs:
        try:
            run = load_ref(ref, loss_key=loss_key, lr_key=lr_key)
        except SkippedRun as skipped:
            yield ImportedRun(ref.label, skipped=skipped.reason)
            continue
        start_lr = _first_lr(run)
        run.metrics = _named_as_readers_find(run, ref.label)
        digest = run_digest(run)
        with mlflow_errors(uri):
            if sink is None:  # opened once a run is read: a file that is no run writes nothing
                sink = MlflowSink(uri)
                experiment_id = sink.experiment_id(experiment)
            run_id = _imported_before(sink, experiment_id, digest)
            created = run_id is None
            if run_id is None:
                run_id = _write_run(sink, experiment, run, ref.label, digest, start_lr)
        refused = tuple(key for key in run.metrics if key in sink.refused_keys)
        points = sum(len(series) for key, series in run.metrics.items() if key not in refused)
        yield ImportedRun(ref.label, run_id, created, points, refused=refused)


def _saved_run_refs(spec: str) -> list:
    from lrwatch.sources.specs import classify, expand, is_ui_address

    kind, value = classify(spec)
    if kind == "run" or is_ui_address(spec):
        raise InputError(f"{spec}: MLflow runs are in a store already; import saved run files")
    if kind == "experiment" or (kind == "file" and not Path(value).exists()):
        raise InputError(f"{value}: no such file or folder")
    return expand(spec)


def _named_as_readers_find(run: Run, label: str) -> dict:
    """The run's metrics, the chosen loss and LR renamed to lrwatch's own names where a reader
    looking for the usual names (the dashboard) would pick another series or none."""
    metrics = dict(run.metrics)
    for chosen, own, find in (
        (run.loss_key, keys.LOSS, keys.find_loss_key),
        (run.lr_key, keys.LR, keys.find_lr_key),
    ):
        if chosen is None or chosen not in metrics or find(metrics) == chosen:
            continue
        if own in metrics:
            raise InputError(f"{label}: {chosen!r} cannot be stored as {own!r}, a column it has")
        metrics[own] = metrics.pop(chosen)
    return metrics


def run_digest(run: Run) -> str:
    """A digest of the run's data (every metric's name, steps and values) and params: the same
    data read from any file, in any format, digests alike."""
    digest = hashlib.sha256()
    for key in sorted(run.metrics):
        series = run.metrics[key]
        digest.update(key.encode() + b"\0")
        digest.update(np.ascontiguousarray(series.steps, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(series.values, dtype=np.float64).tobytes())
    for key in sorted(run.params):
        digest.update(f"{key}={run.params[key]}\0".encode())
    return digest.hexdigest()


def _imported_before(sink, experiment_id: str, digest: str) -> str | None:
    """The id of a finished run holding this data; unfinished ones (an interrupted import) are
    deleted."""
    from mlflow.entities import ViewType

    found = sink.client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{keys.TAG_IMPORTED_DIGEST}` = '{digest}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=100,
    )
    for run in found:
        if run.info.status == "FINISHED":
            return run.info.run_id
        sink.client.delete_run(run.info.run_id)
    return None


def _write_run(
    sink, experiment: str, run: Run, label: str, digest: str, start_lr: float | None
) -> str:
    from lrwatch import __version__

    tags = {
        key: str(value)[:_MAX_TAG_CHARS]
        for key, value in run.tags.items()
        if key.startswith(keys.TAG_PREFIX)
    }
    tags |= {
        keys.TAG_IMPORTED_FROM: label[:_MAX_TAG_CHARS],
        keys.TAG_IMPORTED_DIGEST: digest,
        keys.TAG_VERSION: __version__,
    }
    run_id = sink.create_run(experiment, run.name, tags)
    params = dict(run.params)
    if start_lr is not None and keys.PARAM_BASE_LR not in params:
        params[keys.PARAM_BASE_LR] = repr(start_lr)
    if params:
        sink.log_params(run_id, params)
    now_ms = int(time.time() * 1000)
    rows = [
        (key, value, now_ms, step)
        for key, series in run.metrics.items()
        for step, value in zip(series.steps.tolist(), series.values.tolist())
    ]
    sink.log_metrics(run_id, rows)
    # FINISHED last: a run without it is a half-written import, replaced on the next import.
    sink.end_run(run_id, "FINISHED")
    return run_id


def _first_lr(run: Run) -> float | None:
    """The first positive finite LR the run logged, as the logger records ``base_lr``."""
    if run.lr is None:
        return None
    values = run.lr.values[np.isfinite(run.lr.values) & (run.lr.values > 0)]
    return float(values[0]) if values.size else None
