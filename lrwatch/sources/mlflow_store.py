"""Reading runs out of an MLflow tracking store, fast where the store allows it.

``MlflowClient.get_metric_history`` builds one Python ``Metric`` object per point (~3.4 s per
100k points, ~40 s per 1M on SQLite). For SQL-backed stores (``sqlite``, ``postgresql``,
``mysql``, ``mssql`` URIs) this module reads MLflow's ``metrics`` table directly with a read-only
``SELECT`` into numpy instead; a tracking server (``http(s)``) is read through its REST API
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

import dataclasses
import functools
import itertools
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lrwatch.errors import InputError
from lrwatch.keys import find_loss_key, find_lr_key
from lrwatch.run import Run, Series, UnreadSeries
from lrwatch.sources import mlflow_rest
from lrwatch.sources.epoch_steps import epoch_steps_note, epochs_in, steps_across_epochs
from lrwatch.sources.files import TAG_READ_NOTES, repeated_steps_note
from lrwatch.sources.loss_parts import loss_parts
from lrwatch.store import check_tracking_uri, display_uri

# URI schemes whose store is a SQL database holding MLflow's ``metrics`` table.
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# MLflow run statuses -> the Run model's three states.
_STATUS = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished"}
_STATUS.update(FAILED="failed", KILLED="failed")
# Seconds a reader waits for SQLite's lock while a writer (the logger) holds it.
_SQLITE_BUSY_TIMEOUT_S = 10.0


def is_sql_store(tracking_uri: str) -> bool:
    """True when ``tracking_uri`` names a database MLflow's SQL store uses (read directly)."""
    return _scheme(tracking_uri) in _SQL_SCHEMES


def _scheme(tracking_uri: str) -> str:
    """The database or protocol of a URI, without its driver: ``postgresql+psycopg:`` -> postgresql."""
    return tracking_uri.split(":", 1)[0].split("+", 1)[0].lower()


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
        raw = _sql_histories(tracking_uri, run_id, wanted, after_step)
        in_order = _sql_unstepped(tracking_uri, run_id, raw, after_step)
        read_whole = set(raw)
        if after_step is not None:
            read_whole = _sql_first_step_repeated(tracking_uri, run_id, set(raw) - set(in_order))
            if read_whole:
                raw.update(_sql_histories(tracking_uri, run_id, sorted(read_whole), None))
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
        return sorted(row[0] for row in _sql_rows(tracking_uri, _KEYS_SQL, [run_id]))
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
        status=_STATUS.get(str(meta.status).upper()),
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


def sql_experiment_run_ids(
    tracking_uri: str, name_or_id: str, *, by_id: bool = False
) -> list[str] | None:
    """The active runs of an active experiment of a SQL store, oldest first, as ``search_runs``
    lists them, read without importing MLflow (see :func:`_sql_run`). ``None`` when the
    experiment is not found, deleted or holds no run, or the tables are not MLflow's: the
    client then says what is wrong, as before.

    Raises:
        InputError: a database server that does not answer.
    """
    _check_database_reachable(tracking_uri)
    try:
        found = None if by_id else _first_row(tracking_uri, _EXPERIMENT_SQL, name_or_id)
        if found is None and (by_id or name_or_id.isdigit()):
            found = _first_row(tracking_uri, _EXPERIMENT_BY_ID_SQL, int(name_or_id))
        if found is None or found[1] != "active":
            return None
        rows = _sql_rows(tracking_uri, _EXPERIMENT_RUNS_SQL, [found[0]])
    except Exception:  # noqa: BLE001 - not MLflow's tables, any driver's error: the client words it
        return None
    return [run_id for (run_id,) in rows] or None


def _first_row(tracking_uri: str, sql: str, value) -> tuple | None:
    return next(iter(_sql_rows(tracking_uri, sql, [value])), None)


def run_status(mlflow_status: str) -> str | None:
    """MLflow's run status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``) -> Run.status."""
    return _STATUS.get(str(mlflow_status).upper())


# --- the MLflow client (imported only when needed: importing mlflow takes ~1-2 s) -------------


