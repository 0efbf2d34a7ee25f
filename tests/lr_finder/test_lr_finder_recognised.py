"""A range test saved without lrwatch's tag (fastai's lr_find, Lightning's lr_finder exported to
a table, a loop of one's own logged to MLflow) is recognised by its LR, and only such a one."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.entities import Metric

from lrwatch.analysis import analyze
from lrwatch.analysis.range_test import rises_like_a_range_test
from lrwatch.cli import main
from lrwatch.lr_finder import find_lr
from lrwatch.sources import load_run
from lrwatch.sources.files import read_notes
from tests.lr_finder.lr_finder_helpers import task_setup


@pytest.fixture(scope="module")
def real_test():
    """A real range test (SGD + momentum on a tiny MLP), not logged anywhere."""
    model, optimizer, loss_fn, batches = task_setup()
    return find_lr(model, optimizer, loss_fn, batches, num_steps=150, log=False)


def test_a_saved_range_test_is_answered_with_the_rate_to_start_from(tmp_path, real_test, capsys):
    # Before: read as a training run, "warmup only" that diverged: "lower the peak LR".
    steps = np.arange(len(real_test.lrs))
    pd.DataFrame({"step": steps, "lr": real_test.lrs, "loss": real_test.losses}).to_csv(
        tmp_path / "lr_find.csv", index=False
    )
    # Lightning's lr_finder.results and torch-lr-finder's history, as pandas writes them: an
    # unnamed index column, then lr and loss.
    pd.DataFrame({"lr": real_test.lrs, "loss": real_test.losses}).to_csv(tmp_path / "results.csv")
    for name in ("lr_find.csv", "results.csv"):
        run = load_run(str(tmp_path / name))
        assert run.is_range_test
        assert any(n.startswith("read as an LR range test: its LR rises ") for n in read_notes(run))
        report = analyze(run)
        assert report.recommendation.action == "use_lr" and report.findings == ()
        assert report.recommendation.suggested_lr == pytest.approx(real_test.suggestion.lr)
    assert main(["analyze", str(tmp_path / "lr_find.csv")]) == 0
    assert f"start at lr={real_test.suggestion.lr:.3g} (valley rule)" in capsys.readouterr().out


def test_an_untagged_range_test_in_mlflow_is_recognised_too(tracking_uri, real_test):
    client = mlflow.MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("own-loop")).info.run_id
    metrics = [
        Metric(key, float(value), 1_000 + step, step)
        for step, (lr, loss) in enumerate(zip(real_test.lrs, real_test.losses))
        for key, value in (("lr", lr), ("loss", loss))
    ]
    client.log_batch(run_id, metrics=metrics)
    report = analyze(load_run(f"runs:/{run_id}", tracking_uri=tracking_uri))
    assert report.recommendation.action == "use_lr"


def _torch_lrs(make_scheduler, steps: int) -> np.ndarray:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(lrs)


S = torch.optim.lr_scheduler
TRAINING_SCHEDULES = {
    # Warmups read on a log scale bend (linear), or span a decade or two (exponential).
    "linear warmup from a thousandth, stopped during it": lambda o: S.LinearLR(o, 1e-3, 1.0, 5000),
    "linear warmup from a thousandth, then constant": lambda o: S.LinearLR(o, 1e-3, 1.0, 300),
    "exponential warmup over two decades": lambda o: S.LambdaLR(o, lambda k: 1.015 ** min(k, 300)),
    "one cycle": lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=600),
    "cyclic": lambda o: S.CyclicLR(o, 1e-4, 1.0, step_size_up=100),
    "cosine": lambda o: S.CosineAnnealingLR(o, 600),
}


@pytest.mark.parametrize("name", TRAINING_SCHEDULES)
def test_no_training_schedule_rises_like_a_range_test(name):
    lrs = _torch_lrs(TRAINING_SCHEDULES[name], 600)
    assert not rises_like_a_range_test(np.arange(lrs.size), lrs)


def test_a_range_test_logged_every_few_steps_in_float32_is_still_one():
    lrs = np.geomspace(1e-7, 10, 300).astype(np.float32)[::3]
    assert rises_like_a_range_test(np.arange(0, 300, 3), lrs)
    assert not rises_like_a_range_test(np.arange(0, 300, 3)[:15], lrs[:15])  # too few points
    short = np.geomspace(1e-3, 0.5, 100)  # under three decades: a warmup as much as a test
    assert not rises_like_a_range_test(np.arange(100), short)
    linear = np.linspace(1e-7, 10, 200)  # a linear-mode test: tag it (find_lr does) to say so
    assert not rises_like_a_range_test(np.arange(200), linear)


@pytest.mark.parametrize(
    "lrs",
    [[1e306] * 5 + [1e-300] * 30, list(np.geomspace(1e-300, 1e300, 30)), [np.nan] * 30],
    ids=["huge-then-tiny", "six-hundred-decades", "nan"],
)
def test_lrs_at_the_float_limits_raise_no_numpy_warnings(lrs):
    # Found by a damaged-file test: "overflow encountered in scalar multiply" on the terminal.
    import warnings

    from lrwatch.run import Run, Series
    from lrwatch.sources.range_tests import mark_range_test

    steps = np.arange(len(lrs))
    run = Run(
        "x",
        metrics={
            "train/loss": Series(steps, np.ones(steps.size)),
            "lr": Series(steps, np.array(lrs)),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mark_range_test(run)
    assert run.is_range_test == (lrs[0] == 1e-300)
