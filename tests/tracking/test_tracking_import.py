"""`lrwatch import`: a spool left by a run whose server never answered, uploaded exactly once."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import mlflow
import numpy as np
import pytest
import torch

import lrwatch
from lrwatch import keys
from lrwatch.cli import main
from lrwatch.tasks import TrainConfig, train
from lrwatch.tracking.writer import filter_landed
from tests.net import free_port
from tests.tracking.conftest import history
from tests.tracking.tracking_loops import train_watched


def test_unreachable_server_keeps_the_spool_and_import_uploads_it_once(tracking_uri, capsys):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    state = {}

    def on_step(step, loss, optimizer):
        if "w" not in state:
            state["w"] = lrwatch.watch(
                optimizer, tracking_uri=dead, experiment="offline", flush_interval=0.05
            )
        state["w"].step(loss)

    run = train(
        TrainConfig(task="autoencoder", optimizer="adam", lr=3e-3, steps=120), on_step=on_step
    )
    w = state["w"]
    assert w.close(timeout_s=0.5) is False  # could not deliver: the spool stays
    assert w.run_id is None and w.spool_path.exists()

    assert main(["import", str(w.spool_path), "--tracking-uri", tracking_uri]) == 0
    assert "120 values sent" not in capsys.readouterr().out  # loss AND lr: 240 values
    assert main(["import", str(w.spool_path), "--tracking-uri", tracking_uri]) == 0
    assert " 0 values sent, 240 already in the store" in capsys.readouterr().out

    client = mlflow.MlflowClient(tracking_uri)
    imported = client.search_runs([client.get_experiment_by_name("offline").experiment_id])
    assert len(imported) == 1
    run_id = imported[0].info.run_id
    points = history(tracking_uri, run_id, keys.LOSS)
    assert [s for s, _ in points] == list(range(120))
    assert [v for _, v in points] == [
        float(torch.tensor(v, dtype=torch.float32)) for v in run.loss.values
    ]
    assert imported[0].info.status == "FINISHED"  # the status the run ended with
    assert imported[0].data.params["optimizer"] == "Adam"


def test_a_resumed_attempt_spooled_offline_imports_every_step_it_logged(tracking_uri, capsys):
    # The first attempt logged steps 0-99, the job restarted from its checkpoint at step 60
    # while the server was down. Its steps 60-99 lie below the run's last step but are newer:
    # the import sends all 100 (it used to skip 60-98 as "already in the store").
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with lrwatch.watch(optimizer, tracking_uri=tracking_uri, experiment="resumed") as first:
        for _ in range(100):
            first.step(1.0)
    dead = f"http://127.0.0.1:{free_port()}"
    with lrwatch.watch(
        optimizer, tracking_uri=dead, run_id=first.run_id, start_step=60, flush_interval=0.05
    ) as second:
        for _ in range(100):
            second.step(2.0)
        assert second.close(timeout_s=0.2) is False
    assert main(["import", str(second.spool_path), "--tracking-uri", tracking_uri]) == 0
    assert " 200 values sent" in capsys.readouterr().out  # loss and LR of all 100 steps
    run = lrwatch.load_run(first.run_id, tracking_uri=tracking_uri)
    assert run.loss.steps.tolist() == list(range(160))
    assert run.loss.values.tolist() == [1.0] * 60 + [2.0] * 100


def test_what_counts_as_landed():
    # (key, value, timestamp_ms, step); the store's latest loss row is step 101 at t=5.
    rows = [("loss", 1.0, 5, 100), ("loss", 1.0, 5, 101), ("loss", 1.0, 5, 102)]
    landed = {"loss": (101, 5)}
    assert filter_landed(rows, landed) == rows[2:]  # steps in one millisecond: by step
    resumed = [("loss", 2.0, 9, 60), ("loss", 2.0, 9, 61)]  # below step 101, but later
    assert filter_landed(resumed, landed) == resumed
    clock_set_back = [("loss", 2.0, 3, 102)]
    assert filter_landed(clock_set_back, landed) == clock_set_back
    assert filter_landed([("lr", 0.1, 1, 0)], landed) == [("lr", 0.1, 1, 0)]  # a new key


def test_import_rejects_a_missing_or_foreign_file_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["import", str(tmp_path / "missing.jsonl")]) == 2
    # Neither a spool nor a saved run (a JSON Lines run table is imported as a run).
    foreign = tmp_path / "data.jsonl"
    foreign.write_text('{"note": "hello"}\n')
    assert main(["import", str(foreign)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("lrwatch: error:")]
    assert len(errors) == 2 and all(line.startswith("lrwatch: ") for line in err), err
    assert not (tmp_path / "mlflow.db").exists()  # nothing to import: no store made


def test_a_torn_last_line_is_ignored(tracking_uri, spool_dir, capsys):
    from lrwatch.tracking.spool import SpoolWriter

    spool = SpoolWriter(spool_dir, {"tracking_uri": tracking_uri, "experiment": "torn"})
    spool.append(
        [{"type": "metrics", "metrics": [[keys.LOSS, 1.5, 1000, 0], [keys.LR, 0.1, 1000, 0]]}]
    )
    spool.close(delete=False)
    with open(spool.path, "a") as handle:
        handle.write('{"type": "metrics", "metrics": [["train/loss", 1.4, 1001')  # died mid-write
    assert main(["import", str(spool.path)]) == 0
    assert "2 values sent" in capsys.readouterr().out
    client = mlflow.MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("torn").experiment_id])[0]
    assert history(tracking_uri, run.info.run_id, keys.LOSS) == [(0, 1.5)]
    assert run.info.status == "KILLED"  # no end record: the process died


def _read_only(path):
    """Make ``path`` unwritable, for root too (chattr +i on ext4: mode bits do not bind root);
    returns the undo."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o444)
    return lambda: path.chmod(0o644)


