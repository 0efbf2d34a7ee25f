"""Reading runs out of an MLflow tracking store, fast where the store allows it.

``MlflowClient.get_metric_history`` builds one Python ``Metric`` object per point (~3.4 s per
100k points, ~40 s per 1M on SQLite). SQL-backed stores (``sqlite``, ``postgresql``, ``mysql``,
``mssql`` URIs) are read straight from MLflow's tables instead, without importing MLflow
(:mod:`lrwatch.sources.mlflow_sql`); a tracking server (``http(s)``) through its REST API
(:mod:`lrwatch.sources.mlflow_rest`: plain JSON, and only the new points of a running run);
every other store (a file store, Databricks) through the client. MLflow stays the source of
truth: nothing is written.

Public functions (all return cleaned data, see :meth:`lrwatch.run.Series.cleaned`):

- :func:`read_history` - one metric of one run, optionally only the points after a step
  (the dashboard's incremental refresh).
- :func:`read_histories` - several (or all) metrics of one run in one query.
- :func:`list_metric_keys` - the metric keys a run logged.
- :func:`read_run` - a whole :class:`~lrwatch.run.Run` (metadata from a SQL store's tables
  without importing MLflow, else from the client; series fast).
- :func:`mlflow_client` - one cached ``MlflowClient`` per tracking URI.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lrwatch.errors import InputError
from lrwatch.keys import find_loss_key, find_lr_key
from lrwatch.run import Run, Series, UnreadSeries
from lrwatch.sources import mlflow_rest, mlflow_sql
from lrwatch.sources.epoch_steps import epoch_steps_note, epochs_in, steps_across_epochs
from lrwatch.sources.files import TAG_READ_NOTES, repeated_steps_note
from lrwatch.sources.loss_parts import loss_parts
from lrwatch.sources.mlflow_sql import RunMeta, is_sql_store
from lrwatch.store import check_tracking_uri, display_uri, one_per_uri

# MLflow run statuses -> the Run model's three states.
_STATUS = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished"}
_STATUS.update(FAILED="failed", KILLED="failed")


def read_history(
    tracking_uri: str, run_id: str, key: str, *, after_step: int | None = None
) -> Series:
    """The cleaned history of metric ``key`` of run ``run_id``: points with ``step > after_step``.

    Args:
        tracking_uri: any MLflow tracking URI; SQL stores are read directly (read-only).
        run_id: the MLflow run id.
        key: the metric key, e.g. ``train/loss``.
        after_step: only points with a larger step (all points when ``None``), in the numbering
            a whole read gives (a step counted per epoch is numbered across epochs).

    Returns:
        A :class:`Series` sorted by step, one value per step (the last logged), NaN kept and
        the SQL store's stand-in for infinity restored. Empty when nothing matches.

    Example::

        loss = read_history("sqlite:///mlflow.db", run_id, "train/loss")
        newer = read_history("sqlite:///mlflow.db", run_id, "train/loss", after_step=loss.steps[-1])
    """
    found = read_histories(tracking_uri, run_id, [key], after_step=after_step).get(key)
    return found if found is not None else Series(np.empty(0, np.int64), np.empty(0))


def read_histories(
    tracking_uri: str,
    run_id: str,
    keys: Iterable[str] | None = None,
    *,
    after_step: int | None = None,
    repeats: dict[str, int] | None = None,
    unstepped: dict[str, int] | None = None,
    epochs: dict[str, int] | None = None,
) -> dict[str, Series]:
    """Cleaned histories of several metrics of one run (all of its metrics when ``keys`` is None).

    Keys with no points (after ``after_step``) are left out of the result. ``repeats``, when
    given, receives per key how many points repeated an earlier step (the latest is kept).

    A metric whose points were all logged at one step (``mlflow.log_metric(key, value)`` with no
    step logs step 0 every time) is numbered by logging order instead (see
    :func:`number_in_logging_order`); ``unstepped``, when given, receives such keys and their
    point counts. A step that starts again every epoch is numbered across the epochs
    (:mod:`lrwatch.sources.epoch_steps`), and ``after_step`` counts in that numbering; ``epochs``
    receives such keys and their epoch counts.
    """
    wanted = None if keys is None else list(dict.fromkeys(keys))
    if wanted == []:
        return {}
    if is_sql_store(tracking_uri):
        raw = mlflow_sql.histories(tracking_uri, run_id, wanted, after_step)
        in_order = _sql_unstepped(tracking_uri, run_id, raw, after_step)
        read_whole = set(raw)
        if after_step is not None:
            read_whole = _sql_first_step_repeated(tracking_uri, run_id, set(raw) - set(in_order))
            if read_whole:
                raw.update(mlflow_sql.histories(tracking_uri, run_id, sorted(read_whole), None))
    elif after_step is not None and mlflow_rest.is_rest_store(tracking_uri):
        raw, in_order, read_whole = _rest_histories_after(tracking_uri, run_id, wanted, after_step)
    else:  # other stores are read whole
        raw, in_order = _client_histories(tracking_uri, run_id, wanted)
        read_whole = set(raw)
    numbered = number_in_logging_order(in_order)
    raw.update(numbered)
    for key, (series, count) in _numbered_across_epochs(
        tracking_uri, run_id, {key: raw[key] for key in read_whole}
    ).items():
        raw[key] = series
        if epochs is not None:
            epochs[key] = count
    if after_step is not None:
        for key in read_whole | set(numbered):
            raw[key] = _after(raw[key], after_step)
    cleaned = {key: series.cleaned() for key, series in raw.items() if len(series)}
    if repeats is not None:
        repeats.update({key: len(raw[key]) - len(series) for key, series in cleaned.items()})
    if unstepped is not None:
        unstepped.update({key: len(series) for key, series in numbered.items()})
    return cleaned


def list_metric_keys(tracking_uri: str, run_id: str) -> list[str]:
    """The metric keys run ``run_id`` has logged, sorted."""
    if is_sql_store(tracking_uri):
        return mlflow_sql.metric_keys(tracking_uri, run_id)
    return sorted(mlflow_client(tracking_uri).get_run(run_id).data.metrics)


def read_run(
    tracking_uri: str,
    run_id: str,
    *,
    loss_key: str | None = None,
    lr_key: str | None = None,
    analysed_only: bool = False,
) -> Run:
    """Run ``run_id`` with its params, tags, status, start time, name and every metric series.

    ``analysed_only`` reads the loss and the LR alone (:func:`analysed_keys`), the run's other
    metrics left to ``Run.unread``: through a tracking server each metric is a paged read of its
    own, and a 10k-step run logging 20 per-layer gradient norms a step took 9.6 s to read whole,
    0.94 s so (``benchmarks/server_reads.py``). When the loss cannot be named from the keys
    alone, or has no points, every series is read, so what the run lacks is worded as for a
    whole read.

    Raises:
        InputError: the run does not exist in this store.
    """
    meta = _get_run(tracking_uri, run_id)
    names = sorted(meta.metric_keys)
    wanted = analysed_keys(names, loss_key, lr_key) if analysed_only else None
    repeats: dict[str, int] = {}
    unstepped: dict[str, int] = {}
    epochs: dict[str, int] = {}

    def read(keys: list[str] | None) -> dict[str, Series]:
        return read_histories(
            tracking_uri, run_id, keys, repeats=repeats, unstepped=unstepped, epochs=epochs
        )

    metrics = read(wanted or names or None)
    unread = None
    if wanted and wanted[0] not in metrics:
        metrics = read(names)
    elif wanted:
        left = tuple(name for name in names if name not in wanted)
        unread = UnreadSeries(left, lambda keys: read_histories(tracking_uri, run_id, keys))
    tags = dict(meta.tags)
    loss = loss_key or find_loss_key(metrics)
    # Read with the run like a file's notes (lrwatch.sources.files.read_notes); not stored.
    if loss is not None and unstepped.get(loss):
        tags[TAG_READ_NOTES] = unstepped_note(unstepped[loss], loss)
    elif loss is not None and epochs.get(loss):
        tags[TAG_READ_NOTES] = epoch_steps_note(loss, epochs[loss])
    elif loss is not None and repeats.get(loss):
        tags[TAG_READ_NOTES] = repeated_steps_note(repeats[loss], loss, "point")
    return Run(
        id=meta.run_id,
        name=meta.name or tags.get("mlflow.runName", ""),
        source=f"{tracking_uri}#{meta.run_id}",
        params=dict(meta.params),
        tags=tags,
        metrics=metrics,
        status=run_status(meta.status),
        start_time_ms=meta.start_time_ms,
        experiment_id=meta.experiment_id,
        loss_key=loss_key,
        lr_key=lr_key,
        unread=unread,
    )


def analysed_keys(
    names: Sequence[str], loss_key: str | None, lr_key: str | None
) -> list[str] | None:
    """The metric keys an analysis reads first among ``names``: the loss (or the Ultralytics
    parts it is summed from), then param group 0's LR; ``None`` when the loss cannot be named
    from the keys alone, or a key asked for is not among them (read everything then). The other
    groups' LRs are read only for a recommendation that scales them."""
    if loss_key is None and (parts := loss_parts(names)):
        loss = parts
    else:
        found = loss_key or find_loss_key(names)
        loss = [found] if found is not None and found in names else []
    if not loss or (lr_key is not None and lr_key not in names):
        return None
    rate = lr_key or find_lr_key(names)
    return list(dict.fromkeys(loss + ([rate] if rate else [])))


