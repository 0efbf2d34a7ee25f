"""Plateau and slow convergence: flat at a constant rate vs still creeping down at the end."""

from __future__ import annotations

import numpy as np
import pytest

from lrwatch.analysis.detectors import detect_plateau, detect_slow_convergence, run_detectors
from lrwatch.analysis.prepare import prepare, prepare_arrays


def kinds(prepared, min_severity="info"):
    order = ("info", "warning", "critical")
    return {
        f.kind
        for f in run_detectors(prepared)
        if order.index(f.severity) >= order.index(min_severity)
    }


def decay_then_flat(n=2000, *, flat_from=600, seed=0, lr_values=None):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 1.0 + 4.0 * np.clip(1 - t / flat_from, 0, None) ** 2
    loss = level + 0.2 * rng.standard_normal(n)
    lr = np.full(n, 0.1) if lr_values is None else lr_values
    return prepare_arrays(t, loss, t, lr)


def test_flat_loss_at_a_constant_rate_is_a_plateau_starting_near_where_it_flattened():
    (finding,) = detect_plateau(decay_then_flat())
    assert 400 <= finding.start_step <= 900
    assert finding.end_step == 1999


def test_no_plateau_when_the_rate_changes_during_the_flat_stretch():
    lr = np.where(np.arange(2000) < 1200, 0.1, 0.01)
    assert detect_plateau(decay_then_flat(lr_values=lr)) == []


def test_a_run_still_clearly_improving_has_no_plateau():
    t = np.arange(2000)
    loss = 10.0 - 0.004 * t + 0.2 * np.random.default_rng(1).standard_normal(t.size)
    assert detect_plateau(prepare_arrays(t, loss, t, np.full(t.size, 0.1))) == []


def test_linear_creep_is_slow_convergence_and_fast_decay_is_not():
    t = np.arange(3000)
    rng = np.random.default_rng(2)
    creep = 10.0 - 0.002 * t + 0.2 * rng.standard_normal(t.size)
    fast = 4.0 + 6.0 * np.exp(-t / 150) + 0.2 * rng.standard_normal(t.size)
    assert [f.kind for f in detect_slow_convergence(prepare_arrays(t, creep))] == [
        "slow_convergence"
    ]
    assert detect_slow_convergence(prepare_arrays(t, fast)) == []


@pytest.mark.parametrize(("task", "lr"), [("quadratic", 1e-3), ("mlp_classification", 3e-4)])
def test_a_rate_far_below_the_best_is_slow_convergence(detectors_train, task, lr):
    assert "slow_convergence" in kinds(prepare(detectors_train(task=task, lr=lr)), "warning")


@pytest.mark.parametrize(
    ("task", "lr", "schedule"),
    [
        ("mlp_regression", 0.03, "constant"),
        ("mlp_classification", 0.3, "cosine"),
        ("quadratic", 0.3, "constant"),
        ("autoencoder", 0.1, "warmup_cosine"),
        ("quadratic", 0.1, "cosine"),
    ],
)
def test_healthy_noisy_runs_get_no_warning(detectors_train, task, lr, schedule):
    prepared = prepare(detectors_train(task=task, lr=lr, schedule=schedule, seed=8, task_seed=8))
    assert kinds(prepared, "warning") == set()


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="min_fraction"):
        detect_plateau(decay_then_flat(), min_fraction=1.5)
    with pytest.raises(ValueError, match="late_share"):
        detect_slow_convergence(decay_then_flat(), late_share=-0.1)
