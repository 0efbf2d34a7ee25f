"""`lrwatch import` of saved runs: files become MLflow runs the dashboard charts, once each."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from lrwatch import keys
from lrwatch.analysis import analyze
from lrwatch.cli import main
from lrwatch.sources import load_run, load_runs
from lrwatch.sources.files import save_run_csv
from lrwatch.tracking.import_runs import DEFAULT_EXPERIMENT, run_digest


def _imported(tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT) -> dict:
    return {r.name: r for r in load_runs([f"experiment:{experiment}"], tracking_uri=tracking_uri)}


def test_a_folder_of_saved_runs_is_imported_once_and_reads_back_as_it_was(
    tracking_uri, tmp_path, capsys, healthy_run, diverging_run
):
    folder = tmp_path / "runs"
    folder.mkdir()
    save_run_csv(healthy_run, folder / "healthy.csv")
    pd.read_csv(
        save_run_csv(diverging_run, tmp_path / "d.csv"), float_precision="round_trip"
    ).to_feather(folder / "lr0.2.feather")
    (folder / "config.json").write_text(json.dumps({"lr": 0.2}))  # no log of steps: skipped

    assert main(["import", str(folder), "--tracking-uri", tracking_uri]) == 0
    out, err = capsys.readouterr()
    assert out.count("(new run)") == 2 and "config.json: skipped (no loss)" in err
    assert f"lrwatch dashboard --tracking-uri {tracking_uri}" in err
    runs = _imported(tracking_uri)
    assert sorted(runs) == ["healthy", "lr0.2"]
    for file, original in (("healthy.csv", healthy_run), ("lr0.2.feather", diverging_run)):
        run = runs[Path(file).stem]
        assert run.status == "finished"
        assert run.tags[keys.TAG_IMPORTED_FROM] == str(folder / file)
        np.testing.assert_array_equal(run.loss.steps, original.loss.steps)
        np.testing.assert_array_equal(run.loss.values, original.loss.values)  # NaN kept
        np.testing.assert_array_equal(run.lr.values, original.lr.values)
        assert float(run.params[keys.PARAM_BASE_LR]) == original.lr.values[0]
        found = [(f.kind, f.start_step) for f in analyze(run).findings]
        assert found == [(f.kind, f.start_step) for f in analyze(original).findings]
    assert not np.isfinite(runs["lr0.2"].loss.values[-1])

    # Again, and the same data in another format: nothing new is written.
    save_run_csv(healthy_run, tmp_path / "healthy-copy.csv")
    assert main(["import", str(folder), str(tmp_path / "healthy-copy.csv")]) == 0
    out = capsys.readouterr().out
    assert out.count("already holds this data") == 3 and "(new run)" not in out
    assert len(_imported(tracking_uri)) == 2


def test_an_interrupted_import_is_written_again(tracking_uri, tmp_path, healthy_run):
    path = save_run_csv(healthy_run, tmp_path / "run.csv")
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("sweep")
    digest = run_digest(load_run(str(path)))
    half = client.create_run(experiment_id, tags={keys.TAG_IMPORTED_DIGEST: digest}).info.run_id

    assert main(["import", str(path), "--experiment", "sweep"]) == 0
    assert client.get_run(half).info.lifecycle_stage == "deleted"
    (run,) = _imported(tracking_uri, "sweep").values()
    assert run.id != half and run.status == "finished" and len(run.loss) == len(healthy_run.loss)


def test_a_column_chosen_by_name_is_stored_where_the_dashboard_looks(
    tracking_uri, tmp_path, capsys
):
    steps = np.arange(300)
    objective = 2 * np.exp(-steps / 50) + 0.1
    path = tmp_path / "custom.csv"
    # "val acc%" is a name MLflow refuses: left out, the rest imported.
    frame = {"step": steps, "objective": objective, "eta": 0.05, "loss": 1.0, "val acc%": 0.5}
    pd.DataFrame(frame).to_csv(path, index=False)

    argv = ["import", str(path), "--loss-key", "objective", "--lr-key", "eta"]
    assert main(argv) == 0
    assert "(new run) in experiment 'lrwatch-imported': 900 values" in capsys.readouterr().out
    (run,) = _imported(tracking_uri).values()
    assert keys.find_loss_key(run.metrics) == keys.LOSS  # what the dashboard picks
    np.testing.assert_array_equal(run.loss.values, objective)
    assert keys.find_lr_key(run.metrics) == keys.LR and run.lr.values[0] == 0.05
    assert run.params[keys.PARAM_BASE_LR] == "0.05"  # the dashboard's "base LR" column
    assert set(run.metrics) == {keys.LOSS, keys.LR, "loss"}


def test_what_is_no_saved_run_is_one_line_and_writes_no_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    (tmp_path / "text.csv").write_text("step,note\n1,hello\n")
    for spec, says in (
        ("missing.csv", "missing.csv: no such file or folder"),
        ("my-experiment", "my-experiment: no such file or folder"),
        ("runs:/0123456789abcdef0123456789abcdef", "MLflow runs are in a store already"),
        ("http://127.0.0.1:9/#/experiments/1", "MLflow runs are in a store already"),
        ("text.csv", "text.csv: no numeric rows besides the step column"),
    ):
        assert main(["import", spec, "--tracking-uri", uri]) == 2, spec
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("lrwatch: error: ") and says in err[-1], err
    assert not Path(tmp_path / "new.db").exists()
