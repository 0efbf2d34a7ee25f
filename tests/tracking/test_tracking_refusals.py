"""What the store refuses mid-run: one metric name, or the whole run (deleted while training).

Both used to print a warning at every flush; the first also dropped the loss and LR rows sent in
the same request as the refused name.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import mlflow
import pytest

import lrwatch
from lrwatch import keys
from lrwatch.tasks import TrainConfig
from tests.tracking.conftest import steps_of
from tests.tracking.tracking_loops import ManualLoop

CONFIG = TrainConfig(task="mlp_regression", lr=0.05, steps=200)


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.server)])
def store_uri(request, tracking_uri):
    """The SQLite store directly, or an ``mlflow server`` in front of one."""
    if request.param == "sqlite":
        return tracking_uri
    return request.getfixturevalue("mlflow_server").uri


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lrwatch"]


def test_a_metric_name_the_store_refuses_costs_only_its_own_values(store_uri, spool_dir, caplog):
    loop = ManualLoop(CONFIG)
    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        w = lrwatch.watch(loop.optimizer, tracking_uri=store_uri, flush_interval=0.05)
        for step in loop.steps(w):
            if step % 10 == 0:  # MLflow allows no "%" in a name; "val_acc" is fine
                w.log(**{"val acc%": 0.5, "val_acc": 0.5})
            time.sleep(0.002)
        assert w.close(timeout_s=30)
    for key in (keys.LOSS, keys.LR):
        assert steps_of(store_uri, w.run_id, key) == list(range(CONFIG.steps))
    assert steps_of(store_uri, w.run_id, "val_acc") == list(range(0, CONFIG.steps, 10))
    refused = [m for m in _messages(caplog) if "refused the metric name 'val acc%'" in m]
    assert len(refused) == 1
    assert not [m for m in _messages(caplog) if "dropped" in m]
    assert not list(spool_dir.iterdir())


def test_a_run_deleted_mid_run_keeps_every_step_for_import_after_restore(
    store_uri, spool_dir, caplog, monkeypatch
):
    monkeypatch.setenv("LRWATCH_STRICT", "0")  # strict mode would raise the refusal at close
    loop = ManualLoop(CONFIG)
    client = mlflow.MlflowClient(store_uri)
    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        w = lrwatch.watch(loop.optimizer, tracking_uri=store_uri, flush_interval=0.05)
        for step in loop.steps(w):
            if step == 50:
                client.delete_run(w.run_id)  # a teammate cleaning up the experiment
            time.sleep(0.002)
        started = time.monotonic()
        assert not w.close(timeout_s=30)
        assert time.monotonic() - started < 5  # nothing retried until the timeout
    lrwatch_lines = _messages(caplog)
    assert len(lrwatch_lines) == 1, lrwatch_lines
    assert "no longer takes data for this run" in lrwatch_lines[0]
    assert f"mlflow runs restore --run-id {w.run_id}" in lrwatch_lines[0]
    (spool,) = spool_dir.iterdir()

    def lrwatch_import() -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "lrwatch.cli", "import", str(spool)]
        return subprocess.run(
            [*command, "--tracking-uri", store_uri], capture_output=True, text=True, timeout=120
        )

    refused = lrwatch_import()
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"lrwatch: error: run {w.run_id} was deleted in {store_uri}: restore it "
        f"(mlflow runs restore --run-id {w.run_id}), then import again"
    )
    client.restore_run(w.run_id)
    assert lrwatch_import().returncode == 0
    for key in (keys.LOSS, keys.LR):
        assert steps_of(store_uri, w.run_id, key) == list(range(CONFIG.steps))
