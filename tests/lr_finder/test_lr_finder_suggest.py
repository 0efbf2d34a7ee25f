"""The suggestion rules on analytic range-test curves, where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrwatch.analysis.range_test import (
    DEFAULT_METHOD,
    METHODS,
    SKIP_START_FRACTION,
    smooth_losses,
    suggest_lr,
)
from tests.lr_finder.lr_finder_helpers import (
    STEEPEST_LOG_LR,
    analytic_curve,
    fastai_valley_index,
)


def test_steepest_finds_the_inflection():
    lrs, losses = analytic_curve()
    s = suggest_lr(lrs, losses, method="steepest", smooth=1.0)
    grid_step = np.log10(lrs[1] / lrs[0])
    assert abs(np.log10(s.lr) - STEEPEST_LOG_LR) <= grid_step
    assert s.lr == lrs[s.index]


def test_minimum_is_a_tenth_of_the_minimum():
    lrs, losses = analytic_curve()
    s = suggest_lr(lrs, losses, method="minimum", smooth=1.0)
    assert s.lr == pytest.approx(lrs[np.argmin(losses)] / 10)
    assert 1e-2 / 10 < s.lr < 0.3 / 10
    # The index marks the tested point nearest the suggested rate.
    assert abs(np.log10(lrs[s.index] / s.lr)) <= np.log10(lrs[1] / lrs[0])


def test_valley_matches_fastai_and_lies_on_the_descent():
    lrs, losses = analytic_curve()
    s = suggest_lr(lrs, losses, method="valley", smooth=1.0)
    start = int(lrs.size * SKIP_START_FRACTION)
    assert s.index == start + fastai_valley_index(list(losses[start:]))
    assert lrs[start] < s.lr < lrs[np.argmin(losses)]


@pytest.mark.parametrize("seed", range(5))
def test_valley_matches_fastai_on_noisy_curves(seed):
    lrs, losses = analytic_curve(n=90, noise=0.1, seed=seed)
    smoothed = smooth_losses(losses, 0.05)
    s = suggest_lr(lrs, losses, method="valley")
    start = int(lrs.size * SKIP_START_FRACTION)
    assert s.index == start + fastai_valley_index(list(smoothed[start:]))


def test_combined_is_the_median_rule():
    lrs, losses = analytic_curve()
    picks = sorted(suggest_lr(lrs, losses, method=m, smooth=1.0).lr for m in METHODS[:3])
    assert suggest_lr(lrs, losses, method="combined", smooth=1.0).lr == pytest.approx(picks[1])


@pytest.mark.parametrize("method", METHODS)
def test_noisy_smoothed_curve_suggests_in_the_right_region(method):
    # 5% minibatch-like noise, the default EMA: every rule stays between the start of the
    # descent (1e-4, where the loss has barely moved) and the minimum.
    lrs, losses = analytic_curve(n=200, noise=0.05, seed=3)
    s = suggest_lr(lrs, losses, method=method)
    assert 1e-4 < s.lr < lrs[np.argmin(losses)]


@pytest.mark.parametrize("method", METHODS)
def test_scaling_the_loss_changes_no_suggestion(method):
    lrs, losses = analytic_curve(noise=0.03)
    scaled = suggest_lr(lrs, 3.7 * losses, method=method)
    plain = suggest_lr(lrs, losses, method=method)
    assert (scaled.lr, scaled.index) == (plain.lr, plain.index)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("blow_up", [np.inf, np.nan])
def test_non_finite_tail_is_cut(method, blow_up):
    lrs, losses = analytic_curve()
    broken = losses.copy()
    broken[120:] = blow_up
    cut = suggest_lr(lrs[:120], losses[:120], method=method)
    assert suggest_lr(lrs, broken, method=method) == cut


def test_linear_range_test_works_too():
    lrs = np.linspace(1e-4, 1.0, 150)
    losses = 1 + 1 / (1 + (lrs / 0.05) ** 2) + (lrs / 0.6) ** 4
    s = suggest_lr(lrs, losses, method="steepest", smooth=1.0)
    assert 0.02 < s.lr < 0.1  # the descent, steepest per log-LR near 0.05


def test_default_method_is_a_known_rule():
    assert DEFAULT_METHOD in METHODS


def test_bad_input_raises_value_error():
    lrs, losses = analytic_curve()
    with pytest.raises(ValueError, match="method"):
        suggest_lr(lrs, losses, method="magic")
    with pytest.raises(ValueError, match="length"):
        suggest_lr(lrs, losses[:-1])
    with pytest.raises(ValueError, match="at least 3"):
        suggest_lr(lrs[:5], [1.0, 0.9, np.nan, 0.5, 0.4])


@given(
    st.lists(
        st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([np.nan, np.inf, -np.inf])
        ),
        min_size=3,
        max_size=60,
    ),
    st.sampled_from(METHODS),
)
def test_suggestion_never_crashes_and_stays_in_range(raw, method):
    losses = np.array(raw)
    lrs = np.geomspace(1e-6, 1.0, losses.size)
    finite_prefix = int(np.argmax(~np.isfinite(losses))) if not np.isfinite(losses).all() else None
    usable = losses.size if finite_prefix is None else finite_prefix
    if usable < 3:
        with pytest.raises(ValueError):
            suggest_lr(lrs, losses, method=method)
        return
    s = suggest_lr(lrs, losses, method=method)
    assert lrs[0] / 10 <= s.lr <= lrs[usable - 1] * (1 + 1e-12)
    assert 0 <= s.index < usable


@pytest.mark.parametrize("method", METHODS)
def test_a_very_long_test_is_read_quickly_and_alike(method):
    lrs, losses = analytic_curve(n=20_000)
    long = suggest_lr(lrs, losses, method=method)
    short = suggest_lr(*analytic_curve(n=200), method=method, smooth=1 - 0.95**100)
    assert abs(np.log10(long.lr / short.lr)) < 0.25
    assert long.lr == pytest.approx(lrs[long.index], rel=0.01) or method == "combined"


def test_smoothing_is_the_debiased_ema_and_keeps_blow_up():
    values = 5 + np.random.default_rng(0).standard_normal(300)
    values[250:] = np.inf
    values[280] = np.nan
    expected, avg = [], 0.0
    for i, value in enumerate(values):  # the definition, step by step
        avg = 0.9 * avg + 0.1 * value
        expected.append(avg / (1 - 0.9 ** (i + 1)))
    smoothed = smooth_losses(values, 0.1)
    np.testing.assert_allclose(smoothed, expected, rtol=1e-12)
    assert np.isinf(smoothed[250:280]).all() and np.isnan(smoothed[280:]).all()
    np.testing.assert_array_equal(smooth_losses(values[:10], 1.0), values[:10])
