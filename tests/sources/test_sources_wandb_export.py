"""A W&B chart export ("Export panel -> CSV") holds every run the chart shows: each is a run."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from lrwatch.errors import InputError
from lrwatch.run import Run
from lrwatch.sources import expand, load_run, load_runs
from lrwatch.sources.files import load_file, read_notes, save_run_csv
from lrwatch.sources.tables import column_names
from lrwatch.sources.wandb_export import runs_in_export


def _chart_export(runs: dict[str, Run], metrics=("train/loss", "lr")) -> str:
    """The CSV W&B writes for a line plot of ``metrics`` over ``runs``: ``Step``, then per run
    and metric the value and its __MIN/__MAX companions; blank where a run has no point."""
    header = ["Step"]
    for name in runs:
        for metric in metrics:
            header += [f"{name} - {metric}", f"{name} - {metric}__MIN", f"{name} - {metric}__MAX"]
    steps = sorted({int(s) for run in runs.values() for s in run.loss.steps})
    lookup = {
        (name, metric): dict(zip(run.metrics[metric].steps.tolist(), run.metrics[metric].values))
        for name, run in runs.items()
        for metric in metrics
    }
    lines = [",".join(f'"{h}"' for h in header)]
    for step in steps:
        cells = [str(step)]
        for name in runs:
            for metric in metrics:
                value = lookup[name, metric].get(step)
                cells += [repr(float(value)) if value is not None else ""] * 3
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def sweep_runs(healthy_run, diverging_run) -> dict[str, Run]:
    """Three REAL runs of one task a W&B chart would show side by side: LR 0.05, 0.2, 0.002."""
    from lrwatch.tasks import TrainConfig, train

    slow = train(TrainConfig(task="mlp_regression", lr=0.002, steps=300, seed=0))
    return {"eager-sun-12": healthy_run, "fiery-dawn-13": diverging_run, "quiet-moon-14": slow}


def test_each_run_of_a_chart_export_is_a_run_of_its_own(tmp_path, sweep_runs):
    # Before: the file was one run, whose loss was the first run's column; the others were
    # silently left out.
    path = tmp_path / "export.csv"
    path.write_text(_chart_export(sweep_runs))
    runs = load_runs([str(path)])
    assert [(r.name, r.id, r.loss_key, r.lr_key) for r in runs] == [
        (name, f"{path}#{name}", "train/loss", "lr") for name in sweep_runs
    ]
    for run, made in zip(runs, sweep_runs.values()):
        np.testing.assert_array_equal(run.loss.steps, made.loss.steps)
        np.testing.assert_array_equal(run.loss.values, made.loss.values)  # NaN kept
        np.testing.assert_array_equal(run.lr.values, made.lr.values)
        assert set(run.metrics) == {"train/loss", "lr"}  # no __MIN/__MAX
        assert read_notes(run) == [f"a W&B chart export of 3 runs: this is {run.name!r}"]
    assert [ref.label for ref in expand(str(path))] == [f"{path}#{name}" for name in sweep_runs]


def test_the_cli_analyses_every_run_of_an_export_and_the_sweep(tmp_path, sweep_runs):
    path = tmp_path / "export.csv"
    path.write_text(_chart_export(sweep_runs))
    done = subprocess.run(
        [sys.executable, "-m", "lrwatch.cli", "analyze", str(path), "--format", "json", "--sweep"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    by_name = {entry["name"]: entry for entry in document["runs"]}
    assert list(by_name) == list(sweep_runs)
    kinds = {name: {f["kind"] for f in entry["findings"]} for name, entry in by_name.items()}
    assert "divergence" in kinds["fiery-dawn-13"] and "divergence" not in kinds["eager-sun-12"]
    # The sweep is drawn over all three rates and does not pick the diverged one.
    assert 0.002 <= document["sweep"]["suggested_lr"] < 0.2


def test_a_single_run_export_is_named_by_its_run(tmp_path, healthy_run):
    path = tmp_path / "export.csv"
    path.write_text(_chart_export({"eager-sun-12": healthy_run}, metrics=("train/loss",)))
    run = load_run(str(path))
    assert (run.id, run.name, run.loss_key, run.lr_key) == (
        str(path),
        "eager-sun-12",
        "train/loss",
        None,
    )
    np.testing.assert_array_equal(run.loss.values, healthy_run.loss.values)
    # The column's full name still works as --loss-key.
    named = load_run(str(path), loss_key="eager-sun-12 - train/loss")
    assert named.loss_key == "train/loss"


def test_a_compressed_export_and_a_folder_holding_one(tmp_path, sweep_runs, healthy_run):
    folder = tmp_path / "runs"
    folder.mkdir()
    with gzip.open(folder / "export.csv.gz", "wt") as f:
        f.write(_chart_export(sweep_runs))
    save_run_csv(healthy_run, folder / "plain.csv")
    runs = load_runs([str(folder)])
    assert [r.name for r in runs] == [*sweep_runs, "plain"]


def test_loading_one_run_of_several_needs_its_name(tmp_path, sweep_runs):
    path = tmp_path / "export.csv"
    path.write_text(_chart_export(sweep_runs))
    with pytest.raises(InputError, match=re.escape("a W&B chart export of 3 runs (eager-sun-12, ")):
        load_file(path)
    with pytest.raises(InputError, match="names 3 runs; use load_runs"):
        load_run(str(path))
    assert load_file(path, part="quiet-moon-14").name == "quiet-moon-14"
    with pytest.raises(InputError, match="no run 'other' with numeric rows"):
        load_file(path, part="other")


def test_only_a_header_of_run_prefixed_columns_is_an_export(tmp_path):
    assert runs_in_export(["Step", "a - loss", "a - loss__MIN", "b - loss", "b - lr"]) == {
        "a": {"loss": "a - loss"},
        "b": {"loss": "b - loss", "lr": "b - lr"},
    }
    # A run name holding the separator keeps it: the metric is what follows the last one.
    assert runs_in_export(["Step", "resnet - lr 0.1 - loss"]) == {
        "resnet - lr 0.1": {"loss": "resnet - lr 0.1 - loss"}
    }
    # One plain column besides the x-axis: an ordinary table.
    assert runs_in_export(["step", "loss", "val - loss"]) is None
    assert runs_in_export(["step", "loss__MIN"]) is None
    path = tmp_path / "plain.csv"
    path.write_text("step,loss,lr\n0,1.0,0.1\n")
    assert column_names(path) == ["step", "loss", "lr"]
    (tmp_path / "r.jsonl").write_text('{"step": 0, "a - loss": 1}\n')
    assert column_names(tmp_path / "r.jsonl") == ["step", "a - loss"]
    assert column_names(tmp_path / "missing.csv") == []