def run_status(mlflow_status: str) -> str | None:
    """MLflow's run status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``) -> Run.status."""
    return _STATUS.get(str(mlflow_status).upper())


# --- the MLflow client (imported only when needed: importing mlflow takes ~1-2 s) -------------


@one_per_uri
def mlflow_client(tracking_uri: str):
    """One shared ``MlflowClient`` per tracking URI (building one costs ~0.1 s).

    A database store other than SQLite is connected to once first: MLflow's own store retries
    an unreachable database 10 times with doubling waits (~100 s, a multi-line warning each
    time) before it gives up; this fails at once, in one :class:`InputError` line.
    """
    from mlflow import MlflowClient

    check_tracking_uri(tracking_uri)
    if is_sql_store(tracking_uri):
        mlflow_sql.check_database_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def _get_run(tracking_uri: str, run_id: str) -> RunMeta:
    if is_sql_store(tracking_uri):
        found = mlflow_sql.run_meta(tracking_uri, run_id)
        if found is not None:
            return found
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow_client(tracking_uri).get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            raise InputError(
                f"no run {run_id!r} in tracking store {display_uri(tracking_uri)}"
            ) from None
        raise  # unreachable server, bad URI...: lrwatch.sources.specs.mlflow_errors words it
    info, data = run.info, run.data
    return RunMeta(
        info.run_id, info.run_name, info.status, info.start_time, info.experiment_id,
        dict(data.params), dict(data.tags), sorted(data.metrics),
    )  # fmt: skip


