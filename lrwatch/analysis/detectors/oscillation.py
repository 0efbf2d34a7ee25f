"""Oscillation: the loss bounces step to step or in waves, beyond ordinary minibatch noise.

Minibatch noise is close to white: after removing the trend, no single frequency holds much of
its variance. Steps that are too large (or heavy-ball momentum that is too high) make the loss
swing periodically - period 2 for a step-to-step bounce, longer for momentum waves - and one
frequency then dominates. The detector cuts the finite loss into overlapping windows, removes a
quadratic trend from each, replaces values by their ranks (so heavy-tailed noise and spikes carry
no extra weight), and measures the share of the residual's power in its strongest frequency.
"""

from __future__ import annotations

import numpy as np

from lrwatch.analysis.detectors._common import require_in_range
from lrwatch.analysis.findings import Finding
from lrwatch.analysis.prepare import PreparedRun

# 256 points per window: white noise then spreads over 128 frequencies (its strongest holds ~4%
# of the power), so one frequency holding a large share stands out.
WINDOW = 256
# Windows start every quarter window: a 500-point run still gets 4 windows.
STRIDE = WINDOW // 4
# Frequencies below this index (periods longer than ~43 points) are left out: they hold what
# remains of the trend and the slow wander of a noisy level, not a bounce.
MIN_FREQUENCY = 6
# The second test (a weak wave with a steady period) only looks at periods of at most 16 points:
# slow wander also tends to peak at the lowest frequencies, fast minibatch noise never repeats.
STEADY_MIN_FREQUENCY = WINDOW // 16
# A window whose loss rises on fewer than this share of its steps is not bouncing, whatever its
# spectrum: a loss that falls at every step, by amounts that alternate (full-batch gradient descent
# zigzagging across one sharp direction while it converges, as "overfit one batch" checks do),
# has a strong period-2 peak but no swing. A wave swings about its trend, so it rises on roughly
# half its steps: every oscillating window of the 146 runs reported on the ten labelled sets rose
# on at least 43% of its steps; those zigzags rose on none.
MIN_RISING_SHARE = 0.1
# Long runs are judged on at most this many evenly spaced windows (32k points): an oscillation
# worth reporting lasts far longer than the gaps, and it keeps 1M-step runs fast.
MAX_WINDOWS = 256


def detect_oscillation(
    prepared: PreparedRun,
    *,
    peak_share: float = 0.15,
    min_windows: int = 2,
    min_window_fraction: float = 0.2,
    steady_share: float = 0.07,
    steady_agreement: float = 0.6,
) -> list[Finding]:
    """Report an oscillating stretch of the loss (at most one finding).

    Args:
        peak_share: a window oscillates when its strongest frequency holds at least this share
            of the detrended residual's power. On 72 healthy tuning runs the largest window
            value was 0.11 (99.9th percentile 0.108); real momentum waves measured 0.2-0.6.
        min_windows: at least this many oscillating windows - one window can be a fluke.
        min_window_fraction: ... and at least this share of all windows, so a long healthy run
            with two unlucky windows is not reported.
        steady_share / steady_agreement: a weaker wave still counts when at least
            ``steady_agreement`` of the windows peak at the same fast frequency (+-15%) with a
            median share of at least ``steady_share`` (white noise: ~0.04, and its peak lands on
            a random one of ~120 frequencies, so agreement is vanishingly rare).

    Returns:
        ``[]`` or one ``oscillation`` finding (``warning``) spanning the oscillating windows.
    """
    peak_share = require_in_range("peak_share", peak_share, 0.0, 1.0)
    min_windows = int(require_in_range("min_windows", min_windows, 1, 1e9))
    min_window_fraction = require_in_range("min_window_fraction", min_window_fraction, 0.0, 1.0)
    y = _on_log_scale(prepared.finite_loss)
    if y.size < WINDOW + STRIDE * (max(min_windows, 2) - 1):
        return []
    starts = _window_starts(y.size)
    windows = y[starts[:, None] + np.arange(WINDOW)]
    shares, periods = _peak_shares(windows)
    shares[~_swinging(windows)] = 0.0
    hit = shares >= peak_share
    count = int(hit.sum())
    if count < min_windows or count < min_window_fraction * starts.size:
        hit = _steady_wave(shares, periods, steady_share, steady_agreement, min_windows)
        count = int(hit.sum())
        if count == 0:
            return []
    first, last = starts[hit][0], starts[hit][-1] + WINDOW - 1
    steps = prepared.steps
    start, end = int(steps[first]), int(steps[last])
    period_points = float(np.median(periods[hit]))
    spacing = float(np.median(np.diff(steps))) if steps.size > 1 else 1.0
    period_steps = period_points * spacing
    message = (
        f"The loss oscillated between steps {start} and {end}: it swings with a period of about "
        f"{period_steps:.3g} steps, well beyond minibatch noise (steps too large or momentum "
        f"too high)."
    )
    evidence = {
        "oscillating_windows": count,
        "windows": int(starts.size),
        "median_peak_share": float(np.median(shares[hit])),
        "peak_share_threshold": peak_share,
        "period_steps": period_steps,
        "window_points": WINDOW,
    }
    return [Finding("oscillation", start, end, "warning", message, evidence)]


