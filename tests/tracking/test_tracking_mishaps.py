"""What can go wrong beside the training loop: the store refuses one metric name or the whole
run (deleted while training, or removed for good), the disk refuses the spool (full, or a
read-only home), a forked child process exits.

Each used to print a warning at every flush, stop the script, or end the run early; the name
and the spool write also lost the loss and LR rows that went with them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

import lrwatch
from lrwatch import keys
from lrwatch.tasks import TrainConfig
from tests.tracking.conftest import steps_of
from tests.tracking.tracking_loops import ManualLoop

CONFIG = TrainConfig(task="mlp_regression", lr=0.05, steps=200)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.server)])
def store_uri(request, tracking_uri):
    """The SQLite store directly, or an ``mlflow server`` in front of one."""
    if request.param == "sqlite":
        return tracking_uri
    return request.getfixturevalue("mlflow_server").uri


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lrwatch"]


def lrwatch_import(spool: Path, store_uri: str) -> subprocess.CompletedProcess:
    """``lrwatch import SPOOL --tracking-uri STORE`` in a fresh process, as a user runs it."""
    command = [sys.executable, "-m", "lrwatch.cli", "import", str(spool)]
    return subprocess.run(
        [*command, "--tracking-uri", store_uri], capture_output=True, text=True, timeout=120
    )


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


def test_a_store_slower_than_the_loop_is_not_called_unreachable(tracking_uri, caplog, monkeypatch):
    # A burst of steps (a fast loop with many param groups) overflows the in-memory outbox while
    # the store is up: the backlog goes the spool way, and the warning says why.
    monkeypatch.setattr("lrwatch.tracking.writer.MAX_OUTBOX_ROWS", 200)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        w = lrwatch.watch(optimizer, tracking_uri=tracking_uri, flush_interval=0.5, analyze=False)
        for _ in range(2000):
            optimizer.step()
            w.step(1.0)
        assert w.close(timeout_s=60)
    assert "tracking store slower than the training loop: over 200 values wait" in caplog.text
    assert "unreachable" not in caplog.text
    assert steps_of(tracking_uri, w.run_id, keys.LOSS) == list(range(2000))


def test_a_loop_that_keeps_outrunning_the_store_replays_only_its_backlog(
    tracking_uri, spool_dir, caplog, monkeypatch
):
    """A loop faster than the store overflows the outbox again after every catch-up. Each
    replay read the spool from its first line (13,800 steps a second for 50 s: 5 replays of a
    file growing to 61 MB, the last one outlasting close()'s 10 s, the run left RUNNING), and
    each overflow warned again."""
    from lrwatch.tracking import writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_OUTBOX_ROWS", 200)
    replayed: list[int] = []
    real_chunks = writer_module.iter_metric_chunks

    def counted_chunks(*args, **kwargs):
        for chunk in real_chunks(*args, **kwargs):
            replayed[-1] += len(chunk)
            yield chunk

    def counted_replay(self, *args, _real=writer_module.Writer._replay):
        replayed.append(0)
        return _real(self, *args)

    monkeypatch.setattr(writer_module, "iter_metric_chunks", counted_chunks)
    monkeypatch.setattr(writer_module.Writer, "_replay", counted_replay)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    steps = 6000
    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        w = lrwatch.watch(optimizer, tracking_uri=tracking_uri, flush_interval=0.02, analyze=False)
        for step in range(steps):
            optimizer.step()
            w.step(1.0)
            if step % 300 == 0:
                time.sleep(0.03)  # flushes in between: overflow, catch up, overflow again
        assert w.close(timeout_s=60)
    assert len(replayed) >= 3, replayed  # it did keep outrunning the store
    # Each replay reads its backlog, not the file: all of them together, about the rows logged.
    assert sum(replayed) <= 2 * 2 * steps, replayed
    overflows = [m for m in _messages(caplog) if "slower than the training loop" in m]
    assert len(overflows) == 1
    assert steps_of(tracking_uri, w.run_id, keys.LOSS) == list(range(steps))
    assert mlflow.MlflowClient(tracking_uri).get_run(w.run_id).info.status == "FINISHED"


def test_a_param_the_store_refuses_costs_only_itself(store_uri, spool_dir, caplog):
    # A name MLflow does not allow, and - on a resumed run - a value other than the one the run
    # holds: each used to take every param of the request with it (the optimizer's too).
    loop = ManualLoop(CONFIG)
    client = mlflow.MlflowClient(store_uri)
    run_id = client.create_run(client.create_experiment("params")).info.run_id
    client.log_param(run_id, "batch_size", "32")
    extra = {"bad name!": 1, "batch_size": 64, "config": "x" * 10_000}
    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        w = lrwatch.watch(
            loop.optimizer, tracking_uri=store_uri, run_id=run_id, params=extra,
            flush_interval=0.05, analyze=False,
        )  # fmt: skip
        for _ in loop.steps(w):
            pass
        assert w.close(timeout_s=30)
    params = client.get_run(run_id).data.params
    assert params["optimizer"] == "SGD" and params["base_lr"] == str(CONFIG.lr)
    assert params["batch_size"] == "32" and params["config"].startswith("xxx")
    assert "bad name!" not in params
    refused = [m for m in _messages(caplog) if "refused the param" in m]
    assert len(refused) == 2 and "'bad name!'" in refused[0] + refused[1]
    assert not [m for m in _messages(caplog) if "dropped" in m]
    assert steps_of(store_uri, run_id, keys.LOSS) == list(range(CONFIG.steps))


def _train_losing_the_run_at_step_50(store_uri: str, caplog, lose):
    """A real run logged to ``store_uri``; ``lose(run_id)`` takes the run from the store at step
    50. The watcher, closed: it reports nothing delivered, without retrying until its timeout."""
    loop = ManualLoop(CONFIG)
    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        # analyze=False: live findings are logged as warnings too, and would be counted.
        w = lrwatch.watch(
            loop.optimizer, tracking_uri=store_uri, flush_interval=0.05, analyze=False
        )
        for step in loop.steps(w):
            if step == 50:
                lose(w.run_id)
            time.sleep(0.002)
        started = time.monotonic()
        assert not w.close(timeout_s=30)
        assert time.monotonic() - started < 5  # nothing retried until the timeout
    return w


def test_a_run_deleted_mid_run_keeps_every_step_for_import_after_restore(
    store_uri, spool_dir, caplog, monkeypatch
):
    monkeypatch.setenv("LRWATCH_STRICT", "0")  # strict mode would raise the refusal at close
    client = mlflow.MlflowClient(store_uri)
    # A teammate cleaning up the experiment.
    w = _train_losing_the_run_at_step_50(store_uri, caplog, client.delete_run)
    lrwatch_lines = _messages(caplog)
    assert len(lrwatch_lines) == 1, lrwatch_lines
    assert "no longer takes data for this run" in lrwatch_lines[0]
    assert f"mlflow runs restore --run-id {w.run_id}" in lrwatch_lines[0]
    (spool,) = spool_dir.iterdir()
    refused = lrwatch_import(spool, store_uri)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        f"lrwatch: error: run {w.run_id} was deleted in {store_uri}: restore it "
        f"(mlflow runs restore --run-id {w.run_id}), then import again"
    )
    client.restore_run(w.run_id)
    assert lrwatch_import(spool, store_uri).returncode == 0
    for key in (keys.LOSS, keys.LR):
        assert steps_of(store_uri, w.run_id, key) == list(range(CONFIG.steps))


def test_a_run_removed_for_good_mid_run_is_one_warning_and_import_makes_a_new_run(
    store_uri, request, spool_dir, caplog, monkeypatch
):
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    database = request.getfixturevalue("tracking_uri")
    if store_uri != database:
        database = request.getfixturevalue("mlflow_server").backend_store_uri
    # What `mlflow gc` does to a deleted run, in one step (between the two, the logger would
    # meet the deleted run of the test above).
    store = mlflow.MlflowClient(database)._tracking_client.store
    w = _train_losing_the_run_at_step_50(store_uri, caplog, store._hard_delete_run)
    (spool,) = spool_dir.iterdir()
    # Before: "the tracking store refused metrics; dropped: Run with id=... not found" at every
    # flush for the rest of the run.
    (line,) = _messages(caplog)
    assert line.startswith("lrwatch: the tracking store no longer has this run (")
    # MLflow's words (a server prefixes its code).
    assert f"Run with id={w.run_id} not found" in line
    assert line.endswith(
        f"; every step stays in {spool} - upload it to a new run with: lrwatch import {spool}"
    )
    imported = lrwatch_import(spool, store_uri)
    assert imported.returncode == 0, imported.stderr
    (run,) = mlflow.MlflowClient(store_uri).search_runs(["0"])
    assert run.info.run_id != w.run_id
    for key in (keys.LOSS, keys.LR):
        assert steps_of(store_uri, run.info.run_id, key) == list(range(CONFIG.steps))


def test_a_run_removed_between_the_stores_check_and_its_insert_is_told_as_removed(
    tracking_uri, spool_dir, caplog, monkeypatch
):
    # `mlflow gc` landing between MLflow's "is the run active" check and its insert: the insert
    # fails the run's foreign key and the store answers BAD_REQUEST ("FOREIGN KEY constraint
    # failed"), as a server did in CI. Before: "the tracking store refused metrics; dropped: ..."
    # first, a second warning after it, and "dropped" although the spool kept every step.
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    monkeypatch.setenv("LRWATCH_STRICT", "0")
    monkeypatch.setenv("LRWATCH_DIRECT_SQL", "0")  # every metric through MLflow's log_batch
    removals = []
    check_run_is_active = SqlAlchemyStore._check_run_is_active

    def check_then_lose_the_run(store, run):
        check_run_is_active(store, run)
        # Only the check right before the metrics' insert: after the one at log_batch's top,
        # the store's second look would find the run gone (the case of the test above).
        if removals == ["armed"] and sys._getframe(1).f_code.co_name == "_log_metrics_once":
            store._hard_delete_run(run.run_uuid)
            removals[0] = "done"

    monkeypatch.setattr(SqlAlchemyStore, "_check_run_is_active", check_then_lose_the_run)
    w = _train_losing_the_run_at_step_50(
        tracking_uri, caplog, lambda run_id: removals.append("armed")
    )
    assert removals == ["done"]  # the race happened
    (spool,) = spool_dir.iterdir()
    (line,) = _messages(caplog)
    assert line.startswith("lrwatch: the tracking store no longer has this run (")
    assert f"Run with id={w.run_id} not found" in line
    assert line.endswith(f"upload it to a new run with: lrwatch import {spool}")
    assert lrwatch_import(spool, tracking_uri).returncode == 0
    (run,) = mlflow.MlflowClient(tracking_uri).search_runs(["0"])
    assert steps_of(tracking_uri, run.info.run_id, keys.LOSS) == list(range(CONFIG.steps))


@pytest.mark.server
def test_a_spool_write_failing_mid_run_costs_no_step_while_the_server_is_up(
    mlflow_server, spool_dir
):
    # Before, the rows of the flush whose spool write failed were lost, and so were those of every
    # flush after it, with a warning each time.
    command = [sys.executable, "-m", "tests.tracking.full_disk_child", mlflow_server.uri]
    done = subprocess.run(
        [*command, str(CONFIG.steps), "6000"],  # the spool grows to ~16 kB
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), LRWATCH_STRICT="0"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "closed True"
    warned = [line for line in done.stderr.splitlines() if line.startswith("lrwatch:")]
    assert len(warned) == 1 and "cannot write the spool" in warned[0], warned
    assert "File too large" in warned[0]  # the limit was reached: the test tested something
    client = mlflow.MlflowClient(mlflow_server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("full").experiment_id])
    for key in (keys.LOSS, keys.LR):
        assert steps_of(mlflow_server.uri, run.info.run_id, key) == list(range(CONFIG.steps))


def test_an_unwritable_spool_folder_falls_back_then_to_memory(
    tracking_uri, tmp_path, monkeypatch, caplog
):
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LRWATCH_SPOOL_DIR", str(blocker / "spool"))  # cannot be created
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    for fallback_works in (True, False):
        if not fallback_works:
            monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))
        caplog.clear()
        loop = ManualLoop(CONFIG)
        with caplog.at_level(logging.WARNING, logger="lrwatch"):
            w = lrwatch.watch(loop.optimizer, tracking_uri=tracking_uri, flush_interval=0.05)
            for _ in loop.steps(w):
                pass
            assert w.close(timeout_s=30)
        assert steps_of(tracking_uri, w.run_id, keys.LOSS) == list(range(CONFIG.steps))
        (warned,) = _messages(caplog)
        if fallback_works:
            assert f"spooling to {tmp_path / 'tmp' / 'lrwatch-spool'} instead" in warned
        else:
            assert w.spool_path is None and "logging from memory only" in warned


def test_import_counts_as_sent_only_what_landed_when_a_name_is_refused(
    tracking_uri, spool_dir, capsys, caplog
):
    from lrwatch.cli import main
    from tests.net import free_port

    loop = ManualLoop(CONFIG)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every step stays in the spool
    w = lrwatch.watch(loop.optimizer, tracking_uri=dead, flush_interval=0.05, analyze=False)
    for step in loop.steps(w):
        if step % 10 == 0:
            w.log(**{"val acc%": 0.5})
    assert not w.close(timeout_s=0.5)
    (spool,) = spool_dir.iterdir()
    capsys.readouterr()
    caplog.clear()
    assert main(["import", str(spool), "--tracking-uri", tracking_uri]) == 0
    assert f"{2 * CONFIG.steps} values sent, 0 already in the store" in capsys.readouterr().out
    assert sum("refused the metric name 'val acc%'" in m for m in _messages(caplog)) == 1


def test_a_forked_child_that_exits_leaves_the_parents_run_and_spool_alone(tracking_uri):
    done = subprocess.run(
        [sys.executable, "-m", "tests.tracking.forking_script", tracking_uri],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [
        "child-exited",
        "RUNNING",
        "True",
    ]  # was FAILED False (the `with` block)
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fork").experiment_id])
    assert run.info.status == "FINISHED"
    assert steps_of(tracking_uri, run.info.run_id, keys.LOSS) == list(range(200))
