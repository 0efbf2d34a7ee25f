"""Metric rows straight into an MLflow SQL store's tables (SQLite, PostgreSQL): the fast path.

MLflow's ``SqlAlchemyStore.log_batch`` spends ~65 us per metric in its ORM (96 ms for 1,500
metrics on SQLite here): Python time, holding the GIL that the training thread needs. On a CUDA
training loop of ~1 ms steps that cost lrwatch's writer 15% of the loop's wall time (H100,
``benchmarks/logger_overhead.py --cuda``). The same rows as two SQL statements took ~14 ms,
7x less (and the training loop's cost fell to 3.5%); on SQLite, now as multi-row statements
given to the driver as SQL text, 8.5 ms, most of it inside SQLite, which releases the GIL.

What MLflow's ``_log_metrics`` does is kept: NaN is stored as value 0 with ``is_nan``, +/-inf as
+/-1.8e308; a row identical to a stored one is skipped (its primary key); ``latest_metrics``
keeps per key the row greatest by (step, timestamp, value); a run that is not active, or no
longer there, takes nothing (:class:`~lrwatch.tracking.sink.RunNotActive`, ``RunNotFound``).
The tables are MLflow's own models, so the columns are those of the installed MLflow. Metric
names are not validated here: the sink sends a name through ``log_batch`` (which validates it)
before it takes this path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

# The dialects whose INSERT ... ON CONFLICT SQLAlchemy can write; others keep log_batch.
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
# MLflow stores +/-inf as the largest finite float (SqlAlchemyStore.sanitize_metric_value).
_FLOAT_MAX = 1.7976931348623157e308


# Rows per multi-row INSERT on SQLite: 150 rows of 6 parameters stay under 999, the lowest
# limit an SQLite build may set (SQLITE_MAX_VARIABLE_NUMBER's default before SQLite 3.32).
SQLITE_ROWS_PER_STATEMENT = 150
# The columns of a metric row, in the order :func:`_metric_row` builds them.
COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")


class SqlMetricWriter:
    """Writes metric rows ``(key, value, timestamp_ms, step)`` of one store, one transaction per
    call. Build it with :meth:`for_store`, which says None where the store is not one it knows."""

    def __init__(self, engine) -> None:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun
        from sqlalchemy import and_, bindparam, or_

        self.engine = engine
        self.runs = SqlRun.__table__
        insert = _dialect_insert(engine.dialect.name)
        columns: dict[str, Any] = {name: bindparam(name) for name in COLUMNS}
        self.insert_rows = insert(SqlMetric.__table__).values(columns).on_conflict_do_nothing()
        upsert = insert(SqlLatestMetric.__table__).values(columns)
        new, old = upsert.excluded, SqlLatestMetric.__table__.c
        newer = or_(
            new.step > old.step,
            and_(
                new.step == old.step,
                or_(
                    new.timestamp > old.timestamp,
                    and_(new.timestamp == old.timestamp, new.value > old.value),
                ),
            ),
        )
        self.upsert_latest = upsert.on_conflict_do_update(
            index_elements=[old.key, old.run_uuid],
            set_={name: new[name] for name in ("value", "timestamp", "step", "is_nan")},
            where=newer,
        )
        # SQLite: each as one multi-row statement per SQLITE_ROWS_PER_STATEMENT rows (see
        # MultiRowInsert). PostgreSQL keeps SQLAlchemy's executemany, which already sends its
        # rows as multi-row INSERTs (psycopg2's own executemany is one round trip a row).
        self._multi_row = None
        if engine.dialect.name == "sqlite":
            self._multi_row = tuple(
                MultiRowInsert(statement, engine.dialect)
                for statement in (self.insert_rows, self.upsert_latest)
            )

    @classmethod
    def for_store(cls, store) -> SqlMetricWriter | None:
        """The writer for an MLflow tracking store object, or None (not a SQL store we know)."""
        engine = getattr(store, "engine", None)
        if engine is None or engine.dialect.name not in SUPPORTED_DIALECTS:
            return None
        try:
            return cls(engine)
        except Exception:  # noqa: BLE001 - another MLflow's models: log_batch it is
            return None

    def write(self, run_id: str, rows: Sequence[tuple]) -> None:
        """Insert ``rows`` and update ``latest_metrics``, or raise (nothing written)."""
        from sqlalchemy import select

        from lrwatch.tracking.sink import RunNotActive, RunNotFound

        values = [_metric_row(run_id, *row) for row in rows]
        latest_by_key: dict[str, tuple] = {}
        for value in values:
            best = latest_by_key.get(value[0])
            if best is None or _order(value) > _order(best):
                latest_by_key[value[0]] = value
        latest = list(latest_by_key.values())
        with self.engine.begin() as connection:
            stage = connection.execute(
                select(self.runs.c.lifecycle_stage).where(self.runs.c.run_uuid == run_id)
            ).scalar()
            if stage is None:
                raise RunNotFound(run_id)
            if stage != "active":
                raise RunNotActive(run_id)
            if self._multi_row is not None:
                for statement, params in zip(self._multi_row, (values, latest)):
                    statement.execute(connection, params)
            else:
                connection.execute(self.insert_rows, [dict(zip(COLUMNS, v)) for v in values])
                connection.execute(self.upsert_latest, [dict(zip(COLUMNS, v)) for v in latest])


def _dialect_insert(name: str):
    """The dialect's ``insert`` (it has ``on_conflict_do_nothing`` / ``..._do_update``)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return sqlite.insert if name == "sqlite" else postgresql.insert


