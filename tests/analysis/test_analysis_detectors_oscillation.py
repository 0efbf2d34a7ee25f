"""Oscillation: momentum waves and step-to-step bounces are found; minibatch noise is not."""

from __future__ import annotations

import numpy as np
import pytest

from lrwatch.analysis.detectors import detect_oscillation, run_detectors
from lrwatch.analysis.prepare import prepare, prepare_arrays


def kinds(prepared):
    return {f.kind for f in run_detectors(prepared)}


def test_heavy_ball_momentum_on_the_quadratic_oscillates(detectors_train):
    prepared = prepare(detectors_train(task="quadratic", lr=0.01, momentum=0.99))
    (finding,) = detect_oscillation(prepared)
    assert finding.severity == "warning"
    assert prepared.steps[0] <= finding.start_step <= finding.end_step <= prepared.steps[-1]


def test_heavy_ball_oscillation_is_found_when_only_every_third_step_is_logged(detectors_train):
    run = detectors_train(task="quadratic", lr=0.01, momentum=0.99, log_every=3)
    assert "oscillation" in kinds(prepare(run))


def test_a_wave_riding_a_loss_that_falls_by_decades_is_found():
    # Heavy-ball swings scale with the loss itself: on a linear scale the late swings vanish
    # next to the early ones; the detector judges a positive loss on its log scale.
    rng = np.random.default_rng(8)
    t = np.arange(1500)
    swing = 1.0 + 0.5 * np.cos(2 * np.pi * t / 20)
    loss = 10.0 * np.exp(-t / 200) * swing * np.exp(0.1 * rng.standard_normal(t.size))
    (finding,) = detect_oscillation(prepare_arrays(t, loss))
    assert finding.evidence["period_steps"] == pytest.approx(20.0, rel=0.2)


@pytest.mark.parametrize(
    ("task", "lr", "momentum"),
    [("mlp_regression", 0.03, 0.0), ("mlp_classification", 0.3, 0.0), ("quadratic", 0.03, 0.9)],
)
def test_minibatch_noise_is_not_oscillation(detectors_train, task, lr, momentum):
    prepared = prepare(detectors_train(task=task, lr=lr, momentum=momentum))
    assert detect_oscillation(prepared) == []


def synthetic(n=2000, *, wave=0.0, period=10.0, seed=0, heavy_tailed=False):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    noise = rng.standard_t(1.5, n) if heavy_tailed else rng.standard_normal(n)
    return 5.0 + 3.0 * np.exp(-t / 300) + 0.1 * noise + wave * 0.1 * np.cos(2 * np.pi * t / period)


@pytest.mark.parametrize("period", [2.0, 7.0, 25.0])
def test_a_wave_twice_the_noise_is_found_at_any_period(period):
    loss = synthetic(wave=2.0, period=period)
    (finding,) = detect_oscillation(prepare_arrays(np.arange(loss.size), loss))
    assert finding.evidence["period_steps"] == pytest.approx(period, rel=0.2)


@pytest.mark.parametrize("seed", range(5))
def test_white_and_heavy_tailed_noise_are_not_oscillation(seed):
    for heavy in (False, True):
        loss = synthetic(seed=seed, heavy_tailed=heavy)
        assert detect_oscillation(prepare_arrays(np.arange(loss.size), loss)) == []


def test_logging_every_tenth_step_reports_the_period_in_steps():
    loss = synthetic(wave=2.0, period=8.0)
    (finding,) = detect_oscillation(prepare_arrays(np.arange(loss.size) * 10, loss))
    assert finding.evidence["period_steps"] == pytest.approx(80.0, rel=0.2)


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="peak_share"):
        detect_oscillation(prepare_arrays(np.arange(3), np.ones(3)), peak_share=2.0)


def overfit_one_batch(seed: int, *, steps: int = 2000, momentum: float = 0.0):
    """The "overfit one batch" check: an MLP trained on a single fixed batch (full-batch
    gradient descent, no minibatch noise), SGD at 0.01, the loss of every step (prepared)."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=momentum)
    x, y = torch.randn(32, 16), torch.randn(32, 1)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return prepare_arrays(np.arange(steps), np.array(losses))


@pytest.mark.parametrize("seed", [30, 35])
def test_a_loss_falling_at_every_step_by_alternating_amounts_is_not_oscillation(seed):
    # Gradient descent zigzags across one sharp direction while the loss falls from ~1 to
    # ~1e-6: its decrements alternate (a strong period-2 peak), but the loss never rises. It
    # was reported as an oscillation, with "halve the LR", on a run converging fast.
    prepared = overfit_one_batch(seed)
    assert np.all(np.diff(prepared.loss[prepared.steps >= 500]) < 0)  # the premise
    assert detect_oscillation(prepared) == []
    assert "oscillation" not in kinds(prepared)


def test_heavy_ball_momentum_on_one_batch_still_oscillates():
    # The same full-batch run with momentum 0.99: the loss swings up and down while it falls.
    (finding,) = detect_oscillation(overfit_one_batch(30, momentum=0.99))
    assert finding.start_step < 500
