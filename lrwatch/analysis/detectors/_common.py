"""Small helpers the detectors (and recommendations) share: validation, formatting, levels."""

from __future__ import annotations

import numpy as np

from lrwatch.analysis.prepare import robust_diff_noise


def require_in_range(name: str, value: float, low: float, high: float) -> float:
    """Return ``value`` as float, or raise ``ValueError`` naming the parameter."""
    value = float(value)
    if not (low <= value <= high):
        raise ValueError(f"{name} must lie in [{low}, {high}], not {value}")
    return value


def fmt(value: float) -> str:
    """A loss value for a message: 4 significant digits."""
    return f"{value:.4g}"


def block_median_noise(noise: float, block_size: int) -> float:
    """Standard error of the median of ``block_size`` points with per-point noise ``noise``.

    The median's standard error is sqrt(pi/2) ~ 1.2533 times the mean's for Gaussian noise.
    """
    return float(noise * 1.2533 / np.sqrt(max(block_size, 1)))


# Fewer points than this before / after an event and levels are not compared.
MIN_LEVEL_POINTS = 5
# The levels before and after an event are read over this many points.
LEVEL_WINDOW = 50
# More non-finite losses than this in one event is not an isolated spike.
MAX_ISOLATED_NONFINITE = 3


def recovered_after(loss: np.ndarray, lo: int, hi: int) -> bool:
    """True when the loss after the event ``loss[lo:hi]`` is back within its band from before.

    An event with non-finite losses ends at its last one; a few such points (at most
    :data:`MAX_ISOLATED_NONFINITE`), then finite losses back at the old level, is a bad batch (or
    a mixed-precision step the scaler skipped), not a rate that diverges.
    """
    bad = np.flatnonzero(~np.isfinite(loss[lo:hi]))
    if bad.size:
        if bad.size > MAX_ISOLATED_NONFINITE:
            return False
        hi = lo + int(bad[-1]) + 1
    before = loss[max(0, lo - LEVEL_WINDOW) : lo]
    before = before[np.isfinite(before)]
    after = loss[hi:]
    if before.size < MIN_LEVEL_POINTS or after.size < MIN_LEVEL_POINTS:
        return False
    if not np.all(np.isfinite(after)):
        return False
    with np.errstate(over="ignore"):  # losses near 1e308: the band is then inf, as it should be
        band = np.percentile(before, 90) + 3 * robust_diff_noise(before)
    return bool(np.median(after[:LEVEL_WINDOW]) <= band)
