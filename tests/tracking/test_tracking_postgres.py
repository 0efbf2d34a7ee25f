"""The logger straight into a PostgreSQL store that is down when training starts, or goes down
while it runs."""

from __future__ import annotations

import logging
import time

import mlflow
import pytest

import lrwatch
from lrwatch import keys
from lrwatch.tasks import TrainConfig
from tests.postgres import PostgresCluster
from tests.tracking.conftest import steps_of
from tests.tracking.tracking_loops import ManualLoop


@pytest.mark.postgres
@pytest.mark.slow
def test_a_postgres_store_down_at_start_costs_buffering_not_the_run(spool_dir, caplog):
    # Before, MlflowClient() connected in lrwatch.watch() itself: MLflow retried the database for
    # ~50 s and then the exception reached the training script.
    cluster = PostgresCluster()  # its port is chosen; nothing listens there yet
    uri = f"postgresql://lrwatch:s3cret@127.0.0.1:{cluster.port}/mlflow"  # trust: any password
    config = TrainConfig(task="mlp_regression", lr=0.05, steps=300)
    loop = ManualLoop(config)
    try:
        started = time.monotonic()
        w = lrwatch.watch(loop.optimizer, tracking_uri=uri, experiment="team", flush_interval=0.1)
        assert time.monotonic() - started < 5  # one refused connection, no retry loop
        for step in loop.steps(w):
            if step == 100:  # the database comes up while training goes on
                cluster.start()
                cluster.create_database("mlflow")
        assert w.close(timeout_s=60)
        assert not list(spool_dir.iterdir())  # everything delivered
        for key in (keys.LOSS, keys.LR):
            assert steps_of(uri, w.run_id, key) == list(range(config.steps))
        assert mlflow.MlflowClient(uri).get_run(w.run_id).info.status == "FINISHED"
    finally:
        cluster.stop()
    assert "postgresql://lrwatch:***@" in caplog.text and "s3cret" not in caplog.text


@pytest.mark.postgres
@pytest.mark.slow
def test_a_postgres_store_down_mid_run_loses_nothing_and_prints_one_line(spool_dir, caplog, capfd):
    # MLflow's SQL store logs each failed query as an ERROR with a ~40-line traceback before it
    # raises; the writer retries with backoff, so the training script's output used to fill
    # with one such traceback per retry for as long as the database was down.
    cluster = PostgresCluster()  # its own: this test stops it, the session's cluster stays up
    config = TrainConfig(task="mlp_regression", lr=0.05, steps=300)
    loop = ManualLoop(config)
    try:
        cluster.start()
        uri = cluster.create_database("mlflow")
        with caplog.at_level(logging.INFO):
            w = lrwatch.watch(
                loop.optimizer, tracking_uri=uri, experiment="team", flush_interval=0.05
            )
            for step in loop.steps(w):
                if step == 100:
                    cluster.pause()  # open connections break, new ones are refused
                if step == 200:
                    cluster.resume()
                time.sleep(0.01)  # a slower "model": the writer tries during the outage
            assert w.close(timeout_s=60)
        for key in (keys.LOSS, keys.LR):
            assert steps_of(uri, w.run_id, key) == list(range(config.steps))
    finally:
        cluster.stop()
    assert not list(spool_dir.iterdir())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("tracking store unavailable" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1
    # MLflow's loggers print through their own handler (they do not reach caplog).
    printed = capfd.readouterr().err
    assert "SQLAlchemy database error" not in printed and "Traceback" not in printed
    assert "sqlalche.me" not in caplog.text  # SQLAlchemy's link is cut from the one line