def _one_per_uri(build):
    """Decorate ``build(tracking_uri)``: one object per URI, built on first use under a lock."""
    built: dict[str, object] = {}
    lock = threading.Lock()

    @functools.wraps(build)
    def get(tracking_uri: str):
        with lock:
            if tracking_uri not in built:
                built[tracking_uri] = build(tracking_uri)
            return built[tracking_uri]

    return get


@_one_per_uri
def mlflow_client(tracking_uri: str):
    """One shared ``MlflowClient`` per tracking URI (building one costs ~0.1 s).

    A database store other than SQLite is connected to once first: MLflow's own store retries
    an unreachable database 10 times with doubling waits (~100 s, a multi-line warning each
    time) before it gives up; this fails at once, in one :class:`InputError` line.
    """
    from mlflow import MlflowClient

    check_tracking_uri(tracking_uri)
    if is_sql_store(tracking_uri):
        _check_database_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def _check_database_reachable(tracking_uri: str) -> None:
    """Raise :class:`InputError` at once when a database server does not answer (SQLite files
    need no check)."""
    if _scheme(tracking_uri) == "sqlite":
        return
    from lrwatch.sources.specs import describe_mlflow_failure

    try:
        with _engine(tracking_uri).connect():
            pass
    except ImportError as exc:  # the database's driver is not installed
        postgres = _scheme(tracking_uri) == "postgresql"
        hint = 'pip install "lrwatch[postgres]"' if postgres else "install its database driver"
        raise InputError(
            f"cannot open tracking store {display_uri(tracking_uri)}: {exc} ({hint})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and driver errors alike
        raise InputError(describe_mlflow_failure(tracking_uri, exc)) from None


@dataclasses.dataclass(frozen=True)
class _RunMeta:
    """What :func:`read_run` takes from MLflow's ``get_run``: all but the metric histories."""

    run_id: str
    name: str | None
    status: str
    start_time_ms: int | None
    experiment_id: str
    params: dict[str, str]
    tags: dict[str, str]
    metric_keys: list[str]


def _get_run(tracking_uri: str, run_id: str) -> _RunMeta:
    if is_sql_store(tracking_uri):
        found = _sql_run(tracking_uri, run_id)
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
    return _RunMeta(
        info.run_id, info.run_name, info.status, info.start_time, info.experiment_id,
        dict(data.params), dict(data.tags), sorted(data.metrics),
    )  # fmt: skip


def _sql_run(tracking_uri: str, run_id: str) -> _RunMeta | None:
    """The run straight from a SQL store's tables, as ``get_run`` gives it, without MLflow:
    importing it made `lrwatch analyze RUN_ID` take 3.3 s instead of 0.35 s on SQLite, and its
    ORM took ~10 ms a run (``benchmarks/mlflow_analyze.py``). ``None`` when the run is not there
    or the tables are not MLflow's (an old schema, another database): the client then says
    what is wrong, as before.

    Raises:
        InputError: a database server that does not answer (checked first, so that the client
            does not wait on it a second time).
    """
    _check_database_reachable(tracking_uri)
    queries = [_RUN_SQL, _PARAMS_SQL, _TAGS_SQL, _KEYS_SQL]
    try:
        rows, params, tags, keys = _sql_selects(tracking_uri, queries, [run_id])
    except Exception:  # noqa: BLE001 - not MLflow's tables, any driver's error: the client words it
        return None
    if not rows:
        return None
    uuid, name, status, start_time, experiment_id = rows[0]
    metric_keys = sorted(key for (key,) in keys)
    return _RunMeta(
        uuid, name, status, start_time, str(experiment_id), dict(params), dict(tags), metric_keys
    )


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
            and _sql_one_step(tracking_uri, run_id, key)
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
    return {key for key in keys if (first_step_count(tracking_uri, run_id, key) or 0) > 1}


def first_step_count(tracking_uri: str, run_id: str, key: str) -> int | None:
    """How many points metric ``key`` logged at its first step - for a step counted per epoch,
    the epochs begun - from a SQL store (two index look-ups); None for other stores."""
    if not is_sql_store(tracking_uri):
        return None
    return int(_sql_rows(tracking_uri, _FIRST_STEP_COUNT_SQL, [run_id, key, run_id, key])[0][0])


def _repeats_a_step(steps: np.ndarray) -> bool:
    if steps.size < 2 or bool(np.all(steps[1:] > steps[:-1])):
        return False  # strictly increasing, as SQL reads return steps: one O(n) pass
    return bool(np.unique(steps).size < steps.size)


def _in_logging_order_with_steps(
    tracking_uri: str, run_id: str, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one metric in the order they were logged."""
    if is_sql_store(tracking_uri):
        table = _sql_rows_in_logging_order(tracking_uri, run_id, key)
        return table[:, 1].astype(np.int64), table[:, 2]
    steps, values, stamps = _all_points(tracking_uri, run_id, key)
    order = np.argsort(stamps, kind="stable")  # stable: the store's order within a millisecond
    return steps[order], values[order]


def _sql_one_step(tracking_uri: str, run_id: str, key: str) -> bool:
    row = _sql_rows(tracking_uri, _STEP_RANGE_SQL, [run_id, key, run_id, key])[0]
    return row[0] is not None and row[0] == row[1]


def _sql_in_logging_order(tracking_uri: str, run_id: str, key: str) -> InLoggingOrder:
    table = _sql_rows_in_logging_order(tracking_uri, run_id, key)
    return table[:, 0].astype(np.int64), table[:, 2]


def _sql_rows_in_logging_order(tracking_uri: str, run_id: str, key: str) -> np.ndarray:
    """``(timestamp, step, value)`` rows of one metric in the order they were logged."""
    if tracking_uri.lower().startswith("sqlite:"):
        # SQLite's rowid is the insertion order: it orders points logged in one millisecond.
        with _sqlite_connect(tracking_uri) as conn:
            rows = conn.execute(_IN_ORDER_SQL.format(q='"') + ", rowid", [run_id, key]).fetchall()
    else:  # other databases: within a millisecond, by step
        rows = _sql_rows(tracking_uri, _IN_ORDER_SQL + ", {q}step{q}", [run_id, key])
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


# --- direct SQL reads ---------------------------------------------------------------------------

# The SELECTs, with identifiers quoted ({q}"key" is reserved in MySQL) and ``?``-style parameters
# rewritten per driver by _sql_rows. No ORDER BY: sorting 1M rows in SQL costs more than the whole
# read; numpy sorts only when a step repeats (rare), by (step, timestamp, value) like
# get_metric_history does, so Series.cleaned() keeps the same "last logged" value for a step.
_HISTORY_SQL = (
    "SELECT {q}step{q}, {q}timestamp{q}, CASE WHEN {q}is_nan{q} THEN NULL ELSE {q}value{q} END"
    " FROM {q}metrics{q} WHERE {q}run_uuid{q} = ? AND {q}key{q} = ?"
)
_AFTER_STEP_SQL = " AND {q}step{q} > ?"
# How a DB-API driver marks a positional parameter, by its ``paramstyle`` (psycopg, psycopg2 and
# PyMySQL: "pyformat"; pyodbc and pysqlite: "qmark"); other drivers are called through SQLAlchemy.
_DRIVER_PARAMETER_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_KEYS_SQL = "SELECT DISTINCT {q}key{q} FROM {q}latest_metrics{q} WHERE {q}run_uuid{q} = ?"
_RUN_SQL = (
    "SELECT {q}run_uuid{q}, {q}name{q}, {q}status{q}, {q}start_time{q}, {q}experiment_id{q}"
    " FROM {q}runs{q} WHERE {q}run_uuid{q} = ?"
)
_PARAMS_SQL = "SELECT {q}key{q}, {q}value{q} FROM {q}params{q} WHERE {q}run_uuid{q} = ?"
_TAGS_SQL = "SELECT {q}key{q}, {q}value{q} FROM {q}tags{q} WHERE {q}run_uuid{q} = ?"
_EXPERIMENT_COLUMNS = "SELECT {q}experiment_id{q}, {q}lifecycle_stage{q} FROM {q}experiments{q}"
_EXPERIMENT_SQL = _EXPERIMENT_COLUMNS + " WHERE {q}name{q} = ?"
_EXPERIMENT_BY_ID_SQL = _EXPERIMENT_COLUMNS + " WHERE {q}experiment_id{q} = ?"
# search_runs' order: the one asked for (start time), nulls last, then the run id.
_EXPERIMENT_RUNS_SQL = (
    "SELECT {q}run_uuid{q} FROM {q}runs{q}"
    " WHERE {q}experiment_id{q} = ? AND {q}lifecycle_stage{q} = 'active'"
    " ORDER BY {q}start_time{q} IS NULL, {q}start_time{q}, {q}run_uuid{q}"
)
# Two scalar subqueries: each is one index look-up, where MIN and MAX in one SELECT scan the run.
_STEP_RANGE_SQL = (
    "SELECT (SELECT MIN({q}step{q}) FROM {q}metrics{q} WHERE {q}run_uuid{q} = ? AND {q}key{q} = ?),"
    " (SELECT MAX({q}step{q}) FROM {q}metrics{q} WHERE {q}run_uuid{q} = ? AND {q}key{q} = ?)"
)
# How many points sit at the metric's first step: two index look-ups.
_FIRST_STEP_COUNT_SQL = (
    "SELECT COUNT(*) FROM {q}metrics{q} WHERE {q}run_uuid{q} = ? AND {q}key{q} = ? AND {q}step{q} ="
    " (SELECT MIN({q}step{q}) FROM {q}metrics{q} WHERE {q}run_uuid{q} = ? AND {q}key{q} = ?)"
)
_IN_ORDER_SQL = (
    "SELECT {q}timestamp{q}, {q}step{q}, CASE WHEN {q}is_nan{q} THEN NULL ELSE {q}value{q} END"
    " FROM {q}metrics{q} WHERE {q}run_uuid{q} = ? AND {q}key{q} = ? ORDER BY {q}timestamp{q}"
)


# SQLite: walk MLflow's (run_uuid, key, step) index. Rows then come sorted by step, and the
# planner cannot pick the primary key, which starts with the key and so scans that key's rows of
# every run (0.1 s for a 200-point run in a store of large runs; 0.1 ms through this index).
# Two columns flattened by np.fromiter halve the cost of a 1M-point read (0.6 s instead of 1.2 s);
# NULL and 'nan' both become NaN. Timestamps are read only when a step repeats.
_SQLITE_INDEX = "index_metrics_run_uuid_key_step"
_SQLITE_HISTORY_SQL = (
    "SELECT step, CASE WHEN is_nan THEN NULL ELSE value END FROM metrics"
    f" INDEXED BY {_SQLITE_INDEX} WHERE run_uuid = ? AND key = ?"
)


def _sql_histories(
    tracking_uri: str, run_id: str, keys: list[str] | None, after_step: int | None
) -> dict[str, Series]:
    if keys is None:
        keys = list_metric_keys(tracking_uri, run_id)
    extra = [] if after_step is None else [int(after_step)]
    if tracking_uri.lower().startswith("sqlite:"):
        with _sqlite_connect(tracking_uri) as conn:
            if _has_index(conn, _SQLITE_INDEX):
                return {key: _sqlite_series(conn, [run_id, key, *extra]) for key in keys}
    sql = _HISTORY_SQL + ("" if after_step is None else _AFTER_STEP_SQL)
    return {
        key: _rows_to_series(_sql_rows(tracking_uri, sql, [run_id, key, *extra])) for key in keys
    }


def _has_index(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", [name])
    return found.fetchone() is not None


def _sqlite_series(conn: sqlite3.Connection, params: list) -> Series:
    after = "" if len(params) == 2 else " AND step > ?"
    rows = conn.execute(_SQLITE_HISTORY_SQL + after, params)
    pairs = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64).reshape(-1, 2)
    steps = pairs[:, 0]
    if steps.size > 1 and not np.all(steps[1:] > steps[:-1]):
        # A repeated step: order its values as get_metric_history does (see _rows_to_series).
        with_stamps = _HISTORY_SQL.format(q='"') + after
        return _rows_to_series(conn.execute(with_stamps, params).fetchall())
    return Series(steps.astype(np.int64), pairs[:, 1])


def _rows_to_series(rows: list[tuple]) -> Series:
    if not rows:
        return Series(np.empty(0, np.int64), np.empty(0))
    # One float64 matrix: steps and millisecond timestamps are far below 2**53, so exact;
    # NULL (MLflow stores NaN as 0 with is_nan set) becomes NaN.
    table = np.array(rows, dtype=np.float64)
    steps, stamps, values = table[:, 0], table[:, 1], table[:, 2]
    if steps.size > 1 and not np.all(steps[1:] > steps[:-1]):
        order = np.lexsort((values, stamps, steps))
        steps, values = steps[order], values[order]
    return Series(steps.astype(np.int64), values)


def _sql_selects(tracking_uri: str, queries: list[str], params: list) -> list[list[tuple]]:
    """Several read-only SELECTs with the same parameters, on one connection for SQLite (a
    connection each made reading 200 runs' metadata 0.7 s slower)."""
    if tracking_uri.lower().startswith("sqlite:"):
        with _sqlite_connect(tracking_uri) as conn:
            return [conn.execute(sql.format(q='"'), params).fetchall() for sql in queries]
    return [_sql_rows(tracking_uri, sql, params) for sql in queries]


def _sql_rows(tracking_uri: str, sql: str, params: list) -> list[tuple]:
    """Run one read-only SELECT (``{q}`` identifier quotes, ``?`` parameters) on the store."""
    if tracking_uri.lower().startswith("sqlite:"):
        with _sqlite_connect(tracking_uri) as conn:
            return conn.execute(sql.format(q='"'), params).fetchall()
    from sqlalchemy import text

    engine = _engine(tracking_uri)
    quote = engine.dialect.identifier_preparer.initial_quote
    if engine.dialect.name == "mssql":  # a BIT column is not a condition there
        sql = sql.replace("{q}is_nan{q} THEN", "{q}is_nan{q} = 1 THEN")
    sql = sql.format(q=quote)
    marker = _DRIVER_PARAMETER_MARKERS.get(engine.dialect.paramstyle)
    with engine.connect() as conn:
        if marker is not None:
            # The driver's own cursor: wrapping each row in SQLAlchemy's Row object cost ~0.9 s
            # of the 1.9 s a 1M-point read took on PostgreSQL.
            cursor = conn.connection.cursor()
            try:
                cursor.execute(sql.replace("?", marker), params)
                return cursor.fetchall()
            finally:
                cursor.close()
        pieces = sql.split("?")
        named = "".join(f"{piece}:p{i}" for i, piece in enumerate(pieces[:-1])) + pieces[-1]
        result = conn.execute(text(named), {f"p{i}": v for i, v in enumerate(params)})
        return [tuple(row) for row in result]


class _ReadOnlySqlite:
    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=_SQLITE_BUSY_TIMEOUT_S
            )
        except sqlite3.OperationalError as exc:
            raise InputError(f"cannot open MLflow store {self.path}: {exc}") from None
        return self.conn

    def __exit__(self, *exc) -> None:
        self.conn.close()


def _sqlite_connect(tracking_uri: str) -> _ReadOnlySqlite:
    return _ReadOnlySqlite(sqlite_path(tracking_uri))


def holds_mlflow_tables(path: str | Path) -> bool:
    """Whether the SQLite file at ``path`` holds MLflow's ``runs`` table (False for an empty
    file, another application's database, or no SQLite database at all)."""
    try:
        with _ReadOnlySqlite(str(path)) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
            ).fetchone()
    except (InputError, sqlite3.Error):
        return False
    return found is not None


def sqlite_path(tracking_uri: str) -> str:
    """The database file of a ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` URI."""
    rest = tracking_uri.split(":", 1)[1]
    if not rest.startswith("///"):
        raise InputError(f"not a file-backed SQLite tracking URI: {tracking_uri}")
    return rest[3:].split("?", 1)[0]


# Seconds a connection attempt to a database store may take (a host that drops packets would
# otherwise hang for the operating system's TCP timeout, minutes).
_CONNECT_TIMEOUT_S = 10


@_one_per_uri
def _engine(tracking_uri: str):
    import sqlalchemy

    # PostgreSQL's and MySQL's drivers take connect_timeout; others keep their defaults.
    timed = _scheme(tracking_uri) in ("postgresql", "mysql")
    connect_args = {"connect_timeout": _CONNECT_TIMEOUT_S} if timed else {}
    return sqlalchemy.create_engine(tracking_uri, pool_pre_ping=True, connect_args=connect_args)
