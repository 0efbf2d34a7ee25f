"""Log axes (every LR axis, a loss that blew up) whose tick labels are numbers written out in full.

plotly labels a log axis that spans under a few decades with bare mantissas between the powers of
ten, in a smaller font: a run's constant rate of 0.03 sat on an LR panel reading "2, 0.1, 5, 2"
(0.2, 0.1, 0.05, 0.02), and no label said 0.03. Over more decades it mixed styles: a loss axis
read "1, 10M, 100T, 10^21". The ticks are chosen here and written as people write rates: 0.03,
3e-4, 1e14.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

# Mantissas per decade, densest first: the first set that puts at most `max_ticks` ticks on the
# axis is used; beyond them, powers of ten, every 1st, 2nd, 3rd... decade.
_MANTISSAS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1, 3), (1,))
# Padding each side, in decades: a share of the span, and at least 0.1 decade (x1.26) so a
# constant rate lies inside the axis, not on its edge.
_PAD_SHARE = 0.08
_MIN_PAD_DECADES = 0.1
# Below the first a number is written 3e-4, as rates are in papers and configs, not 0.0003; from
# the second on, 1e5, not 100000.
_SMALLEST_PLAIN = 0.01
_LARGEST_PLAIN = 1e4


def tick_label(value: float) -> str:
    """``0.03``, ``0.5``, ``2``, ``1000``; ``3e-4``, ``1.5e-5`` below 0.01; ``1e5`` from 10,000."""
    if _SMALLEST_PLAIN <= value < _LARGEST_PLAIN:
        return f"{value:.4g}"  # 1000 (.3g wrote 1e+03)
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def log_ticks(low: float, high: float, max_ticks: int) -> list[float]:
    """Round numbers between ``10**low`` and ``10**high`` (log10 units), at most ``max_ticks``;
    the axis's centre when no round number falls inside (a narrow axis around one rate)."""
    decades = range(math.floor(low), math.ceil(high) + 1)

    def inside(numbers: list[float]) -> list[float]:
        return [n for n in numbers if low <= math.log10(n) <= high]

    candidates = [inside([float(f"{m}e{k}") for k in decades for m in ms]) for ms in _MANTISSAS]
    if not candidates[0]:
        return [10 ** ((low + high) / 2)]
    for ticks in candidates:
        if len(ticks) <= max_ticks:
            return ticks
    every = 2
    while True:  # ends: a wider spacing always leaves fewer powers of ten
        ticks = inside([float(f"1e{k}") for k in decades if k % every == 0])
        if len(ticks) <= max_ticks:
            return ticks or [10 ** ((low + high) / 2)]
        every += 1


def log_axis(drawn: npt.ArrayLike, *, max_ticks: int) -> dict:
    """Axis settings for the values drawn: log scale, a padded range, written-out tick labels.
    Values that are not finite and positive (an LR of 0 at a warmup's start) stay off the range."""
    values = np.asarray(drawn, float).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return {"type": "log"}
    low, high = float(np.log10(values.min())), float(np.log10(values.max()))
    pad = max(_PAD_SHARE * (high - low), _MIN_PAD_DECADES)
    low, high = low - pad, high + pad
    ticks = log_ticks(low, high, max_ticks)
    return {
        "type": "log",
        "range": [low, high],
        "tickmode": "array",
        "tickvals": ticks,
        "ticktext": [tick_label(t) for t in ticks],
    }
