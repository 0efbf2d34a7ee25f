"""MLflow's tables read straight from a SQL store (``sqlite``, ``postgresql``, ``mysql``,
``mssql`` URIs) with read-only ``SELECT``s, without importing MLflow.

``MlflowClient.get_metric_history`` builds one Python ``Metric`` object per point (~3.4 s per
100k points, ~40 s per 1M on SQLite), and importing MLflow was most of the 3.3 s that
``lrwatch analyze RUN_ID`` took on SQLite (0.35 s without it). Here a metric's history comes
back as numpy arrays (:func:`histories`), a run's params, tags and metric names as
:class:`RunMeta` (:func:`run_meta`), and an experiment's runs as ids
(:func:`experiment_run_ids`). Nothing is written; SQLite files are opened read-only.
:mod:`lrwatch.sources.mlflow_store` decides what to read, and falls back to the client for
anything not found here.
"""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from pathlib import Path

import numpy as np

from lrwatch.errors import InputError
from lrwatch.run import Series
from lrwatch.store import display_uri, one_per_uri

# URI schemes whose store is a SQL database holding MLflow's ``metrics`` table.
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# Seconds a reader waits for SQLite's lock while a writer (the logger) holds it.
_SQLITE_BUSY_TIMEOUT_S = 10.0
# Seconds a connection attempt to a database store may take (a host that drops packets would
# otherwise hang for the operating system's TCP timeout, minutes).
_CONNECT_TIMEOUT_S = 10

# The SELECTs, with identifiers quoted ({q}"key" is reserved in MySQL) and ``?``-style parameters
# rewritten per driver by :func:`select`. No ORDER BY: sorting 1M rows in SQL costs more than the
# whole read; numpy sorts only when a step repeats (rare), by (step, timestamp, value) like
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


def is_sql_store(tracking_uri: str) -> bool:
    """True when ``tracking_uri`` names a database MLflow's SQL store uses (read directly)."""
    return _scheme(tracking_uri) in _SQL_SCHEMES


def _scheme(tracking_uri: str) -> str:
    """The database or protocol of a URI, without its driver: ``postgresql+psycopg:`` -> postgresql."""
    return tracking_uri.split(":", 1)[0].split("+", 1)[0].lower()


@dataclasses.dataclass(frozen=True)
class RunMeta:
    """What :func:`lrwatch.sources.mlflow_store.read_run` takes from MLflow's ``get_run``: all
    but the metric histories."""

    run_id: str
    name: str | None
    status: str
    start_time_ms: int | None
    experiment_id: str
    params: dict[str, str]
    tags: dict[str, str]
    metric_keys: list[str]


def run_meta(tracking_uri: str, run_id: str) -> RunMeta | None:
    """The run straight from a SQL store's tables, as ``get_run`` gives it, without MLflow:
    importing it made `lrwatch analyze RUN_ID` take 3.3 s instead of 0.35 s on SQLite, and its
    ORM took ~10 ms a run (``benchmarks/mlflow_analyze.py``). ``None`` when the run is not there
    or the tables are not MLflow's (an old schema, another database): the client then says
    what is wrong, as before.

    Raises:
        InputError: a database server that does not answer (checked first, so that the client
            does not wait on it a second time).
    """
    check_database_reachable(tracking_uri)
    queries = [_RUN_SQL, _PARAMS_SQL, _TAGS_SQL, _KEYS_SQL]
    try:
        rows, params, tags, keys = select_many(tracking_uri, queries, [run_id])
    except Exception:  # noqa: BLE001 - not MLflow's tables, any driver's error: the client words it
        return None
    if not rows:
        return None
    uuid, name, status, start_time, experiment_id = rows[0]
    metric_keys = sorted(key for (key,) in keys)
    return RunMeta(
        uuid, name, status, start_time, str(experiment_id), dict(params), dict(tags), metric_keys
    )


