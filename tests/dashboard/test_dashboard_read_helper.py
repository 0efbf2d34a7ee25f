"""The read helper process against a real MLflow store: same series as an in-process read."""

from __future__ import annotations

import os
import signal

import mlflow
import numpy as np
import pytest

from dashboard.data.read_helper import ReadHelper
from lrwatch import keys
from lrwatch.errors import InputError
from lrwatch.sources.mlflow_store import read_histories
from tests.dashboard.conftest import log_points, train_sweep_one

READY_S = 30  # a fresh interpreter importing numpy on a busy 2-core machine


@pytest.fixture
def helper():
    started = ReadHelper()
    started.start()
    assert started.wait_until_ready(READY_S)
    yield started
    started.stop()


@pytest.fixture
def diverged_run_id(tracking_uri) -> str:
    """A real run at 30x its best rate (loss ends NaN/inf), its first 50 steps logged twice."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    run = train_sweep_one(3.0, steps=150)
    created = client.create_run(client.create_experiment("helper-test"), run_name="diverged")
    run_id, stamp = created.info.run_id, created.info.start_time
    log_points(client, run_id, run, start=0, stop=None, timestamp=stamp)
    log_points(client, run_id, run, start=0, stop=50, timestamp=stamp + 10_000)  # repeats
    return run_id


def _assert_same(found: dict, expected: dict) -> None:
    assert found.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(found[key].steps, expected[key].steps)
        np.testing.assert_array_equal(found[key].values, expected[key].values)


def test_helper_reads_what_this_process_reads(tracking_uri, diverged_run_id, helper):
    expected = read_histories(tracking_uri, diverged_run_id, [keys.LOSS, keys.LR])
    assert not np.isfinite(expected[keys.LOSS].values).all()  # the run did diverge
    found = helper.read(tracking_uri, diverged_run_id, [keys.LOSS, keys.LR])
    _assert_same(found, expected)
    assert helper.handed_over == 1  # the LR came from the helper


def test_refreshes_and_single_keys_are_read_in_this_process(tracking_uri, diverged_run_id, helper):
    newer = helper.read(tracking_uri, diverged_run_id, [keys.LOSS, keys.LR], after_step=100)
    _assert_same(newer, read_histories(tracking_uri, diverged_run_id, [keys.LOSS, keys.LR],
                                       after_step=100))  # fmt: skip
    helper.read(tracking_uri, diverged_run_id, [keys.LOSS])
    assert helper.handed_over == 0


def test_a_dead_helper_costs_only_speed(tracking_uri, diverged_run_id, helper):
    os.kill(helper.pid, signal.SIGKILL)  # the helper this test started
    expected = read_histories(tracking_uri, diverged_run_id, [keys.LOSS, keys.LR])
    for _ in range(2):  # the first read finds it dead, the second no longer asks it
        _assert_same(helper.read(tracking_uri, diverged_run_id, [keys.LOSS, keys.LR]), expected)
    assert helper.handed_over == 0


def test_errors_are_raised_here_as_without_a_helper(tmp_path, helper):
    missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'mlflow.db'}"
    with pytest.raises(InputError):
        helper.read(missing, "0" * 32, [keys.LOSS, keys.LR])
    assert helper.handed_over == 0


def test_a_stopped_helper_has_exited():
    started = ReadHelper()
    started.start()
    pid = started.pid
    started.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # signal 0 only asks whether the process exists


def test_the_served_dashboard_shares_cold_reads_with_its_helper(tracking_uri, diverged_run_id):
    from dashboard import views
    from dashboard.app import create_app
    from dashboard.data.read_helper import shared_helper

    app = create_app(tracking_uri)  # starts the process's shared helper
    assert shared_helper().wait_until_ready(READY_S)
    before = shared_helper().handed_over
    figure = views.run_view(app.lrwatch_data, diverged_run_id, 0.6, [], None, refresh=False)[0]
    assert shared_helper().handed_over == before + 1  # the LR of this cold read
    assert len(figure.data) >= 3  # raw loss, smoothed loss, LR