class MultiRowInsert:
    """An INSERT of many rows as one SQLite statement, ``VALUES (?, ...), (?, ...), ...``.

    With ``executemany`` the sqlite3 driver releases the GIL around every row's step and must win
    it back each time; against a thread that releases it often (a training loop does, inside
    every torch op) each win can take many wake-ups. Measured with the sqlite3 module alone,
    beside a Python loop with a tiny torch op every ~25 us: 2,000 rows took ~1 s by
    ``executemany``, 20-100 ms as multi-row statements. The text is SQLAlchemy's own single-row
    statement with its values group repeated.
    """

    def __init__(self, statement, dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        sql = str(compiled)
        head, values, tail = sql.partition(" VALUES ")
        self._group = "(" + ", ".join("?" * len(compiled.positiontup)) + ")"
        if not values or not tail.startswith(self._group):
            raise ValueError(f"not a single-row INSERT with positional parameters: {sql}")
        self._head, self._tail = head + values, tail[len(self._group) :]
        # A row of COLUMNS in the order of the statement's parameters.
        self._order = itemgetter(*(COLUMNS.index(name) for name in compiled.positiontup))
        self._sql_by_rows: dict[int, str] = {}

    def execute(self, connection, rows: Sequence[tuple]) -> None:
        for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
            chunk = rows[start : start + SQLITE_ROWS_PER_STATEMENT]
            connection.exec_driver_sql(
                self._sql(len(chunk)), tuple(v for row in chunk for v in self._order(row))
            )

    def _sql(self, rows: int) -> str:
        sql = self._sql_by_rows.get(rows)
        if sql is None:
            sql = self._sql_by_rows[rows] = (
                self._head + ", ".join([self._group] * rows) + self._tail
            )
        return sql


def _metric_row(run_id: str, key: str, value, timestamp, step) -> tuple:
    value = float(value)
    is_nan = math.isnan(value)
    if is_nan:
        value = 0.0
    elif math.isinf(value):
        value = _FLOAT_MAX if value > 0 else -_FLOAT_MAX
    return key, value, int(timestamp), int(step), is_nan, run_id


def _order(row: tuple) -> tuple:
    return row[3], row[2], row[1]  # step, timestamp, value
