"""Long tables (one row per step and metric): tbparse's TensorBoard scalars, MLflow's metric
history as a table. Each metric becomes a series; a run column splits the file into runs."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from lrwatch.errors import InputError
from lrwatch.run import Run
from lrwatch.sources import expand, load_run, load_runs
from lrwatch.sources.files import load_file, read_notes
from tests.sources.conftest import log_run_to_mlflow


def _tbparse_rows(runs: dict[str, Run]) -> list[list]:
    """``SummaryReader(logdir, extra_columns={"dir_name"}).scalars`` as rows: step, tag,
    value, dir_name - the metrics of a step one after another, the runs one after another."""
    rows = []
    for dir_name, run in runs.items():
        for step in np.unique(np.concatenate([s.steps for s in run.metrics.values()])):
            for tag, series in run.metrics.items():
                at = np.flatnonzero(series.steps == step)
                if at.size:
                    rows.append([int(step), tag, repr(float(series.values[at[0]])), dir_name])
    return rows


def _write_csv(path, header: list[str], rows: list[list]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _assert_same_series(loaded: Run, made: Run) -> None:
    assert set(loaded.metrics) == set(made.metrics)
    for key, series in made.metrics.items():
        np.testing.assert_array_equal(loaded.metrics[key].steps, series.steps)
        np.testing.assert_array_equal(loaded.metrics[key].values, series.values)  # NaN kept


def test_tensorboard_scalars_of_several_runs_read_by_tbparse(tmp_path, healthy_run, diverging_run):
    # Before: "no loss column among columns (step, value)" - the metric names are text.
    made = {"runs/lr0.05": healthy_run, "runs/lr0.2": diverging_run}
    path = _write_csv(
        tmp_path / "scalars.csv", ["step", "tag", "value", "dir_name"], _tbparse_rows(made)
    )
    runs = load_runs([path])
    assert [(r.name, r.id, r.loss_key, r.lr_key) for r in runs] == [
        (name, f"{path}#{name}", "train/loss", "lr") for name in made
    ]
    for run, original in zip(runs, made.values()):
        _assert_same_series(run, original)
    assert read_notes(runs[1]) == [
        "a long table (the metric of each row in 'tag') of 2 runs (in 'dir_name'): this is "
        "'runs/lr0.2'"
    ]
    assert [ref.part for ref in expand(path)] == list(made)
    with pytest.raises(InputError, match=re.escape("of 2 runs (runs/lr0.05, runs/lr0.2)")):
        load_file(path)
    assert load_file(path, part="runs/lr0.2").name == "runs/lr0.2"


def test_one_run_of_tensorboard_scalars(tmp_path, healthy_run):
    rows = [row[:3] for row in _tbparse_rows({"": healthy_run})]
    run = load_run(_write_csv(tmp_path / "one.csv", ["step", "tag", "value"], rows))
    assert (run.name, run.loss_key, run.lr_key) == ("one", "train/loss", "lr")
    _assert_same_series(run, healthy_run)
    assert read_notes(run) == [
        "a long table (the metric of each row in 'tag'): read as one column per metric"
    ]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_mlflow_metric_history_saved_as_a_table(tmp_path, tracking_uri, diverging_run, suffix):
    # What a script gets from the real store: get_metric_history -> Metric.to_dictionary().
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlflow import MlflowClient

    run_id = log_run_to_mlflow(tracking_uri, diverging_run)
    client = MlflowClient(tracking_uri)
    history = [
        metric.to_dictionary()
        for key in diverging_run.metrics
        for metric in client.get_metric_history(run_id, key)
    ]
    assert set(history[0]) >= {"key", "value", "step", "timestamp"}
    path = tmp_path / f"history.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in history))
    else:  # pyarrow keeps NaN (pandas' to_parquet would write it as null: "not logged")
        pq.write_table(pa.Table.from_pylist(history), path)
    run = load_run(str(path))
    _assert_same_series(run, diverging_run)
    assert run.loss_key == "train/loss"


def test_a_long_table_needs_its_step_column(tmp_path):
    # Without a step the rows of interleaved metrics cannot be placed: read as it stands, and
    # the error names what was found.
    path = _write_csv(tmp_path / "nostep.csv", ["tag", "value"], [["loss", 1.0], ["lr", 0.1]])
    with pytest.raises(InputError, match=re.escape("no loss column among columns (value)")):
        load_run(path)


def test_a_file_of_several_runs_is_read_once_for_all_of_them(tmp_path, monkeypatch):
    # Before: once to list its runs, then once more for each run - a long table of 50 runs and
    # 500,000 rows took 10.3 s to analyse (1.9 s now).
    import lrwatch.sources.files as files
    from lrwatch.batch import analyze_specs

    made = {f"run{k}": _noisy_run(seed=k) for k in range(5)}
    path = _write_csv(
        tmp_path / "scalars.csv", ["step", "tag", "value", "dir_name"], _tbparse_rows(made)
    )
    reads = []

    def counting_read_table(*args, **kwargs):
        reads.append(args[0])
        return real_read_table(*args, **kwargs)

    real_read_table = files.read_table
    monkeypatch.setattr(files, "read_table", counting_read_table)
    results = list(analyze_specs([path], workers=1))
    assert [r.run.name for r in results] == list(made)
    for result, original in zip(results, made.values()):
        _assert_same_series(result.run, original)
    assert len(reads) == 1


def test_a_run_of_a_rewritten_file_is_read_afresh(tmp_path, healthy_run, diverging_run):
    # The table kept for the runs of a file follows the file: after it changed, a run comes
    # from its new content; loading one run never changes what another run of it gets.
    header = ["step", "tag", "value", "dir_name"]
    path = _write_csv(tmp_path / "scalars.csv", header, _tbparse_rows({"a": healthy_run}))
    with open(path, "a", newline="") as f:  # a second run, so the file holds several
        csv.writer(f).writerows(_tbparse_rows({"b": diverging_run}))
    _assert_same_series(load_file(path, part="a"), healthy_run)
    _assert_same_series(load_file(path, part="b"), diverging_run)
    _assert_same_series(load_file(path, part="a"), healthy_run)
    # (a third run makes the new file longer: no reliance on the clock's resolution)
    rewritten = {"a": diverging_run, "b": healthy_run, "c": healthy_run}
    _write_csv(path, header, _tbparse_rows(rewritten))
    _assert_same_series(load_file(path, part="a"), diverging_run)
    _assert_same_series(load_file(path, part="b"), healthy_run)


def _noisy_run(seed: int) -> Run:
    from lrwatch.run import Series

    rng = np.random.default_rng(seed)
    steps = np.arange(0, 300, dtype=np.int64)
    loss = 2.0 * np.exp(-steps / 80.0) + 0.1 + 0.02 * rng.standard_normal(steps.size)
    lr = np.full(steps.size, 0.1)
    return Run(
        id=f"r{seed}",
        name=f"r{seed}",
        metrics={"train/loss": Series(steps, loss), "lr": Series(steps, lr)},
    )