def _client_histories(
    tracking_uri: str, run_id: str, keys: list[str] | None
) -> tuple[dict[str, Series], dict[str, InLoggingOrder]]:
    """Raw series through the client, and apart from them the unstepped ones in logging order."""
    out: dict[str, Series] = {}
    in_order: dict[str, InLoggingOrder] = {}
    for key in list_metric_keys(tracking_uri, run_id) if keys is None else keys:
        _sort_in(key, _all_points(tracking_uri, run_id, key), out, in_order)
    return out, in_order


def _rest_histories_after(
    tracking_uri: str, run_id: str, keys: list[str] | None, after_step: int
) -> tuple[dict[str, Series], dict[str, InLoggingOrder], set[str]]:
    """A tracking server's points after ``after_step``, as :func:`_client_histories` returns
    them, and the keys that had to be read whole (see :func:`mlflow_rest.points_after`)."""
    out: dict[str, Series] = {}
    in_order: dict[str, InLoggingOrder] = {}
    whole = set()
    for key in list_metric_keys(tracking_uri, run_id) if keys is None else keys:
        points, is_whole = mlflow_rest.points_after(tracking_uri, run_id, key, after_step)
        if is_whole:
            whole.add(key)
            _sort_in(key, points, out, in_order)
        else:
            out[key] = Series(points[0], points[1])
    return out, in_order, whole


def _all_points(tracking_uri: str, run_id: str, key: str) -> mlflow_rest.Points:
    """Every point of one metric through the client, or a tracking server's REST API."""
    if mlflow_rest.is_rest_store(tracking_uri):
        return mlflow_rest.all_points(tracking_uri, run_id, key)
    history = mlflow_client(tracking_uri).get_metric_history(run_id, key)
    steps = np.fromiter((m.step for m in history), np.int64, len(history))
    values = np.fromiter((m.value for m in history), np.float64, len(history))
    stamps = np.fromiter((m.timestamp for m in history), np.int64, len(history))
    return steps, values, stamps


def _sort_in(
    key: str,
    points: mlflow_rest.Points,
    out: dict[str, Series],
    in_order: dict[str, InLoggingOrder],
) -> None:
    """File one metric's points under ``out``, or under ``in_order`` when all sit at one step."""
    steps, values, stamps = points
    if _at_one_step(steps):
        # Stable: points of one millisecond keep the order the store returned them in (a
        # file store: the order they were logged in).
        order = np.argsort(stamps, kind="stable")
        in_order[key] = (stamps[order], values[order])
    else:
        out[key] = Series(steps, values)


# --- metrics logged without a step ----------------------------------------------------------------

# (millisecond timestamps, values) of one metric, in the order it was logged.
InLoggingOrder = tuple[np.ndarray, np.ndarray]


