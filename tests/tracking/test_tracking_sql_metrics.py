"""Direct SQL metric writes store exactly what MLflow's own log_batch stores (SQLite, PostgreSQL).

The sink writes a SQL store's metric rows with plain SQL once MLflow has accepted each name
(``lrwatch/tracking/sql_metrics.py``: MLflow's ORM held the GIL ~65 us per metric). The same
batches go to two stores, one with the direct path switched off; every row of ``metrics`` and
``latest_metrics`` must match, and so must what MLflow's client reads back.
"""

from __future__ import annotations

import math
import shutil

import mlflow
import pytest
import sqlalchemy

from lrwatch.tracking.sink import ENV_DIRECT_SQL, MlflowSink, RunNotActive

# Batches as the writer sends them: (key, value, timestamp_ms, step).
BATCHES = [
    [("loss", 2.0, 1000, 0), ("lr", 0.1, 1000, 0), ("loss", 1.5, 1010, 1), ("lr", 0.1, 1010, 1)],
    [("loss", 1.2, 1020, 2), ("lr", 0.1, 1020, 2), ("loss", float("nan"), 1030, 3)],
    [("loss", float("inf"), 1040, 4), ("loss", -math.inf, 1050, 5), ("lr", 0.05, 1050, 5)],
    # A resend after an uncertain failure (identical rows), an older step arriving late, the
    # same step again later, and a tie broken by the value.
    [("loss", 1.2, 1020, 2), ("lr", 0.1, 1020, 2), ("loss", 9.0, 1060, 1)],
    [("loss", 0.7, 1070, 5), ("lr", 0.05, 1070, 5), ("lr", 0.04, 1070, 5), ("lr", 0.06, 1070, 5)],
    # More rows than one SQLite statement takes (150), and not a multiple of it.
    [
        row
        for i in range(7, 407)
        for row in (("loss", 1 / i, 1000 + 10 * i, i), ("lr", 0.01, 1075, i))
    ],
    [("grad_norm", 3.0, 9000, 407), ("loss", 0.6, 9000, 407)],
]


def _write_all(uri: str, monkeypatch, *, direct: bool) -> tuple[str, MlflowSink]:
    monkeypatch.setenv(ENV_DIRECT_SQL, "1" if direct else "0")
    sink = MlflowSink(uri)
    run_id = sink.create_run("sql", None, {})
    for batch in BATCHES:
        sink.log_metrics(run_id, batch)
    return run_id, sink


def _tables(uri: str, run_id: str) -> dict[str, list[tuple]]:
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as connection:
            return {
                table: sorted(
                    tuple(row)
                    for row in connection.execute(
                        sqlalchemy.text(
                            f"SELECT key, value, timestamp, step, is_nan FROM {table} "
                            "WHERE run_uuid = :run"
                        ),
                        {"run": run_id},
                    )
                )
                for table in ("metrics", "latest_metrics")
            }
    finally:
        engine.dispose()


@pytest.fixture
def two_sqlite_stores(tmp_path, _migrated_mlflow_db):
    uris = []
    for name in ("direct", "log_batch"):
        shutil.copy(_migrated_mlflow_db, tmp_path / f"{name}.db")
        uris.append(f"sqlite:///{tmp_path / name}.db")
    return uris


def _check_same(direct_uri, batch_uri, monkeypatch):
    direct_run, direct_sink = _write_all(direct_uri, monkeypatch, direct=True)
    batch_run, batch_sink = _write_all(batch_uri, monkeypatch, direct=False)
    # MLflow's log_batch validates each name with its first row alone (loss, lr, grad_norm);
    # every row then goes direct, those first rows again among them (skipped as identical).
    assert direct_sink.log_batch_rows == 3
    assert direct_sink.direct_sql_rows == sum(map(len, BATCHES))
    assert batch_sink.direct_sql_rows == 0
    assert batch_sink.log_batch_rows == sum(map(len, BATCHES))
    assert _tables(direct_uri, direct_run) == _tables(batch_uri, batch_run)
    direct, batch = mlflow.MlflowClient(direct_uri), mlflow.MlflowClient(batch_uri)
    assert direct.get_run(direct_run).data.metrics == batch.get_run(batch_run).data.metrics
    for key in ("loss", "lr", "grad_norm"):  # repr: NaN equals NaN
        got = [
            (m.step, m.timestamp, repr(m.value)) for m in direct.get_metric_history(direct_run, key)
        ]
        want = [
            (m.step, m.timestamp, repr(m.value)) for m in batch.get_metric_history(batch_run, key)
        ]
        assert sorted(got) == sorted(want), key


def test_direct_writes_store_what_log_batch_stores_sqlite(two_sqlite_stores, monkeypatch):
    _check_same(*two_sqlite_stores, monkeypatch)


@pytest.mark.postgres
def test_direct_writes_store_what_log_batch_stores_postgres(postgres_cluster, monkeypatch):
    direct_uri = postgres_cluster.create_database("direct_writes")
    batch_uri = postgres_cluster.create_database("log_batch_writes")
    _check_same(direct_uri, batch_uri, monkeypatch)


def test_a_deleted_run_takes_no_direct_write(tracking_uri, monkeypatch):
    run_id, sink = _write_all(tracking_uri, monkeypatch, direct=True)
    mlflow.MlflowClient(tracking_uri).delete_run(run_id)
    with pytest.raises(RunNotActive):
        sink.log_metrics(run_id, [("loss", 0.5, 20_000, 10_000)])
    landed = mlflow.MlflowClient(tracking_uri).get_metric_history(run_id, "loss")
    assert max(m.step for m in landed) == max(row[3] for batch in BATCHES for row in batch)


@pytest.mark.server
def test_metrics_sent_to_a_tracking_server_land_as_mlflows_own_client_sends_them(mlflow_server):
    # The sink writes a runs/log-batch body itself (MLflow's proto JSON encoder cost ~16 us of
    # Python per metric): NaN, +/-inf, float round trips and the ordering of latest_metrics
    # must come out as they do from MlflowClient.log_batch through the same server.
    from mlflow.entities import Metric

    extra = [("tiny", 1e-300, 1000, 0), ("third", 0.1 + 0.2, 1000, 0)]  # float round trips
    sink = MlflowSink(mlflow_server.uri)
    ours = sink.create_run("rest", None, {})
    for batch in BATCHES:
        sink.log_metrics(ours, batch + extra)
    client = mlflow.MlflowClient(mlflow_server.uri)
    theirs = client.create_run(client.get_experiment_by_name("rest").experiment_id).info.run_id
    for batch in BATCHES:
        client.log_batch(theirs, metrics=[Metric(k, v, ts, s) for k, v, ts, s in batch + extra])
    assert sink.direct_sql_rows == 0
    assert _tables(mlflow_server.backend_store_uri, ours) == _tables(
        mlflow_server.backend_store_uri, theirs
    )
    assert client.get_run(ours).data.metrics == client.get_run(theirs).data.metrics
    nan_rows = [row for row in _tables(mlflow_server.backend_store_uri, ours)["metrics"] if row[4]]
    assert len(nan_rows) == 1