def test_a_spool_that_cannot_be_written_is_refused_before_a_run_is_created(
    tracking_uri, spool_dir, capsys
):
    # A colleague's spool, or one on a read-only mount: the import created the run, then failed
    # to record it in the spool ("lrwatch: error: PermissionError: ..."), and every later import
    # of the spool created another run, the earlier ones left empty and RUNNING.
    from lrwatch.tracking.spool import SpoolWriter

    spool = SpoolWriter(spool_dir, {"tracking_uri": tracking_uri, "experiment": "shared"})
    spool.append([{"type": "metrics", "metrics": [[keys.LOSS, 1.5, 1000, 0]]}])
    spool.close(delete=False)
    undo = _read_only(spool.path)
    try:
        assert main(["import", str(spool.path)]) == 2
    finally:
        undo()
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"lrwatch: error: cannot write to {spool.path} (")
    assert "import a writable copy" in error
    assert mlflow.MlflowClient(tracking_uri).get_experiment_by_name("shared") is None
    for _ in range(2):  # writable again: one run, found the second time
        assert main(["import", str(spool.path)]) == 0
    # A spool whose run the store holds needs no write: read-only, it still tops the run up.
    with open(spool.path, "a") as handle:
        handle.write(
            json.dumps({"type": "metrics", "metrics": [[keys.LOSS, 1.25, 1001, 1]]}) + "\n"
        )
    undo = _read_only(spool.path)
    try:
        assert main(["import", str(spool.path)]) == 0
    finally:
        undo()
    assert "1 values sent, 1 already in the store" in capsys.readouterr().out
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    assert history(tracking_uri, run.info.run_id, keys.LOSS) == [(0, 1.5), (1, 1.25)]


def test_damage_inside_a_spool_costs_only_the_damaged_lines(tracking_uri, spool_dir, capsys):
    """One bad byte on disk (not UTF-8) made the whole spool "not an lrwatch spool file", a
    params record garbled into other JSON did the same, and one garbled metric row stopped the
    import with "too many values to unpack": every step was lost. Now each costs its own line
    or row, and the import says how many it left out."""
    from lrwatch.tracking.spool import SpoolWriter

    spool = SpoolWriter(spool_dir, {"tracking_uri": tracking_uri, "experiment": "damaged"})
    spool.append([{"type": "params", "params": {"optimizer": "SGD"}}])
    for step in range(10):  # one flush per step: one line each
        rows = [[keys.LOSS, 1.0 / (step + 1), 1000 + step, step], [keys.LR, 0.1, 1000 + step, step]]
        spool.append([{"type": "metrics", "metrics": rows}])
    spool.append([{"type": "end", "status": "FINISHED"}])
    spool.close(delete=False)
    lines = spool.path.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"type": "params", "params": ["SGD"]}\n'  # garbled into other valid JSON
    lines[4] = lines[4].replace(b"metrics", b"metr\xffcs", 1)  # step 2's line: not UTF-8
    lines[7] = lines[7].replace(b'[["train/loss",', b'[["train/loss",9,')  # step 5: five fields
    spool.path.write_bytes(b"".join(lines))

    assert main(["import", str(spool.path)]) == 0
    captured = capsys.readouterr()
    assert "3 damaged entries left out" in captured.err
    assert "17 values sent" in captured.out  # 20, less step 2's two rows and step 5's loss
    client = mlflow.MlflowClient(tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("damaged").experiment_id])[0]
    steps = [s for s, _ in history(tracking_uri, run.info.run_id, keys.LOSS)]
    assert steps == [0, 1, 3, 4, 6, 7, 8, 9]
    assert run.info.status == "FINISHED"


