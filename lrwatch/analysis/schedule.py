"""Recognise the learning-rate schedule from the logged LR series alone.

The LR series is cut into monotone segments (rises and falls, flat stretches ignored). Their
pattern names the family - one rise then flat: warmup then constant; several rises and falls:
cyclical; a long or cosine-shaped rise then a fall to below the start: one-cycle - and the
decaying part is then classified by shape: piecewise constant (step decay, or plateau-driven
reductions when the drops come at irregular intervals by a constant factor), smooth (linear,
exponential, cosine, polynomial or inverse square root, whichever fits best in least squares),
or held at its peak for a while before decaying to the end (warmup-stable-decay).

Everything uses steps (not indices), so logging every N steps or irregularly works too, and LR
values relative to the peak, so the scale of the LR does not matter. O(n), vectorised.

Example::

    recognize_schedule(np.arange(100), 0.1 * 0.97 ** np.arange(100)).kind  # 'exponential'
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np

from lrwatch.analysis.findings import Schedule

# A change smaller than this fraction of the peak LR is float jitter, not a schedule move
# (float32-logged LRs jitter at ~1e-7 relative).
_CHANGE_TOL = 1e-6
# A rise or fall smaller than this fraction of the peak is ignored as a direction change (a
# bump of under 1% does not make a schedule cyclical).
_SIGNIFICANT_MOVE = 0.01
# Shape fits: the best model must explain the decaying part to within this RMS error, as a
# fraction of the part's own LR range; 3% separates torch's schedules from each other cleanly.
_FIT_TOL = 0.03
# A decaying part is piecewise constant when the LR stays put for this many logged points on
# median between changes (smooth schedules change at every logged point).
_MIN_FLAT_RUN = 3
# Drops by factors whose logs differ by less than this are "the same factor" (5% apart).
_FACTOR_LOG_TOL = 0.05
# Drop intervals within this fraction of their median (or two logging intervals) are regular.
_INTERVAL_TOL = 0.1
# Before a single rise, an LR that stayed below this fraction of the peak after it was held low
# (a warmup); a restart (SGDR) comes back to the rate the run started at, the peak itself.
_RESTART_LEVEL = 0.9
# A rise that takes at least this fraction of the schedule is a one-cycle ramp, not a warmup
# (OneCycleLR's default pct_start is 0.3; warmups are typically <= 10% of a run).
_ONE_CYCLE_RISE_FRACTION = 0.25
# The shape of a rise is judged only when it has this many logged points and spans this
# fraction of the run.
_MIN_SHAPE_POINTS = 5
_MIN_CURVED_RISE_FRACTION = 0.1
# Points used for the shape fits: schedules are smooth, so a uniform subsample loses nothing.
_MAX_FIT_POINTS = 2000
# Cosine annealing may stop before T_max: its period as a multiple of the decay's span.
_COSINE_PERIODS = (1.0, 1.1, 1.25, 1.5, 2.0)
# Polynomial decay (torch's PolynomialLR, Hugging Face's "polynomial"): (1 - t/T)^power down to
# its end LR, T >= the span (the run may stop before it). Power 1 is the linear fit's; these
# are the others in use (0.5; 2 and 3 in segmentation and detection recipes).
_POLYNOMIAL_POWERS = (0.5, 2.0, 3.0)
_POLYNOMIAL_ENDS = (1.0, 1.1, 1.25, 1.5, 2.0)
# Inverse square root (the Transformer's schedule after its warmup, Hugging Face's
# "inverse_sqrt"): 1/sqrt(t + c), c the step the decay counts from, in units of the decay's
# span: 0.11 for a 10% warmup (Noam), up to ~1 for a timescale as long as the run. Beyond that
# the curve is a line within the fit tolerance and is named linear.
_INVERSE_SQRT_OFFSETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# Those two families have a shape parameter besides level and scale: through a handful of
# points one of their shapes always passes. Judged from twice their three parameters on.
_MIN_POINTS_SHAPED_FAMILIES = 6
# Warmup-stable-decay (WSD, "trapezoidal"; Hugging Face's get_wsd_schedule): the rate held at
# its peak for most of the run, then annealed to the end (LLM pretraining cools down over the
# last 10-20%). A hold of at least this share of what follows the peak makes it one: a smooth
# decay leaves its peak at once, and a delay this long is no part of any of its shapes.
_MIN_HOLD_FRACTION = 0.1

KINDS = (
    "constant",
    "step",
    "exponential",
    "cosine",
    "linear",
    "polynomial",
    "inverse_sqrt",
    "cyclical",
    "plateau_reductions",
    "one_cycle",
    "wsd",
    "warmup_only",
    "unknown",
    "missing",
)


class _LrLevels(TypedDict):
    """The LR levels every recognised schedule carries (passed on as ``**base``)."""

    initial_lr: float
    peak_lr: float
    final_lr: float


def recognize_schedule(lr_steps: np.ndarray | None, lr_values: np.ndarray | None) -> Schedule:
    """Name the schedule of an LR series (cleaned: sorted unique steps, finite values).

    Args:
        lr_steps: int steps of the LR series, or ``None`` when no LR was logged.
        lr_values: the LR at those steps.

    Returns:
        A :class:`Schedule`; ``kind`` is one of :data:`KINDS`, ``warmup_steps`` is set when a
        warmup precedes the schedule, ``details`` carries the numbers that decided it (decay
        factor and drop steps, cycle period, fit error, ...).
    """
    # LRs near the float limits (1e-308, 1e308) overflow in ratios and differences; every
    # recogniser reads an inf/NaN result as "no match", so numpy's warnings would only be noise
    # on the user's terminal.
    with np.errstate(all="ignore"):
        return _recognize_schedule(lr_steps, lr_values)


def _recognize_schedule(lr_steps: np.ndarray | None, lr_values: np.ndarray | None) -> Schedule:
    if lr_steps is None or lr_values is None or len(lr_values) == 0:
        return Schedule(kind="missing")
    steps = np.asarray(lr_steps, dtype=np.int64)
    values = np.asarray(lr_values, dtype=np.float64)
    keep = np.isfinite(values)
    if not keep.all():
        steps, values = steps[keep], values[keep]
    if values.size == 0:
        return Schedule(kind="missing")
    high, low = float(values.max()), float(values.min())
    peak = max(abs(high), abs(low))
    base = _LrLevels(initial_lr=float(values[0]), peak_lr=high, final_lr=float(values[-1]))
    if peak == 0 or high - low <= 1e-3 * peak:
        return Schedule(kind="constant", **base)
    segments = _segments(values, peak)
    ups = [s for s in segments if s[0] > 0]
    downs = [s for s in segments if s[0] < 0]
    first_is_rise = bool(segments) and segments[0][0] > 0
    late_ups = ups[1:] if first_is_rise else ups
    # Two rises (a fall between them), or a restart between two falls: cycles.
    if late_ups and (len(ups) >= 2 or len(downs) >= 2):
        if len(ups) == 1 and _is_held_warmup(values, ups[0], high):
            return _after_held_warmup(steps, values, base)
        return _cyclical(steps, values, base, len(ups))
    if late_ups or not segments:
        return Schedule(kind="unknown", **base, details={"rises": len(ups), "falls": len(downs)})
    if first_is_rise:
        return _after_rise(steps, values, base, segments)
    return _decay(steps, values, base, start=0, warmup_steps=None)


def _segments(values: np.ndarray, peak: float) -> list[tuple[int, int, int]]:
    """Monotone runs as ``(direction, first_index, last_index)``; moves < 1% of peak dropped.

    Vectorised: jittery series (thousands of tiny ups and downs) cost no Python loop.
    """
    diffs = np.diff(values)
    moving = np.flatnonzero(np.abs(diffs) > _CHANGE_TOL * peak)
    if moving.size == 0:
        return []
    dirs = np.sign(diffs[moving]).astype(np.int8)
    breaks = np.flatnonzero(dirs[1:] != dirs[:-1]) + 1
    lo = moving[np.concatenate(([0], breaks))]
    hi = moving[np.concatenate((breaks - 1, [dirs.size - 1]))] + 1
    sign = dirs[np.concatenate(([0], breaks))]
    big = np.abs(values[hi] - values[lo]) >= _SIGNIFICANT_MOVE * peak
    lo, hi, sign = lo[big], hi[big], sign[big]
    if sign.size == 0:
        return []
    # Neighbours in the same direction (a dropped bump between them) merge into one run.
    starts = np.flatnonzero(np.concatenate(([True], sign[1:] != sign[:-1])))
    ends = np.concatenate((starts[1:] - 1, [sign.size - 1]))
    return [(int(sign[a]), int(lo[a]), int(hi[b])) for a, b in zip(starts, ends)]


def _after_rise(steps, values, base, segments) -> Schedule:
    """A schedule that starts with a rise: warmup (+ what follows) or a one-cycle ramp."""
    peak_index, warmup_steps = _peak(steps, values)
    rest = values[peak_index:]
    at_end = peak_index >= values.size - 1
    if len(segments) == 1 and (at_end or np.ptp(rest) <= 1e-3 * values.max()):
        if at_end:  # the run stopped while still warming up
            return Schedule(kind="warmup_only", **base, details={"rise_steps": warmup_steps})
        return Schedule(kind="constant", warmup_steps=warmup_steps, **base)
    span = max(int(steps[-1] - steps[0]), 1)
    rise_fraction = (steps[peak_index] - steps[0]) / span
    # The shape is judged without the peak point itself: when a linear warmup ends between two
    # logged points, the first point at the peak sits off the ramp's line (a kink, not a curve).
    rise_fit = _fit_error_linear(steps[:peak_index], values[:peak_index])
    # A curved rise marks a one-cycle ramp only when it is long enough to judge.
    curved = (
        peak_index >= _MIN_SHAPE_POINTS
        and rise_fraction >= _MIN_CURVED_RISE_FRACTION
        and rise_fit > _FIT_TOL
    )
    long_or_curved = rise_fraction >= _ONE_CYCLE_RISE_FRACTION or curved
    if long_or_curved and not _is_stepwise(values[peak_index:]):
        details = {
            "rise_steps": warmup_steps,
            "rise_fraction": round(float(rise_fraction), 3),
            "rise_shape": "curved" if curved else "linear",
        }
        return Schedule(kind="one_cycle", **base, details=details)
    return _decay(steps, values, base, start=peak_index, warmup_steps=warmup_steps)


def _is_held_warmup(values: np.ndarray, rise: tuple[int, int, int], high: float) -> bool:
    """One rise to a level the LR never came near before it: a warmup held at a low rate while
    the main schedule already decays (``ChainedScheduler([ConstantLR(factor=0.1), ExponentialLR])``,
    torch's own example), not a restart. A warm restart (SGDR) returns to the rate the run
    started at, which is the peak."""
    return bool(values[: rise[1] + 1].max() < _RESTART_LEVEL * high)


def _after_held_warmup(steps, values, base) -> Schedule:
    peak_index, warmup_steps = _peak(steps, values)
    return _decay(steps, values, base, start=peak_index, warmup_steps=warmup_steps)


def _peak(steps, values) -> tuple[int, int]:
    """The index where the LR first reaches its peak, and the steps up to it (the warmup)."""
    peak_index = int(np.argmax(values >= values.max() * (1 - 1e-6)))
    return peak_index, int(steps[peak_index] - steps[0]) + 1


def _decay(steps, values, base, *, start: int, warmup_steps: int | None) -> Schedule:
    """Classify the decaying part ``values[start:]`` as stepwise or by smooth shape."""
    s, v = steps[start:], values[start:]
    changes = _changes(v)
    if changes.size == 0:
        return Schedule(kind="constant", warmup_steps=warmup_steps, **base)
    if _is_stepwise(v, changes):
        return _stepwise(s, v, changes, base, warmup_steps)
    kind, errors, power = _best_smooth_fit(s, v)
    if kind == "unknown":
        held = _held_then_decayed(s, v, changes, base, warmup_steps)
        if held is not None:
            return held
    details: dict[str, Any] = {"fit_error": {k: round(e, 4) for k, e in errors.items()}}
    if kind == "exponential":
        gamma = float(np.exp(np.polyfit(s - s[0], np.log(np.maximum(v, 1e-300)), 1)[0]))
        details["gamma_per_step"] = gamma
    if kind == "polynomial":
        details["power"] = power
    return Schedule(kind=kind, warmup_steps=warmup_steps, **base, details=details)


def _held_then_decayed(s, v, changes, base, warmup_steps) -> Schedule | None:
    """Warmup-stable-decay: ``v`` holds its first (peak) value for at least
    :data:`_MIN_HOLD_FRACTION` of its span, then falls to the end (no rise: the caller saw
    none), in one of the smooth families' shapes (or 1-sqrt)."""
    hold_end = int(changes[0]) - 1  # the last point of the hold
    span = max(int(s[-1] - s[0]), 1)
    if hold_end < 1 or (s[hold_end] - s[0]) / span < _MIN_HOLD_FRACTION:
        return None
    shape, errors, power = _best_smooth_fit(s[hold_end:], v[hold_end:])
    # The "1-sqrt" cooldown of the WSD papers (Hagele et al. 2024), a WSD shape alone.
    x, y = _subsample(s[hold_end:], v[hold_end:])
    if y.size >= _MIN_POINTS_SHAPED_FAMILIES:
        t = (x - x[0]) / max(x[-1] - x[0], 1.0)
        errors["1-sqrt"] = _best_of(y / np.ptp(y), [1 - np.sqrt(t)])[1]
        if errors["1-sqrt"] <= min(_FIT_TOL, *errors.values()):
            shape = "1-sqrt"
    if shape == "unknown":
        return None  # a fall of no known shape after a hold (coarsely logged LR drops): unknown
    details: dict[str, Any] = {
        "decay_start_step": int(s[hold_end]),
        "decay_shape": shape,
        "fit_error": {k: round(e, 4) for k, e in errors.items()},
    }
    if shape == "polynomial":
        details["power"] = power
    return Schedule(kind="wsd", warmup_steps=warmup_steps, **base, details=details)


def _changes(v: np.ndarray) -> np.ndarray:
    """Indices where the LR differs from the point before (beyond float jitter)."""
    return np.flatnonzero(np.abs(np.diff(v)) > _CHANGE_TOL * np.max(np.abs(v))) + 1


def _is_stepwise(v: np.ndarray, changes: np.ndarray | None = None) -> bool:
    """Piecewise constant: the LR holds still for a median of >= 3 logged points per piece."""
    changes = _changes(v) if changes is None else changes
    if changes.size == 0:
        return False
    flat_runs = np.diff(np.concatenate(([0], changes, [v.size])))
    # "median run >= 3", counted instead of sorted (O(n) on million-step runs)
    return bool(2 * np.count_nonzero(flat_runs >= _MIN_FLAT_RUN) > flat_runs.size)


def _stepwise(s, v, changes, base, warmup_steps) -> Schedule:
    """Step decay (regular drops) or plateau-driven reductions (irregular, constant factor)."""
    factors = v[changes] / v[changes - 1]
    drop_steps = s[changes]
    details = {
        "drop_steps": [int(x) for x in drop_steps],
        "factors": [round(float(f), 6) for f in factors],
    }
    if np.any(factors > 1):
        return Schedule(kind="unknown", warmup_steps=warmup_steps, **base, details=details)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_factors = np.log(factors)  # a drop to exactly 0 gives -inf: not "the same factor"
    same_factor = bool(np.all(np.isfinite(log_factors)) and np.ptp(log_factors) <= _FACTOR_LOG_TOL)
    if same_factor:
        details["gamma"] = float(np.exp(np.median(log_factors)))
    intervals = np.diff(np.concatenate(([s[0]], drop_steps)))
    spacing = float(np.median(np.diff(s))) if s.size > 1 else 1.0
    tolerance = max(_INTERVAL_TOL * float(np.median(intervals)), 2 * spacing)
    regular = bool(np.all(np.abs(intervals - np.median(intervals)) <= tolerance))
    if regular:
        details["step_size"] = int(np.median(intervals))
    kind = "plateau_reductions" if (same_factor and not regular) else "step"
    return Schedule(kind=kind, warmup_steps=warmup_steps, **base, details=details)


def _cyclical(steps, values, base, rises: int) -> Schedule:
    """Cycles: period from the steps of the local maxima, range from min and max."""
    is_peak = np.r_[False, (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:]), False]
    high = values >= values.min() + 0.5 * np.ptp(values)
    peak_steps = steps[is_peak & high]
    details = {"cycles": rises, "min_lr": float(values.min()), "max_lr": float(values.max())}
    if peak_steps.size >= 2:
        details["period_steps"] = int(np.median(np.diff(peak_steps)))
    return Schedule(kind="cyclical", **base, details=details)


