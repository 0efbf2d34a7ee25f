"""Truths analyze() must keep on any run: scale invariance, findings inside the run, JSON, no crash."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from lrwatch import keys
from lrwatch.analysis import analyze
from lrwatch.analysis.findings import ACTIONS, KINDS, Report
from lrwatch.analysis.streaming import OnlineAnalyzer
from lrwatch.errors import InputError
from lrwatch.run import Run, Series
from lrwatch.tasks import TrainConfig, train

CONFIGS = {
    "diverging": TrainConfig(task="quadratic", lr=3.0, steps=300),
    "slow": TrainConfig(task="quadratic", lr=0.001, steps=300),
    "healthy": TrainConfig(task="quadratic", lr=0.1, steps=300),
    "momentum": TrainConfig(task="quadratic", lr=0.3, momentum=0.95, steps=300),
    "warmup_diverging": TrainConfig(
        task="quadratic", lr=2.0, steps=300, schedule="warmup_constant", warmup_steps=150
    ),
    "step_schedule": TrainConfig(task="mlp_classification", lr=0.1, steps=300, schedule="step"),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: threads only contend
    try:
        return {name: train(config) for name, config in CONFIGS.items()}
    finally:
        torch.set_num_threads(previous)


def scaled(run: Run, factor: float) -> Run:
    loss = run.loss
    return run.with_metrics({**run.metrics, run.loss_key: Series(loss.steps, loss.values * factor)})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scaling_the_loss_changes_neither_kinds_nor_action(runs, name):
    base = analyze(runs[name])
    for factor in (1e-3, 7.0, 1e4):
        other = analyze(scaled(runs[name], factor))
        assert [f.kind for f in other.findings] == [f.kind for f in base.findings]
        assert other.recommendation.action == base.recommendation.action
        assert other.recommendation.suggested_lr == pytest.approx(base.recommendation.suggested_lr)
        assert other.schedule.kind == base.schedule.kind


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_report_is_well_formed_and_strict_json(runs, name):
    run = runs[name]
    report = analyze(run)
    steps = run.loss.steps
    for f in report.findings:
        assert steps.min() <= f.start_step <= f.end_step <= steps.max()
    assert report.recommendation.action in ACTIONS
    assert report.extras["verdict"] in ("ok", "issues", "too_short")
    assert report.recommendation.message
    decoded = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert decoded["verdict"] == report.extras["verdict"]
    assert decoded["schedule"]["kind"] == report.schedule.kind
    assert {f["kind"] for f in decoded["findings"]} <= set(KINDS)


def test_analyze_needs_a_loss_series():
    with pytest.raises(InputError):
        analyze(Run(id="no-loss", metrics={keys.LR: Series(np.arange(5), np.ones(5))}))


def test_short_run_is_not_judged():
    run = train(TrainConfig(task="quadratic", lr=0.1, steps=12))
    report = analyze(run)
    assert report.findings == ()
    assert report.recommendation.action == "none"
    assert "too short to judge" in report.recommendation.message.lower()
    assert report.extras["verdict"] == "too_short"


def test_a_short_run_that_blew_up_is_still_judged():
    # Logged every 7th step, the far-too-high LR blows up within 6 logged points.
    run = train(TrainConfig(task="quadratic", lr=3.0, steps=300, log_every=7))
    report = analyze(run)
    assert report.num_steps < 30
    assert [f.kind for f in report.findings] == ["divergence"]
    assert report.extras["verdict"] == "issues"
    assert report.recommendation.action == "decrease_lr"
    assert report.recommendation.suggested_lr < 3.0


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e308, 1.7976931348623157e308, -1e-300, np.nan, np.inf]),
)


@st.composite
def arbitrary_runs(draw) -> Run:
    n = draw(st.integers(0, 120))
    steps = draw(st.lists(st.integers(-5, 10**9), min_size=n, max_size=n))
    kind = draw(st.sampled_from(["random", "smooth", "constant"]))
    if kind == "random":
        loss = draw(st.lists(values, min_size=n, max_size=n))
    else:
        scale = draw(st.floats(-1e6, 1e6, allow_nan=False))
        loss = list(scale * np.exp(-np.arange(n) / 30.0)) if kind == "smooth" else [scale] * n
    metrics = {keys.LOSS: Series(np.array(steps, np.int64), np.array(loss, np.float64))}
    if draw(st.booleans()):
        m = draw(st.integers(0, n + 3))
        lr_steps = draw(st.lists(st.integers(-5, 10**9), min_size=m, max_size=m))
        lr = draw(st.lists(values, min_size=m, max_size=m))
        metrics[keys.LR] = Series(np.array(lr_steps, np.int64), np.array(lr, np.float64))
    params = draw(st.dictionaries(st.sampled_from(["lr", "momentum", "optimizer"]), st.text()))
    return Run(id="hypothesis", metrics=metrics, params=params)


@given(arbitrary_runs())
@example(  # a creep at an LR near the float maximum: the median LR once overflowed
    Run(
        id="huge-lr",
        metrics={
            keys.LOSS: Series(np.arange(60), 10.0 - 0.1 * np.arange(60)),
            keys.LR: Series(np.array([0]), np.array([1e308])),
        },
    )
)
def test_analyze_never_crashes(run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor prints numpy's warnings on the user's terminal
        report = analyze(run)
    assert isinstance(report, Report)
    json.dumps(report.to_dict(), allow_nan=False)


@given(st.lists(st.lists(values, min_size=0, max_size=40), max_size=8))
def test_online_analyzer_never_crashes(chunks):
    online = OnlineAnalyzer(min_new_points=20, recent_points=64, max_blocks=4, block_points=4)
    step = 0
    with warnings.catch_warnings():
        # Nor prints numpy's warnings: it runs in the logger's thread, beside the training output
        # (a median of two losses near 1e308 printed "overflow encountered in reduce").
        warnings.simplefilter("error")
        for chunk in chunks:
            n = len(chunk)
            online.update(np.arange(step, step + n), np.array(chunk, np.float64), np.full(n, 0.1))
            step += n
        online.finalize()
    assert len(online.findings) == len({id(f) for f in online.findings})


def test_the_online_analyzer_prints_no_warning_for_losses_near_the_float_limit():
    online = OnlineAnalyzer(min_new_points=20, recent_points=64, max_blocks=4, block_points=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        online.update(np.arange(40), np.full(40, 1e308), np.full(40, 0.1))
        online.finalize()


def test_a_range_test_run_is_analysed_as_one():
    import pandas as pd

    from lrwatch.analysis.range_test import analyze_range_test

    table = pd.read_parquet(Path(__file__).parents[2] / "sample_runs" / "lr-range-test.parquet")
    metrics = {
        column: Series(table["step"].to_numpy(), table[column].to_numpy())
        for column in table.columns
        if column != "step"
    }
    run = Run(id="range-test", tags={keys.TAG_RANGE_TEST: "true"}, metrics=metrics)
    assert analyze(run).to_dict() == analyze_range_test(run).to_dict()