def test_import_leaves_a_run_the_user_started_open(tracking_uri, capsys):
    """A watcher that joined the user's own run spools it; importing must not end that run."""
    client = mlflow.MlflowClient(tracking_uri)
    users_run = client.create_run(client.create_experiment("mine")).info.run_id
    dead = f"http://127.0.0.1:{free_port()}"  # the server is down while training
    state = {}

    def on_step(step, loss, optimizer):
        if "w" not in state:
            state["w"] = lrwatch.watch(
                optimizer, tracking_uri=dead, run_id=users_run, flush_interval=0.05
            )
        state["w"].step(loss)

    train(TrainConfig(task="quadratic", lr=0.05, steps=30), on_step=on_step)
    w = state["w"]
    assert w.close(timeout_s=0.5) is False and w.spool_path.exists()

    assert main(["import", str(w.spool_path), "--tracking-uri", tracking_uri]) == 0
    assert [s for s, _ in history(tracking_uri, users_run, keys.LOSS)] == list(range(30))
    assert client.get_run(users_run).info.status == "RUNNING"  # still the user's to end


def test_a_mistyped_tracking_uri_is_refused_once_and_the_spool_imported(
    tracking_uri, caplog, monkeypatch
):
    """``htpx://``: no store can ever have it, so the logger does not retry it for the whole
    run; the warning says which part of the URI is wrong, and nothing is lost."""
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    with caplog.at_level(logging.DEBUG, logger="lrwatch"):
        w, losses, _ = train_watched(
            TrainConfig(task="quadratic", lr=0.05, steps=40),
            {"tracking_uri": "htpx://mlflow-host:5000", "flush_interval": 0.02},
        )
    (refusal,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "MLflow has no tracking store for 'htpx://'" in refusal
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    assert main(["import", str(w.spool_path), "--tracking-uri", tracking_uri]) == 0
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs(["0"])
    assert [s for s, _ in history(tracking_uri, run.info.run_id, keys.LOSS)] == list(range(40))


def test_a_file_store_mlflow_refuses_is_one_warning_saying_how_to_use_it(
    tracking_uri, tmp_path, caplog, monkeypatch
):
    """MLflow 3 refuses ./mlruns stores unless MLFLOW_ALLOW_FILE_STORE is set, and says so at
    the end of a paragraph the warning cut off ("... See ...")."""
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = (tmp_path / "mlruns").as_uri()
    with caplog.at_level(logging.DEBUG, logger="lrwatch"):
        w, _, _ = train_watched(
            TrainConfig(task="quadratic", lr=0.05, steps=30),
            {"tracking_uri": store, "flush_interval": 0.02},
        )
    (refusal,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "(the store is a file store, which MLflow 3 refuses by default: set " in refusal
    assert "MLFLOW_ALLOW_FILE_STORE=true to use it, or migrate it with" in refusal
    assert main(["import", str(w.spool_path), "--tracking-uri", tracking_uri]) == 0
    (run,) = mlflow.MlflowClient(tracking_uri).search_runs(["0"])
    assert [s for s, _ in history(tracking_uri, run.info.run_id, keys.LOSS)] == list(range(30))


def test_a_run_the_store_refuses_is_kept_whole_and_imported_under_another_name(
    tracking_uri, caplog, monkeypatch
):
    """A name the store rejects for good: no retrying for the whole run, nothing lost."""
    monkeypatch.setenv("LRWATCH_STRICT", "0")  # strict mode raises the refusal at close()
    rejected = "x" * 600  # MLflow refuses experiment names over 500 characters
    with caplog.at_level(logging.DEBUG, logger="lrwatch"):
        w, losses, _ = train_watched(
            TrainConfig(task="quadratic", lr=0.05, steps=60),
            {"experiment": rejected, "tracking_uri": tracking_uri, "flush_interval": 0.02},
        )
    assert w.run_id is None and w.spool_path.exists()
    refusals = [r for r in caplog.records if "refused to create the run" in r.getMessage()]
    assert len(refusals) == 1 and str(w.spool_path) in refusals[0].getMessage()
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    assert not [r for r in caplog.records if "not everything reached" in r.getMessage()]

    assert main(["import", str(w.spool_path), "--experiment", "renamed"]) == 0
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("renamed").experiment_id])
    points = history(tracking_uri, run.info.run_id, keys.LOSS)
    assert [s for s, _ in points] == list(range(60))
    assert [v for _, v in points] == [float(torch.tensor(v)) for v in losses]


@pytest.mark.server
def test_saved_runs_go_into_a_tracking_server_once(mlflow_server, tmp_path, capsys):
    # The REST path: a shared server, not a local store (search, create, log, end over HTTP).
    from lrwatch.sources import load_runs
    from lrwatch.sources.files import save_run_csv

    run = train(TrainConfig(task="mlp_regression", lr=0.05, steps=200))
    path = save_run_csv(run, tmp_path / "lr0.05.csv")
    argv = ["import", str(path), "--tracking-uri", mlflow_server.uri, "--experiment", "sweep"]
    assert main(argv) == 0 and "(new run)" in capsys.readouterr().out
    assert main(argv) == 0 and "already holds this data" in capsys.readouterr().out
    (stored,) = load_runs(["experiment:sweep"], tracking_uri=mlflow_server.uri)
    assert stored.name == "lr0.05" and stored.status == "finished"
    np.testing.assert_array_equal(stored.loss.values, run.loss.values)
    assert float(stored.params[keys.PARAM_BASE_LR]) == 0.05
