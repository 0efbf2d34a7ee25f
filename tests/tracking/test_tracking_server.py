"""Reliability against real processes: a tracking server killed mid-run, SIGKILL, SIGTERM."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest

import lrwatch
from lrwatch import keys
from lrwatch.tasks import TrainConfig
from tests.net import free_port
from tests.tracking.conftest import steps_of
from tests.tracking.tracking_loops import ManualLoop

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.server
def test_server_killed_and_restarted_mid_run_loses_and_duplicates_nothing(
    mlflow_server, spool_dir, monkeypatch, caplog
):
    # A small in-memory limit, so this outage also overflows it and the backlog is replayed
    # from the spool file (the path a long outage takes).
    monkeypatch.setattr("lrwatch.tracking.writer.MAX_OUTBOX_ROWS", 200)
    config = TrainConfig(task="mlp_classification", optimizer="adam", lr=1e-3, steps=500)
    loop = ManualLoop(config)
    restarter = threading.Thread(target=mlflow_server.start)
    w = lrwatch.watch(
        loop.optimizer, tracking_uri=mlflow_server.uri, experiment="outage", flush_interval=0.1
    )
    for step in loop.steps(w):
        if step == 100:
            mlflow_server.stop()  # SIGKILL, possibly in the middle of a log_batch request
        if step == 250:
            restarter.start()  # same port, same store; training goes on while it boots
        time.sleep(0.004)
    restarter.join()
    assert w.close(timeout_s=60)
    assert not list(spool_dir.iterdir())
    # The backlog went the spool-replay way, and the warning blames the outage.
    assert "tracking store unreachable for long: over 200 values wait" in caplog.text
    # The outage is one short line with the reason, not ~300 characters of urllib3's retries.
    (outage,) = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    reason = r"(connection refused|connection aborted|no answer)"
    assert re.match(rf"lrwatch: tracking store unavailable \(cannot reach {re.escape(mlflow_server.uri)}: {reason}\); buffering to ", outage), outage  # fmt: skip
    for key in (keys.LOSS, keys.LR):
        assert steps_of(mlflow_server.uri, w.run_id, key) == list(range(config.steps))
    run = mlflow.MlflowClient(mlflow_server.uri).get_run(w.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer"] == "Adam"


@pytest.mark.server
def test_a_server_down_when_training_starts_is_one_short_line_naming_the_spool(
    tracking_uri, spool_dir, caplog, capsys
):
    """It was two lines of ~400 characters each (urllib3's pool and retry details, twice)."""
    down = f"http://127.0.0.1:{free_port()}"
    loop = ManualLoop(TrainConfig(task="mlp_regression", lr=0.05, steps=40))
    with caplog.at_level(logging.DEBUG, logger="lrwatch"):
        w = lrwatch.watch(loop.optimizer, tracking_uri=down, experiment="down", flush_interval=0.05)
        for _ in loop.steps(w):
            time.sleep(0.005)  # the writer retries while the loop runs
        w.close(timeout_s=5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    (spool,) = spool_dir.iterdir()
    assert warnings[0] == (
        f"lrwatch: tracking store unavailable (cannot reach {down}: connection refused); "
        f"buffering to {spool} and retrying"
    )
    assert not [m for m in warnings[1:] if "unavailable" in m or "cannot reach" in m], warnings
    assert f"lrwatch import {spool}" in warnings[-1]
    assert "run " in _import(spool, tracking_uri, capsys)  # and every step is in the spool:
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("down").experiment_id])
    assert steps_of(tracking_uri, run.info.run_id, keys.LOSS) == list(range(40))


def _start_child(uri: str, flush_interval: float, steps: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), LRWATCH_STRICT="0")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tracking.tracking_child", uri, str(flush_interval), str(steps)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _read_until(child: subprocess.Popen, last_step: int) -> tuple[Path, list[tuple[int, float]]]:
    spool, seen = None, []
    for line in child.stdout:
        word, *rest = line.split()
        if word == "spool":
            spool = Path(rest[0])
        elif word == "step":
            seen.append((int(rest[0]), float(rest[1])))
            if seen[-1][0] == last_step:
                break
    return spool, seen


def _import(spool: Path, uri: str, capsys) -> str:
    from lrwatch.cli import main

    capsys.readouterr()
    assert main(["import", str(spool), "--tracking-uri", uri]) == 0
    return capsys.readouterr().out


@pytest.mark.server
@pytest.mark.parametrize("store", ["sqlite", "dead_server"])
def test_sigkill_loses_at_most_the_last_flush_interval(tracking_uri, store, capsys):
    flush_interval = 0.25
    child_uri = tracking_uri if store == "sqlite" else f"http://127.0.0.1:{free_port()}"
    child = _start_child(child_uri, flush_interval, steps=100_000)
    spool, seen = _read_until(child, last_step=600)
    killed_at = time.time()
    child.kill()
    child.wait(timeout=30)
    assert spool is not None and spool.exists()
    first = _import(spool, tracking_uri, capsys)
    again = _import(spool, tracking_uri, capsys)  # idempotent: nothing is sent twice
    assert " 0 values sent" in again, (first, again)
    run = mlflow.MlflowClient(tracking_uri).search_runs(
        [mlflow.MlflowClient(tracking_uri).get_experiment_by_name("kill").experiment_id]
    )[0]
    landed = steps_of(tracking_uri, run.info.run_id, keys.LOSS)
    assert landed == list(range(len(landed)))  # a prefix, each step once
    # Everything older than one flush interval survived (plus 1 s of slack: on 2 shared cores the
    # writer thread can be scheduled late).
    must_have = [step for step, t in seen if t < killed_at - flush_interval - 1.0]
    assert must_have and landed[-1] >= must_have[-1]
    assert run.info.status == "KILLED"


@pytest.mark.server
def test_sigterm_flushes_everything_and_still_terminates(tracking_uri, spool_dir):
    # A flush interval far longer than the run: only the SIGTERM handler can deliver the steps.
    child = _start_child(tracking_uri, 3600, steps=100_000)
    spool, seen = _read_until(child, last_step=200)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == -signal.SIGTERM  # the default action still ran (chained)
    last_printed = seen[-1][0]
    client = mlflow.MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("kill").experiment_id])[0]
    landed = steps_of(tracking_uri, run.info.run_id, keys.LOSS)
    assert landed == list(range(len(landed))) and landed[-1] >= last_printed
    assert run.info.status == "KILLED"
    assert not spool.exists()
