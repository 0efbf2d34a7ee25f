"""Smoothing and downsampling keep what a person must see: spikes, NaN/inf, first and last."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.data.downsample import downsample, ema, window
from lrwatch.run import Series


def _long_series(n: int = 1_000_000, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    steps = np.arange(n, dtype=np.int64)
    values = 2.0 * np.exp(-steps / (n / 5)) + 0.1 + 0.05 * rng.standard_normal(n)
    return Series(steps, values)


def test_a_million_points_keep_spikes_nans_infs_and_both_ends():
    series = _long_series()
    values = series.values.copy()
    values[123_457] = 50.0  # one-step spike
    values[654_321] = -7.0  # one-step dip
    values[[200_000, 900_001]] = np.nan
    values[700_000] = np.inf
    out = downsample(Series(series.steps, values), max_points=2000)
    assert out.steps.size <= 2002
    assert out.steps[0] == 0 and out.steps[-1] == series.steps[-1]
    assert 123_457 in out.steps and 654_321 in out.steps
    assert out.nonfinite_steps.tolist() == [200_000, 700_000, 900_001]
    assert np.isnan(out.nonfinite_values[0]) and out.nonfinite_values[1] == np.inf
    assert np.isfinite(out.values).all()
    assert out.total_points == series.steps.size


def test_zooming_in_brings_back_detail():
    series = _long_series(200_000)
    full = downsample(series, max_points=1000)
    zoomed = downsample(series, max_points=1000, x_range=(50_000, 50_500))
    in_view = (zoomed.steps >= 50_000) & (zoomed.steps <= 50_500)
    assert in_view.sum() == 501  # every point of the 501-step window
    assert ((full.steps >= 50_000) & (full.steps <= 50_500)).sum() < 20
    # one point of margin each side so the line reaches the plot's edges
    assert zoomed.steps[0] == 49_999 and zoomed.steps[-1] == 50_501


def test_window_handles_reversed_and_out_of_data_ranges():
    steps = np.arange(10, 20)
    assert window(steps, (25.0, 30.0)) == slice(9, 10)
    assert window(steps, (15.0, 12.0)) == slice(1, 7)
    assert window(steps, None) == slice(0, 10)


def _ema_loop(values, weight):
    out, average, count_weight = [], 0.0, 0.0
    for value in values:
        if np.isfinite(value):
            average = weight * average + (1 - weight) * value
            count_weight = weight * count_weight + (1 - weight)
        else:  # skipped: the average carries on, the line has a gap
            average, count_weight = weight * average, weight * count_weight
        out.append(average / count_weight if np.isfinite(value) else np.nan)
    return np.array(out)


@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan")), st.just(float("inf"))),
             min_size=1, max_size=60),
    st.floats(0.0, 0.99),
)  # fmt: skip
def test_ema_matches_the_textbook_bias_corrected_loop(values, weight):
    got = ema(np.array(values), weight)
    want = _ema_loop(values, weight) if weight > 0 else np.array(values)
    scale = np.abs(want[np.isfinite(want)]).max(initial=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * (1 + scale))


def test_ema_of_a_constant_starts_at_the_data_not_at_zero():
    assert np.allclose(ema(np.full(50, 3.0), 0.99), 3.0)


def test_ema_rejects_weights_outside_zero_one():
    with pytest.raises(ValueError):
        ema(np.ones(3), 1.0)