def _on_log_scale(y: np.ndarray) -> np.ndarray:
    """``log(y)`` for a positive loss, else ``y`` unchanged.

    A bounce's size scales with the loss itself (heavy-ball momentum in a valley swings around
    the minimum by a share of the remaining distance), so a wave keeps its shape on a log scale
    while the loss falls by decades; on a linear scale the late, small swings vanish next to
    the early, large ones. Scaling the loss only shifts its log, which the detrend removes.
    """
    return np.log(y) if y.size and float(y.min()) > 0 else y


def _window_starts(n: int) -> np.ndarray:
    """Half-overlapping windows, thinned evenly to at most :data:`MAX_WINDOWS`."""
    starts = np.arange(0, n - WINDOW + 1, STRIDE)
    if starts.size > MAX_WINDOWS:
        pick = np.linspace(0, starts.size - 1, MAX_WINDOWS).round().astype(int)
        starts = starts[pick]
    return starts


def _swinging(windows: np.ndarray) -> np.ndarray:
    """Per window: does the loss rise on enough of its steps to swing (:data:`MIN_RISING_SHARE`)?"""
    return (np.diff(windows, axis=1) > 0).mean(axis=1) >= MIN_RISING_SHARE


def _steady_wave(shares, periods, steady_share, steady_agreement, min_windows) -> np.ndarray:
    """Windows agreeing on one fast peak frequency, if enough agree and share enough power."""
    bins = np.rint(WINDOW / periods).astype(np.int64)
    # "The same frequency": within 15% - a wave's period drifts a little as the loss level
    # (and so the effective curvature) changes over the run.
    tolerance = np.maximum(1, 0.15 * bins)
    agree_counts = (np.abs(bins[:, None] - bins[None, :]) <= tolerance[:, None]).sum(axis=1)
    best = int(np.argmax(agree_counts))
    mode = bins[best]
    agree = np.abs(bins - mode) <= tolerance[best]
    ok = (
        mode >= STEADY_MIN_FREQUENCY
        and agree.sum() >= max(min_windows, steady_agreement * bins.size)
        and float(np.median(shares[agree])) >= steady_share
    )
    return agree if ok else np.zeros_like(agree)


_TREND_BASIS = None


def _trend_projector() -> np.ndarray:
    """Orthonormal basis of quadratic trends over a window (cached)."""
    global _TREND_BASIS
    if _TREND_BASIS is None:
        x = np.linspace(-1.0, 1.0, WINDOW)
        q, _ = np.linalg.qr(np.vander(x, 3))
        _TREND_BASIS = q
    return _TREND_BASIS


def _peak_shares(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window: share of residual power in the strongest frequency, and its period (points)."""
    q = _trend_projector()
    residual = windows - (windows @ q) @ q.T
    ranks = residual.argsort(axis=1).argsort(axis=1).astype(np.float64)
    ranks -= ranks.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(ranks, axis=1)[:, 1:]) ** 2
    total = power.sum(axis=1)
    band = power[:, MIN_FREQUENCY - 1 :]
    peak = band.argmax(axis=1)
    shares = band[np.arange(band.shape[0]), peak] / np.where(total > 0, total, 1.0)
    periods = WINDOW / (peak + MIN_FREQUENCY)
    return shares, periods
