"""The dashboard on a team's PostgreSQL-backed store, through a login that may only SELECT."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from lrwatch.analysis import analyze
from lrwatch.sources.mlflow_store import read_run
from tests.dashboard.conftest import log_run, serve, train_sweep_one
from tests.dashboard.test_dashboard_browser import _open, _severe_console_errors, _wait_for

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def test_the_dashboard_shows_a_postgres_store_to_a_select_only_login(
    postgres_cluster, postgres_uri, browser
):
    client = MlflowClient(postgres_uri)
    experiment_id = client.create_experiment("team")
    run_id = log_run(client, experiment_id, train_sweep_one(0.05), name="shared-run")
    expected = analyze(read_run(postgres_uri, run_id)).recommendation
    with serve(postgres_cluster.reader_uri(postgres_uri)) as (url, _):
        _open(browser, url + "/")
        _wait_for(browser, "#runs-table", text="shared-run")
        _open(browser, f"{url}/run/{run_id}")
        _wait_for(browser, "#recommendation", text=expected.message)
        _wait_for(browser, "#run-graph .js-plotly-plot")
        assert _severe_console_errors(browser) == []