def experiment_run_ids(
    tracking_uri: str, name_or_id: str, *, by_id: bool = False
) -> list[str] | None:
    """The active runs of an active experiment of a SQL store, oldest first, as ``search_runs``
    lists them, read without importing MLflow (see :func:`run_meta`). ``None`` when the
    experiment is not found, deleted or holds no run, or the tables are not MLflow's: the
    client then says what is wrong, as before.

    Raises:
        InputError: a database server that does not answer.
    """
    check_database_reachable(tracking_uri)
    try:
        found = None if by_id else _first_row(tracking_uri, _EXPERIMENT_SQL, name_or_id)
        if found is None and (by_id or name_or_id.isdigit()):
            found = _first_row(tracking_uri, _EXPERIMENT_BY_ID_SQL, int(name_or_id))
        if found is None or found[1] != "active":
            return None
        rows = select(tracking_uri, _EXPERIMENT_RUNS_SQL, [found[0]])
    except Exception:  # noqa: BLE001 - not MLflow's tables, any driver's error: the client words it
        return None
    return [run_id for (run_id,) in rows] or None


def _first_row(tracking_uri: str, sql: str, value) -> tuple | None:
    return next(iter(select(tracking_uri, sql, [value])), None)


def metric_keys(tracking_uri: str, run_id: str) -> list[str]:
    """The metric keys run ``run_id`` has logged, sorted."""
    return sorted(row[0] for row in select(tracking_uri, _KEYS_SQL, [run_id]))


def histories(
    tracking_uri: str, run_id: str, keys: list[str] | None, after_step: int | None
) -> dict[str, Series]:
    """The raw series of ``keys`` (every metric when None), only the points after
    ``after_step`` when given: sorted by step, not yet cleaned."""
    if keys is None:
        keys = metric_keys(tracking_uri, run_id)
    extra = [] if after_step is None else [int(after_step)]
    if tracking_uri.lower().startswith("sqlite:"):
        with _sqlite_connect(tracking_uri) as conn:
            if _has_index(conn, _SQLITE_INDEX):
                return {key: _sqlite_series(conn, [run_id, key, *extra]) for key in keys}
    sql = _HISTORY_SQL + ("" if after_step is None else _AFTER_STEP_SQL)
    return {key: _rows_to_series(select(tracking_uri, sql, [run_id, key, *extra])) for key in keys}


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


def first_step_count(tracking_uri: str, run_id: str, key: str) -> int | None:
    """How many points metric ``key`` logged at its first step - for a step counted per epoch,
    the epochs begun - from a SQL store (two index look-ups); None for other stores."""
    if not is_sql_store(tracking_uri):
        return None
    return int(select(tracking_uri, _FIRST_STEP_COUNT_SQL, [run_id, key, run_id, key])[0][0])


def logged_at_one_step(tracking_uri: str, run_id: str, key: str) -> bool:
    """Whether every point of metric ``key`` sits at one step (two index look-ups)."""
    row = select(tracking_uri, _STEP_RANGE_SQL, [run_id, key, run_id, key])[0]
    return row[0] is not None and row[0] == row[1]


def rows_in_logging_order(tracking_uri: str, run_id: str, key: str) -> np.ndarray:
    """``(timestamp, step, value)`` rows of one metric in the order they were logged."""
    if tracking_uri.lower().startswith("sqlite:"):
        # SQLite's rowid is the insertion order: it orders points logged in one millisecond.
        with _sqlite_connect(tracking_uri) as conn:
            rows = conn.execute(_IN_ORDER_SQL.format(q='"') + ", rowid", [run_id, key]).fetchall()
    else:  # other databases: within a millisecond, by step
        rows = select(tracking_uri, _IN_ORDER_SQL + ", {q}step{q}", [run_id, key])
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def select_many(tracking_uri: str, queries: list[str], params: list) -> list[list[tuple]]:
    """Several read-only SELECTs with the same parameters, on one connection for SQLite (a
    connection each made reading 200 runs' metadata 0.7 s slower)."""
    if tracking_uri.lower().startswith("sqlite:"):
        with _sqlite_connect(tracking_uri) as conn:
            return [conn.execute(sql.format(q='"'), params).fetchall() for sql in queries]
    return [select(tracking_uri, sql, params) for sql in queries]


def select(tracking_uri: str, sql: str, params: list) -> list[tuple]:
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


def check_database_reachable(tracking_uri: str) -> None:
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


@one_per_uri
def _engine(tracking_uri: str):
    import sqlalchemy

    # PostgreSQL's and MySQL's drivers take connect_timeout; others keep their defaults.
    timed = _scheme(tracking_uri) in ("postgresql", "mysql")
    connect_args = {"connect_timeout": _CONNECT_TIMEOUT_S} if timed else {}
    return sqlalchemy.create_engine(tracking_uri, pool_pre_ping=True, connect_args=connect_args)
