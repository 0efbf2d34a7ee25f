"""Pure maths for drawing long series: bias-corrected EMA smoothing and shape-keeping downsampling.

Smoothing runs on the full-resolution series *before* downsampling, so the smoothed line is the
same whatever the zoom. Downsampling uses tsdownsample's MinMaxLTTB (min/max preselection, then
largest-triangle-three-buckets): spikes survive, and the first and last points of the window are
always kept. Non-finite points (NaN, +/-inf) never enter the line; they are returned apart so the
chart can mark them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrwatch.run import Series

# Points per drawn line. A chart is ~1,000-1,500 px wide; 2,000 points keep every pixel column's
# min and max while a 1M-step run still ships ~50 kB of JSON per trace.
DEFAULT_MAX_POINTS = 2000


@dataclass(frozen=True)
class Downsampled:
    """What a chart draws of one series.

    Attributes:
        steps / values: the finite points of the line (at most ``max_points`` + 2).
        nonfinite_steps / nonfinite_values: NaN and +/-inf points inside the window.
        total_points: points of the series inside the window before downsampling.
    """

    steps: np.ndarray
    values: np.ndarray
    nonfinite_steps: np.ndarray
    nonfinite_values: np.ndarray
    total_points: int


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average (TensorBoard-style), ignoring non-finite values.

    ``weight`` in [0, 1): 0 returns the values unchanged. The average of the first points is
    divided by ``1 - weight**n`` (Adam's bias correction), so the curve starts at the data instead
    of at zero. NaN/inf points are skipped (they neither count nor reset the average), and the
    output there is NaN, as in TensorBoard: the line stops where the loss stopped being a number.
    It used to carry the average so far, so a run that blew up drew a flat smoothed line at its
    last finite level through every NaN step after it (in the compare view, which draws only the
    smoothed lines, it looked like a run that sat at 1e27).
    """
    values = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), not {weight}")
    if weight == 0.0 or values.size == 0:
        return values.copy()
    from scipy.signal import lfilter

    finite = np.isfinite(values)
    # Two first-order filters: the EMA of the finite values (zeros elsewhere) and the EMA of the
    # finite mask. Their ratio is the bias-corrected EMA; with every value finite the denominator
    # is exactly 1 - weight**(t+1).
    b, a = [1.0 - weight], [1.0, -weight]
    numerator = lfilter(b, a, np.where(finite, values, 0.0))
    denominator = lfilter(b, a, finite.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = numerator / denominator
    smoothed[~finite] = np.nan
    return smoothed


def window(steps: np.ndarray, x_range: tuple[float, float] | None) -> slice:
    """Index slice of the sorted ``steps`` inside ``x_range``, one point of margin each side.

    The margin keeps the line running to the plot's edges when zoomed in between two points.
    """
    if x_range is None:
        return slice(0, steps.size)
    low, high = sorted(x_range)
    start = max(int(np.searchsorted(steps, low, side="left")) - 1, 0)
    stop = min(int(np.searchsorted(steps, high, side="right")) + 1, steps.size)
    return slice(start, stop)


def downsample(
    series: Series,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    x_range: tuple[float, float] | None = None,
    values: np.ndarray | None = None,
) -> Downsampled:
    """Reduce ``series`` (sorted by step) to what a chart of ``max_points`` needs.

    Args:
        series: a cleaned series (sorted, unique steps).
        max_points: the most finite points to keep; at least 4.
        x_range: only points with steps in this range (plus one either side), e.g. after a zoom.
        values: draw these values (same length as the series, e.g. smoothed) instead.
    """
    if max_points < 4:
        raise ValueError("max_points must be at least 4")
    ys = series.values if values is None else np.asarray(values, dtype=np.float64)
    span = window(series.steps, x_range)
    steps, ys = series.steps[span], ys[span]
    finite = np.isfinite(ys)
    line_steps, line_values = steps[finite], ys[finite]
    keep = _minmax_lttb(line_steps, line_values, max_points)
    odd_steps, odd_values = steps[~finite], ys[~finite]
    if odd_steps.size > max_points:  # a run that stayed NaN for long: mark an even sample
        pick = np.unique(np.linspace(0, odd_steps.size - 1, max_points).round().astype(np.int64))
        odd_steps, odd_values = odd_steps[pick], odd_values[pick]
    return Downsampled(line_steps[keep], line_values[keep], odd_steps, odd_values, int(steps.size))


def _minmax_lttb(steps: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices to keep: all when few, else MinMaxLTTB's choice plus the first and last point."""
    if steps.size <= max_points:
        return np.arange(steps.size)
    from tsdownsample import MinMaxLTTBDownsampler

    chosen = MinMaxLTTBDownsampler().downsample(
        np.ascontiguousarray(steps), np.ascontiguousarray(values), n_out=max_points
    )
    return np.union1d(chosen.astype(np.int64), [0, steps.size - 1])
