"""The logger straight into a PostgreSQL store that is down when training starts."""

from __future__ import annotations

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
