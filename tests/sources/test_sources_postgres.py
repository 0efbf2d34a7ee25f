"""A PostgreSQL-backed MLflow store, for real: the store a team shares (README, shared server).

lrwatch reads such a database directly (SQLAlchemy, read-only ``SELECT``) instead of through
``MlflowClient.get_metric_history``; these tests check the two agree on a real PostgreSQL server,
and that a run logged by the logger through an ``mlflow server`` on that database analyses the
same whether ``lrwatch analyze`` asks the server or the database.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrwatch.sources import load_run
from lrwatch.sources import mlflow_store as store
from lrwatch.tasks import TrainConfig
from tests.net import free_port
from tests.sources.conftest import log_run_to_mlflow, log_unstepped
from tests.sources.test_cli_analyze import _cli
from tests.sources.test_sources_mlflow import (
    assert_analysed_without_importing_mlflow,
    assert_direct_reads_equal_mlflows_own,
    assert_read_as_its_client_reads_it,
    follow_a_run_counted_per_epoch,
    log_sweep,
)
from tests.tracking.conftest import MlflowServer
from tests.tracking.tracking_loops import train_watched

pytestmark = [pytest.mark.postgres]


def test_a_select_only_login_is_enough_to_analyse_a_postgres_store(
    postgres_cluster, postgres_uri, healthy_run
):
    run_id = log_run_to_mlflow(postgres_uri, healthy_run)
    reader_uri = postgres_cluster.reader_uri(postgres_uri)
    done = _cli(run_id, "--tracking-uri", reader_uri, "--format", "json")
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)["runs"]
    assert report["run"] == run_id
    assert not any(f["severity"] != "info" for f in report["findings"])
    run = load_run(run_id, tracking_uri=reader_uri)
    np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values)


def test_runs_and_experiments_of_a_postgres_store_are_read_as_its_client_reads_them(
    postgres_cluster, postgres_uri, healthy_run, diverging_run, monkeypatch
):
    """From its tables, without importing MLflow (3 s of the command), through a login that
    may only SELECT: the analysis of a run or an experiment never needs MLflow's client."""
    ids = log_sweep(postgres_uri, healthy_run, diverging_run)
    assert_analysed_without_importing_mlflow(postgres_cluster.reader_uri(postgres_uri), ids)
    assert_read_as_its_client_reads_it(postgres_uri, ids, monkeypatch)


def test_direct_reads_of_a_postgres_store_equal_mlflows_own(postgres_uri):
    assert_direct_reads_equal_mlflows_own(postgres_uri)


def test_a_metric_logged_without_steps_reads_alike_from_postgres(postgres_uri, healthy_run):
    from mlflow import MlflowClient

    client = MlflowClient(postgres_uri)
    run_id = client.create_run(client.create_experiment("unstepped")).info.run_id
    log_unstepped(postgres_uri, run_id, healthy_run.loss.values, [0.1, 0.05, 0.025])
    direct = store.read_histories(postgres_uri, run_id)
    assert direct["lr"].steps.tolist() == [0, 100, 200]
    np.testing.assert_array_equal(direct["loss"].values, healthy_run.loss.values)
    assert direct["loss"].steps.tolist() == list(range(healthy_run.num_steps))
    newer = store.read_histories(postgres_uri, run_id, ["loss", "lr"], after_step=149)
    assert newer["loss"].steps[0] == 150 and newer["lr"].steps.tolist() == [200]


def test_a_live_run_counted_per_epoch_is_followed_on_postgres(postgres_uri):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(postgres_uri)
    try:
        mlflow.set_experiment("counted-per-epoch")
        follow_a_run_counted_per_epoch(postgres_uri)
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.server
@pytest.mark.slow
def test_a_run_logged_through_a_postgres_backed_server_analyses_the_same_both_ways(
    postgres_uri, tmp_path, monkeypatch
):
    monkeypatch.setenv("LRWATCH_SPOOL_DIR", str(tmp_path / "spool"))
    server = MlflowServer(postgres_uri, free_port(), tmp_path)
    server.start()
    try:
        # A real diverging run (4x the regression MLP's best rate: it climbs, then turns NaN).
        config = TrainConfig(task="mlp_regression", lr=0.2, steps=400, seed=0)
        watcher, losses, _ = train_watched(
            config, {"experiment": "team", "run_name": "too-fast", "tracking_uri": server.uri}
        )
        from_database = load_run(watcher.run_id, tracking_uri=postgres_uri)
        np.testing.assert_allclose(from_database.loss.values, losses, rtol=1e-6)
        assert from_database.name == "too-fast"
        reports = {}
        for uri in (server.uri, postgres_uri):
            done = _cli(watcher.run_id, "--tracking-uri", uri, "--format", "json")
            assert done.returncode == 0, done.stderr
            (reports[uri],) = json.loads(done.stdout)["runs"]
    finally:
        server.stop()
    over_http, direct = reports[server.uri], reports[postgres_uri]
    assert over_http["findings"] == direct["findings"]
    assert over_http["recommendation"] == direct["recommendation"]
    kinds = {finding["kind"] for finding in direct["findings"]}
    assert "divergence" in kinds
    assert direct["recommendation"]["action"] == "decrease_lr"