def _at_one_step(steps: np.ndarray) -> bool:
    """Two or more points, all at one step: a metric logged with no step (MLflow logs step 0)."""
    return steps.size >= 2 and int(steps.min()) == int(steps.max())


def number_in_logging_order(in_order: dict[str, InLoggingOrder]) -> dict[str, Series]:
    """Step numbers for metrics logged with no step: each point's place in logging order.

    The metric with the most points (the loss, logged every iteration, in practice) is numbered
    0, 1, 2, ...; another with as many points shares those numbers (logged in the same loop);
    one with fewer (an LR logged once per epoch) takes, from its timestamp, the number of the
    first point of the most-logged metric logged at or after it - the step it applied to.
    """
    if not in_order:
        return {}
    reference = max(in_order, key=lambda key: (in_order[key][0].size, key))
    reference_stamps = in_order[reference][0]
    numbered = {}
    for key, (stamps, values) in in_order.items():
        if stamps.size == reference_stamps.size:
            steps = np.arange(stamps.size, dtype=np.int64)
        else:
            steps = np.searchsorted(reference_stamps, stamps, side="left").astype(np.int64)
        numbered[key] = Series(steps, values)
    return numbered


def unstepped_note(count: int, key: str) -> str:
    """The note for a metric read in logging order (see :func:`number_in_logging_order`)."""
    return (
        f"all {count} points of {key!r} were logged at one step (mlflow.log_metric without "
        "step= logs step 0): read in logging order, one step per point"
    )


def _after(series: Series, after_step: int) -> Series:
    keep = series.steps > after_step
    return Series(series.steps[keep], series.values[keep])


def _sql_unstepped(
    tracking_uri: str, run_id: str, raw: dict[str, Series], after_step: int | None
) -> dict[str, InLoggingOrder]:
    """The metrics of ``raw`` logged with no step, read whole in logging order."""
    if after_step is None:
        keys = [key for key, series in raw.items() if _at_one_step(series.steps)]
    else:
        # A read after a step cannot tell: every point of an unstepped metric sits at one step,
        # so it shows all of them or none. Two index look-ups settle it.
        keys = [
            key
            for key, series in raw.items()
            if (series.is_empty or _at_one_step(series.steps))
            and mlflow_sql.logged_at_one_step(tracking_uri, run_id, key)
        ]
    found = {key: _sql_in_logging_order(tracking_uri, run_id, key) for key in keys}
    return {key: ordered for key, ordered in found.items() if ordered[0].size >= 2}


# --- a step that starts again every epoch -----------------------------------------------------


def _numbered_across_epochs(
    tracking_uri: str, run_id: str, raw: dict[str, Series]
) -> dict[str, tuple[Series, int]]:
    """The metrics of ``raw`` whose step starts again every epoch: numbered across epochs, and
    how many epochs. Only a metric with a repeated step can be one; its points are read again
    in logging order to tell (rare: a resumed job, or a step counted per epoch)."""
    found = {}
    for key, series in raw.items():
        if not _repeats_a_step(series.steps):
            continue
        steps, values = _in_logging_order_with_steps(tracking_uri, run_id, key)
        across = steps_across_epochs(steps, values)
        if across is not None:
            found[key] = (Series(across, values), epochs_in(steps))
    return found


def _sql_first_step_repeated(tracking_uri: str, run_id: str, keys: set[str]) -> set[str]:
    """The keys whose first step was logged more than once: a read after a step cannot follow
    them (a step counted per epoch, numbered across epochs by a whole read, logs its next epoch
    at steps the reader already holds), so they are read whole. One index look-up each."""
    return {
        key for key in keys if (mlflow_sql.first_step_count(tracking_uri, run_id, key) or 0) > 1
    }


def _repeats_a_step(steps: np.ndarray) -> bool:
    if steps.size < 2 or bool(np.all(steps[1:] > steps[:-1])):
        return False  # strictly increasing, as SQL reads return steps: one O(n) pass
    return bool(np.unique(steps).size < steps.size)


def _in_logging_order_with_steps(
    tracking_uri: str, run_id: str, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one metric in the order they were logged."""
    if is_sql_store(tracking_uri):
        table = mlflow_sql.rows_in_logging_order(tracking_uri, run_id, key)
        return table[:, 1].astype(np.int64), table[:, 2]
    steps, values, stamps = _all_points(tracking_uri, run_id, key)
    order = np.argsort(stamps, kind="stable")  # stable: the store's order within a millisecond
    return steps[order], values[order]


def _sql_in_logging_order(tracking_uri: str, run_id: str, key: str) -> InLoggingOrder:
    table = mlflow_sql.rows_in_logging_order(tracking_uri, run_id, key)
    return table[:, 0].astype(np.int64), table[:, 2]
