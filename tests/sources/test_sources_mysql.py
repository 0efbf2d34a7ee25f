"""A MySQL-backed MLflow store, for real (MariaDB): the other database a team's store sits on.

lrwatch reads such a database directly (PyMySQL, read-only ``SELECT``s with backtick-quoted
identifiers: ``key`` is reserved in MySQL) instead of through MLflow's client, and the logger
writes to it through MLflow's own ``log_batch`` (its direct SQL path knows SQLite and PostgreSQL
only). These tests check both on a real server.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrwatch.sources import load_run
from lrwatch.tasks import TrainConfig
from tests.sources.test_cli_analyze import _cli
from tests.sources.test_sources_mlflow import (
    assert_analysed_without_importing_mlflow,
    assert_direct_reads_equal_mlflows_own,
    assert_read_as_its_client_reads_it,
    log_sweep,
)
from tests.tracking.tracking_loops import train_watched

pytestmark = [pytest.mark.mysql]


def test_direct_reads_of_a_mysql_store_equal_mlflows_own(mysql_uri):
    assert_direct_reads_equal_mlflows_own(mysql_uri)


def test_a_select_only_login_reads_a_mysql_store_as_its_client_does(
    mysql_server, mysql_uri, healthy_run, diverging_run, monkeypatch
):
    """Runs and experiments from the tables, without importing MLflow, through a login that
    may only SELECT, and equal to what MLflow's client reads."""
    ids = log_sweep(mysql_uri, healthy_run, diverging_run)
    assert_analysed_without_importing_mlflow(mysql_server.reader_uri(mysql_uri), ids)
    assert_read_as_its_client_reads_it(mysql_uri, ids, monkeypatch)


@pytest.mark.slow
def test_a_run_the_logger_wrote_to_mysql_analyses_as_it_trained(mysql_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("LRWATCH_SPOOL_DIR", str(tmp_path / "spool"))
    # A real diverging run (4x the regression MLP's best rate: it climbs, then turns NaN).
    config = TrainConfig(task="mlp_regression", lr=0.2, steps=400, seed=0)
    watcher, losses, lrs = train_watched(
        config, {"experiment": "team", "run_name": "too-fast", "tracking_uri": mysql_uri}
    )
    run = load_run(watcher.run_id, tracking_uri=mysql_uri)
    assert run.name == "too-fast"
    np.testing.assert_allclose(run.loss.values, losses, rtol=1e-6)
    np.testing.assert_allclose(run.lr.values, lrs, rtol=1e-6)
    done = _cli(watcher.run_id, "--tracking-uri", mysql_uri, "--format", "json")
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)["runs"]
    assert "divergence" in {finding["kind"] for finding in report["findings"]}
    assert report["recommendation"]["action"] == "decrease_lr"
