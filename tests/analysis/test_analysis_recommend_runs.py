"""Recommendations for real training runs with a known cause (lrwatch.tasks, quadratic task;
one regression MLP under Adam).

On the quadratic task plain SGD is stable below an LR of about 1 (the Hessian's largest
eigenvalue is about 2) and a 400-step sweep's best LR is about 0.3 (test_analysis_sweep.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from lrwatch import keys
from lrwatch.analysis import analyze
from lrwatch.run import Series
from lrwatch.tasks import TrainConfig, train

BEST_LR = 0.3


@pytest.fixture(scope="module")
def too_high():
    return train(TrainConfig(task="quadratic", lr=10 * BEST_LR, steps=300))


def test_lr_far_above_the_best_suggests_a_lower_lr(too_high):
    report = analyze(too_high)
    assert "divergence" in {f.kind for f in report.findings}
    rec = report.recommendation
    assert rec.action in ("decrease_lr", "add_warmup")
    assert rec.suggested_lr < 10 * BEST_LR
    assert report.extras["verdict"] == "issues"
    divergence = next(f for f in report.findings if f.kind == "divergence")
    assert str(divergence.start_step) in rec.message


def test_lr_far_below_the_best_suggests_a_higher_lr():
    run = train(TrainConfig(task="quadratic", lr=BEST_LR / 300, steps=400))
    rec = analyze(run).recommendation
    assert rec.action == "increase_lr", rec.message
    assert rec.suggested_lr > BEST_LR / 300


def test_a_loss_still_falling_at_the_best_rate_is_told_how_to_tell_a_short_budget():
    """Adam at its sweep's best rate on the regression MLP (0.03) still falls steadily at 1,000
    steps and is read as slow convergence; at 3.3x that rate the loss ends twice as high. The
    advice to raise the rate must say what such an outcome means: the budget is short."""
    config = TrainConfig(
        task="mlp_regression", optimizer="adam", lr=0.03, steps=1000, seed=8, task_seed=8
    )
    best, higher = train(config), train(config.with_(lr=0.1))
    assert end_level(higher) > 1.5 * end_level(best)
    rec = analyze(best).recommendation
    assert rec.action == "increase_lr", rec.message
    assert "If it ends higher there, this rate was about right and the run needs more steps" in (
        rec.message
    )


def end_level(run) -> float:
    return float(np.median(run.loss.values[-200:]))


def test_divergence_after_a_warmup_lowers_the_peak():
    # Warmup over 150 steps toward 2.0: it trains, then diverges once the LR passes ~1.
    run = train(
        TrainConfig(
            task="quadratic", lr=2.0, steps=300, schedule="warmup_constant", warmup_steps=150
        )
    )
    report = analyze(run)
    assert report.schedule.warmup_steps or report.schedule.kind == "warmup_only"
    rec = report.recommendation
    assert rec.action == "lower_peak_lr", rec.message
    assert rec.suggested_lr < 2.0


def test_heavy_momentum_oscillation_suggests_less_momentum():
    # Heavy-ball momentum 0.99 on the ill-conditioned quadratic: the loss rings in waves of ~16
    # steps (the bundled sample run "oscillating-momentum" is this configuration).
    run = train(TrainConfig(task="quadratic", lr=0.03, momentum=0.99, steps=600))
    report = analyze(run)
    assert "oscillation" in {f.kind for f in report.findings}, report.recommendation.message
    rec = report.recommendation
    if report.findings[report.extras["primary_finding"]].kind == "oscillation":
        assert rec.action == "reduce_momentum", rec.message
        assert rec.evidence["suggested_momentum"] < 0.99
        assert rec.evidence["alternative_lr"] < 0.03


def test_without_an_lr_series_the_base_lr_comes_from_params(too_high):
    metrics = {keys.LOSS: too_high.loss}
    with_params = too_high.with_metrics(metrics)
    rec = analyze(with_params).recommendation
    assert rec.suggested_lr is not None and rec.suggested_lr < 10 * BEST_LR
    bare = with_params.with_metrics(metrics)
    bare.params = {}
    rec = analyze(bare).recommendation
    assert rec.suggested_lr is None
    assert rec.action in ("decrease_lr", "add_warmup")
    assert analyze(bare).schedule.kind == "missing"


def test_one_nan_the_run_recovers_from_means_clip_gradients():
    # A healthy run with one non-finite loss logged mid-run (a bad batch, or a mixed-precision
    # step the grad scaler skipped): the loss after it is back at its level.
    run = train(TrainConfig(task="quadratic", lr=BEST_LR, steps=300))
    values = run.loss.values.copy()
    values[180] = float("nan")
    spiked = run.with_metrics({**run.metrics, run.loss_key: Series(run.loss.steps, values)})
    report = analyze(spiked)
    assert "divergence" in {f.kind for f in report.findings}  # the detector sees the NaN...
    rec = report.recommendation  # ... and the recommendation sees the recovery
    assert rec.action == "clip_gradients", rec.message
    assert rec.suggested_lr == pytest.approx(BEST_LR)
    assert "step 180" in rec.message