def _subsample(s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if s.size <= _MAX_FIT_POINTS:
        return s.astype(np.float64), v
    idx = np.linspace(0, s.size - 1, _MAX_FIT_POINTS).astype(np.int64)  # distinct: size > max
    return s[idx].astype(np.float64), v[idx]


def _rms_linear_fit(x: np.ndarray, y: np.ndarray, basis: np.ndarray) -> float:
    """RMS residual of ``y ~ a + b * basis`` (least squares)."""
    design = np.column_stack((np.ones_like(basis), basis))
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.sqrt(np.mean((design @ coef - y) ** 2)))


def _fit_error_linear(steps: np.ndarray, values: np.ndarray) -> float:
    if values.size < 3:
        return 0.0
    x, y = _subsample(steps, values)
    scale = np.ptp(y) or 1.0
    return _rms_linear_fit(x, y / scale, x - x[0])


def _best_smooth_fit(steps: np.ndarray, values: np.ndarray) -> tuple[str, dict[str, float], float]:
    """Which smooth decay fits best (RMS error relative to range), each family's error, and the
    best polynomial's power."""
    x, y = _subsample(steps, values)
    if y.size < 3:
        return "linear", {"linear": 0.0}, 1.0
    t = (x - x[0]) / max(x[-1] - x[0], 1.0)
    y = y / np.ptp(y)  # errors relative to the part's own range
    errors = {"linear": _rms_linear_fit(t, y, t)}
    if np.all(values > 0):
        # Exponential: linear in log space; its error is measured back in LR space.
        log_y = np.log(y)
        coef = np.polyfit(t, log_y, 1)
        errors["exponential"] = float(np.sqrt(np.mean((np.exp(np.polyval(coef, t)) - y) ** 2)))
    # Cosine annealing with unknown period: the run may stop before T_max (T >= span).
    errors["cosine"] = _best_of(y, [np.cos(np.pi * t / period) for period in _COSINE_PERIODS])[1]
    shapes = [(power, end) for power in _POLYNOMIAL_POWERS for end in _POLYNOMIAL_ENDS]
    best = 0
    if y.size >= _MIN_POINTS_SHAPED_FAMILIES:
        best, errors["polynomial"] = _best_of(y, [(1 - t / end) ** power for power, end in shapes])
        inverse_sqrt = [1 / np.sqrt(t + offset) for offset in _INVERSE_SQRT_OFFSETS]
        errors["inverse_sqrt"] = _best_of(y, inverse_sqrt)[1]
    kind = min(errors, key=errors.__getitem__)
    return (kind if errors[kind] <= _FIT_TOL else "unknown"), errors, shapes[best][0]


def _best_of(y: np.ndarray, bases: list[np.ndarray]) -> tuple[int, float]:
    """Which basis fits ``y ~ a + b * basis`` best (least squares), and its RMS error: all in one
    vectorised pass (the same numbers as :func:`_rms_linear_fit` for each)."""
    centred = np.stack(bases)
    centred -= centred.mean(axis=1, keepdims=True)
    y_centred = y - y.mean()
    spread = np.einsum("ij,ij->i", centred, centred)
    along = centred @ y_centred
    explained = np.divide(along**2, spread, out=np.zeros_like(along), where=spread > 0)
    residual = np.maximum(y_centred @ y_centred - explained, 0.0) / y.size
    best = int(np.argmin(residual))
    return best, float(np.sqrt(residual[best]))
