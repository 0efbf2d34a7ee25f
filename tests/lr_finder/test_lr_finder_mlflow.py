"""find_lr logs one range-test run to a real MLflow store; reading it back gives the same advice."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from lrwatch import keys
from lrwatch.analysis.range_test import analyze_range_test
from lrwatch.lr_finder import find_lr, find_lr_on_task
from lrwatch.run import Run, Series
from lrwatch.tasks import TrainConfig
from tests.lr_finder.lr_finder_helpers import task_setup


def read_back(tracking_uri: str, run_id: str) -> Run:
    """The run as MLflow holds it, through the client (no lrwatch loader involved)."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    data = client.get_run(run_id).data
    metrics = {}
    for key in data.metrics:
        history = client.get_metric_history(run_id, key)
        metrics[key] = Series([m.step for m in history], [m.value for m in history])
    return Run(id=run_id, params=dict(data.params), tags=dict(data.tags), metrics=metrics)


def test_round_trip_through_mlflow(tracking_uri):
    config = TrainConfig(task="mlp_classification", optimizer="adam")
    result = find_lr_on_task(config, num_steps=150, log=True, experiment="range-tests")
    assert result.run_id is not None
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    info = client.get_run(result.run_id).info
    assert info.status == "FINISHED"
    assert client.get_experiment(info.experiment_id).name == "range-tests"

    run = read_back(tracking_uri, result.run_id)
    assert run.is_range_test
    assert run.loss_key == keys.LOSS and run.lr_key == keys.LR
    assert run.params["optimizer"] == "Adam" and run.params["mode"] == "exp"
    assert run.params["num_steps"] == "150"
    np.testing.assert_array_equal(run.lr.cleaned().values, result.lrs)
    np.testing.assert_array_equal(run.loss.cleaned().values, result.losses)

    report = analyze_range_test(run)
    assert report.recommendation.action == "use_lr"
    assert result.lrs.min() <= report.recommendation.suggested_lr <= result.lrs.max()
    assert report.recommendation.suggested_lr == result.suggestion.lr
    assert float(run.tags[keys.TAG_SUGGESTED_LR]) == result.suggestion.lr
    assert run.tags[keys.TAG_RANGE_TEST_STOPPED_EARLY] == str(result.stopped_early).lower()


def test_long_test_is_split_into_allowed_batches(tracking_uri):
    # 600 steps x 2 metrics = 1200 points: more than one log_batch request may carry (1000).
    model, opt, loss_fn, batches = task_setup(task="quadratic", momentum=0.0)
    result = find_lr(
        model, opt, loss_fn, batches, start_lr=1e-6, end_lr=1e-2, num_steps=600, log=True,
        tracking_uri=tracking_uri,
    )  # fmt: skip
    assert len(result.lrs) == 600
    run = read_back(tracking_uri, result.run_id)
    assert len(run.loss.cleaned()) == len(run.lr.cleaned()) == 600
    assert run.tags[keys.TAG_RANGE_TEST] == "true"


def test_divergence_is_kept_as_evidence(tracking_uri):
    model, opt, loss_fn, batches = task_setup(task="quadratic", momentum=0.0)
    result = find_lr(
        model, opt, loss_fn, batches, start_lr=1e3, end_lr=1e30, num_steps=60,
        diverge_threshold=1e300, log=True,
    )  # fmt: skip
    assert not np.isfinite(result.losses[-1])
    run = read_back(tracking_uri, result.run_id)
    assert not np.isfinite(run.loss.cleaned().values[-1])  # SQL's stand-in restored
    assert run.tags[keys.TAG_RANGE_TEST_STOPPED_EARLY] == "true"


def test_tracking_failure_warns_and_keeps_the_result(tmp_path, monkeypatch):
    monkeypatch.setenv("LRWATCH_STRICT", "0")  # production behaviour: warn, do not raise
    (tmp_path / "a-file").write_text("not a folder")
    unreachable = f"sqlite:///{tmp_path}/a-file/mlflow.db"  # a store that cannot be created
    model, opt, loss_fn, batches = task_setup(task="quadratic", momentum=0.0)
    with pytest.warns(UserWarning, match="not logged"):
        result = find_lr(model, opt, loss_fn, batches, num_steps=20, tracking_uri=unreachable)
    assert result.run_id is None and len(result.lrs) == 20


def test_analyze_points_a_training_run_back_to_its_range_test(tracking_uri, capsys):
    """An experiment holding a range test and a run trained far above its suggestion says so."""
    import json

    from lrwatch.cli import main
    from lrwatch.tasks import train
    from tests.sources.conftest import log_run_to_mlflow

    config = TrainConfig(task="mlp_classification", optimizer="adam", steps=200)
    result = find_lr_on_task(config, num_steps=150, log=True, experiment="with-range-test")
    too_hot = 100 * result.suggestion.lr
    log_run_to_mlflow(tracking_uri, train(config.with_(lr=too_hot)), experiment="with-range-test")
    # Another setup in the same experiment (SGD on another task): the test did not test it.
    other = train(TrainConfig(task="quadratic", optimizer="sgd", lr=0.3, steps=200))
    log_run_to_mlflow(tracking_uri, other, experiment="with-range-test")

    assert main(["analyze", "experiment:with-range-test", "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)["runs"]
    trained = next(e for e in entries if "relative_to_range_test" in e)
    relation = trained["relative_to_range_test"]
    assert relation["range_test_run"] == result.run_id
    assert relation["ratio_to_suggested"] == pytest.approx(100, rel=1e-6)
    assert relation["message"] in trained["notes"]
    # Neither on the test itself nor on the other setup's run (it was: "at or past the rate
    # where its loss bottomed out", judged by a test of another model and optimizer).
    assert sum("relative_to_range_test" in e for e in entries) == 1
