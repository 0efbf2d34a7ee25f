"""analyze_range_test and range_test_curve on Run objects: the report a range-test run gets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrwatch import keys
from lrwatch.analysis.range_test import (
    DEFAULT_METHOD,
    analyze_range_test,
    range_test_curve,
    range_test_schedule,
    relate_lr_to_range_test,
    suggest_lr,
)
from lrwatch.run import Run, Series
from tests.lr_finder.lr_finder_helpers import analytic_curve


def range_test_run(lrs, losses, steps=None, **extra_metrics):
    steps = np.arange(len(lrs)) if steps is None else np.asarray(steps)
    metrics = {keys.LOSS: Series(steps, losses), keys.LR: Series(steps, lrs)}
    metrics.update(extra_metrics)
    return Run(id="rt", tags={keys.TAG_RANGE_TEST: "true"}, metrics=metrics)


def test_report_recommends_the_suggested_lr_with_reasons():
    lrs, losses = analytic_curve(noise=0.02)
    run = range_test_run(lrs, losses)
    assert run.is_range_test
    report = analyze_range_test(run)
    expected = suggest_lr(lrs, losses)
    assert report.findings == ()
    assert report.recommendation.action == "use_lr"
    assert report.recommendation.suggested_lr == expected.lr
    assert DEFAULT_METHOD in report.recommendation.message
    assert f"{expected.lr:.3g}" in report.recommendation.message
    extras = report.extras["range_test"]
    assert extras["suggested_lr"] == expected.lr and extras["method"] == expected.method
    assert extras["points"] == lrs.size
    assert 1e-2 < extras["min_loss_lr"] < 0.3  # the analytic minimum's region
    assert report.schedule.kind == "exponential"
    json.dumps(report.to_dict())  # standard JSON, as `lrwatch analyze --format json` prints it


def test_curve_aligns_loss_and_lr_by_step_and_keeps_blow_up():
    lrs, losses = analytic_curve(n=50)
    losses[-3:] = np.inf
    order = np.random.default_rng(0).permutation(50)  # logged out of order: cleaned by step
    run = range_test_run(lrs[order], losses[order], steps=order)
    curve_lrs, curve_losses, smoothed = range_test_curve(run)
    np.testing.assert_array_equal(curve_lrs, lrs)
    np.testing.assert_array_equal(curve_losses, losses)
    assert np.isinf(smoothed[-1]) and np.isfinite(smoothed[:-3]).all()


def test_sql_store_infinity_is_read_as_blow_up():
    lrs, losses = analytic_curve(n=80)
    stored = losses.copy()
    stored[70:] = 1.7976931348623157e308  # what MLflow's SQL store keeps for +inf
    report = analyze_range_test(range_test_run(lrs, stored))
    assert report.recommendation.suggested_lr == suggest_lr(lrs[:70], losses[:70]).lr


def test_run_without_enough_points_gets_no_suggestion():
    report = analyze_range_test(range_test_run([1e-5, 1e-4], [1.0, 0.9]))
    assert report.recommendation.action == "none"
    empty = Run(id="x", tags={keys.TAG_RANGE_TEST: "true"}, metrics={keys.LOSS: Series([0], [1])})
    assert analyze_range_test(empty).recommendation.action == "none"
    assert range_test_curve(empty)[0].size == 0


def test_schedule_of_a_range_test():
    assert range_test_schedule(np.geomspace(1e-6, 1, 50)).kind == "exponential"
    assert range_test_schedule(np.linspace(1e-4, 1, 50)).kind == "linear"
    assert range_test_schedule(np.array([1e-3, 1e-2, 1e-2, 1e-4])).kind == "unknown"
    schedule = range_test_schedule(np.geomspace(1e-6, 1, 50))
    assert schedule.initial_lr == 1e-6 and schedule.final_lr == 1.0


def test_a_training_lr_is_related_to_an_earlier_range_test():
    lrs, losses = analytic_curve(noise=0.02)
    run = range_test_run(lrs, losses)
    suggested = analyze_range_test(run).recommendation.suggested_lr
    calm = relate_lr_to_range_test(suggested / 2, run)
    assert calm["ratio_to_suggested"] == pytest.approx(0.5) and not calm["past_minimum"]
    hot = relate_lr_to_range_test(0.5, run)  # beyond the analytic minimum (1e-2 .. 0.3)
    assert hot["past_minimum"] and "rt" in hot["message"]
    assert relate_lr_to_range_test(0.01, range_test_run([1e-5, 1e-4], [1.0, 0.9])) is None
