"""LR range test maths: smoothing, the suggestion rules, and the report for a range-test run.

Pure (numpy only): :func:`lrwatch.find_lr` fills the curve, this module says what rate to start
from and why. The dashboard draws :func:`range_test_curve` and marks :func:`suggest_lr`.

Example::

    lrs = np.geomspace(1e-5, 1, 100)
    losses = 1 / (1 + (lrs / 1e-2) ** 1.5) + (lrs / 0.3) ** 4
    suggest_lr(lrs, losses).lr   # a rate on the steep descent, below the minimum
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrwatch import keys
from lrwatch.analysis.findings import Recommendation, Report, Schedule
from lrwatch.run import Run

# Weight of each new loss in the EMA: about a 20-step memory, the smoothing fastai and Lightning
# apply with beta = 0.98 on 100 steps, relaxed because range tests here are often 100-300 steps.
DEFAULT_SMOOTH = 0.05
# Chosen by evidence (benchmarks/lr_suggestion_comparison.py, README section lr_finder).
DEFAULT_METHOD = "valley"
# The first points of a range test sit on the flat start and only add noise to the slope, so
# fastai and Lightning skip the first ~10% (fastai: num_it // 10, Lightning: 10 points). Here:
# the first 10% of the tested log-LR span, which is the same for an exponential test.
SKIP_START_FRACTION = 0.1
# Minimum / 10: the classic rule of thumb - the loss minimum is already too hot to train at.
MINIMUM_DIVISOR = 10.0
# The valley rule is quadratic in the number of points; range tests are hundreds of steps, so
# a longer curve (a test of thousands of steps) is read at every k-th point of its smoothed loss.
MAX_RULE_POINTS = 2000


@dataclass(frozen=True)
class LrSuggestion:
    """A suggested starting rate: the rule that chose it and where on the curve it sits.

    ``index`` points into the ``lrs`` / ``losses`` given to :func:`suggest_lr`: the tested point
    nearest the suggested rate (where a chart marks it).
    """

    lr: float
    method: str
    index: int
    details: dict[str, Any] = field(default_factory=dict)


def smooth_losses(losses, smooth: float = DEFAULT_SMOOTH) -> np.ndarray:
    """Bias-corrected exponential moving average, as a range test computes it while running.

    ``smooth`` is the weight of each new value (0 < smooth <= 1; 1 returns the input). Non-finite
    values propagate: once the loss is inf/NaN, the smoothed loss is too.
    """
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    if not 0 < smooth <= 1:
        raise ValueError(f"smooth must be in (0, 1], not {smooth}")
    from scipy.signal import lfilter

    beta = 1.0 - smooth
    # avg[i] = beta * avg[i-1] + smooth * x[i] from avg[-1] = 0, as a linear filter over the
    # finite prefix; the (short) rest step by step, where a filter would turn inf into NaN.
    bad = ~np.isfinite(values)
    end = int(np.argmax(bad)) if bad.any() else values.size
    averaged = np.empty_like(values)
    averaged[:end] = lfilter([smooth], [1.0, -beta], values[:end])
    avg = averaged[end - 1] if end else 0.0
    for i in range(end, values.size):
        avg = averaged[i] = beta * avg + smooth * values[i]
    return averaged / (1.0 - beta ** np.arange(1, values.size + 1))  # debias the zero start


def _usable_curve(lrs, losses) -> tuple[np.ndarray, np.ndarray]:
    """Positive finite LRs with their losses, cut at the first non-finite loss (divergence)."""
    lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if lrs.shape != losses.shape:
        raise ValueError(f"lrs and losses differ in length ({lrs.size} != {losses.size})")
    bad_loss = ~np.isfinite(losses)
    end = int(np.argmax(bad_loss)) if bad_loss.any() else losses.size
    lrs, losses = lrs[:end], losses[:end]
    keep = np.isfinite(lrs) & (lrs > 0)
    return lrs[keep], losses[keep]


def _steepest(lrs: np.ndarray, smoothed: np.ndarray, start: int) -> tuple[int, dict]:
    """The point of steepest descent of the smoothed loss per log10(LR), before its minimum."""
    stop = int(np.argmin(smoothed)) + 1
    if stop - start < 2:
        return int(np.argmin(smoothed[: max(stop, 1)])), {"reason": "no descent to measure"}
    log_lr = np.log10(lrs[start:stop])
    # np.gradient needs strictly increasing x; equal LRs (a flat stretch) would divide by zero.
    if np.any(np.diff(log_lr) <= 0):
        slope = np.gradient(smoothed[start:stop])
    else:
        slope = np.gradient(smoothed[start:stop], log_lr)
    index = start + int(np.argmin(slope))
    return index, {"slope_per_decade": float(slope[index - start])}


def _minimum(lrs: np.ndarray, smoothed: np.ndarray, start: int) -> tuple[int, dict]:
    index = start + int(np.argmin(smoothed[start:]))
    return index, {"min_loss": float(smoothed[index]), "min_loss_lr": float(lrs[index])}


def _valley(lrs: np.ndarray, smoothed: np.ndarray, start: int) -> tuple[int, dict]:
    """fastai's ``valley``: the longest decreasing run of the loss, then a point half-way down it.

    As in fastai (``fastai.callback.schedule.valley``): ``lds[i]`` is the length of the longest
    strictly decreasing subsequence ending at ``i``; the valley ends at the first ``i`` with the
    largest ``lds`` and starts ``lds`` points before; the suggestion sits at start + 1/3 + 1/6 of
    the valley's length - past its flat top, before its bottom.
    """
    values = smoothed[start:]
    n = values.size
    lds = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        higher_before = values[:i] > values[i]
        if higher_before.any():
            lds[i] = int(lds[:i][higher_before].max()) + 1
    valley_end = int(np.argmax(lds))
    valley_start = valley_end - int(lds[valley_end])
    sections = (valley_end - valley_start) / 3
    offset = valley_start + int(sections) + int(sections / 2)
    index = start + min(max(offset, 0), n - 1)
    details = {"valley_start_lr": float(lrs[start + max(valley_start, 0)])}
    details["valley_end_lr"] = float(lrs[start + valley_end])
    return index, details


_RULES: dict[str, Callable[[np.ndarray, np.ndarray, int], tuple[int, dict]]] = {
    "steepest": _steepest,
    "minimum": _minimum,
    "valley": _valley,
}
METHODS = (*_RULES, "combined")

_EXPLANATIONS = {
    "steepest": "where the smoothed loss falls fastest per decade of LR",
    "minimum": "one tenth of the LR at the smoothed-loss minimum",
    "valley": "half-way down the longest descent of the smoothed loss (fastai's valley)",
    "combined": "the median of the steepest, minimum/10 and valley rules",
}


def explain_method(method: str) -> str:
    """One phrase saying how ``method`` picks its rate, for messages and chart legends."""
    return _EXPLANATIONS[method]


def suggest_lr(
    lrs, losses, *, method: str = DEFAULT_METHOD, smooth: float = DEFAULT_SMOOTH
) -> LrSuggestion:
    """Suggest a starting LR from a range test's (lr, loss) points.

    Args:
        lrs: the LR of each step, rising (exponentially or linearly).
        losses: the raw loss of each step. Smoothed here with :func:`smooth_losses`; the curve is
            cut at the first non-finite loss. Pass ``smooth=1`` for an already smoothed curve.
        method: ``valley`` (default, fastai's rule), ``steepest`` (steepest descent per log-LR
            before the minimum), ``minimum`` (LR at the minimum / 10) or ``combined`` (median of
            the three, in log space).
        smooth: EMA weight of each new loss.

    Returns:
        :class:`LrSuggestion`; ``index`` points into the given arrays.

    Raises:
        ValueError: unknown method, mismatched lengths, or fewer than 3 usable points.

    Example::

        >>> lrs = np.geomspace(1e-6, 1, 120)
        >>> losses = 2 - np.tanh(np.log10(lrs / 1e-3)) + (lrs / 0.2) ** 3
        >>> 1e-4 < suggest_lr(lrs, losses, method="steepest").lr < 1e-2
        True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    all_lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
    usable_lrs, usable_losses = _usable_curve(lrs, losses)
    if usable_lrs.size < 3:
        raise ValueError("a range test needs at least 3 points with a finite loss")
    smoothed = smooth_losses(usable_losses, smooth)
    if usable_lrs.size > MAX_RULE_POINTS:  # keep the quadratic valley rule fast
        stride = -(-usable_lrs.size // MAX_RULE_POINTS)
        usable_lrs, smoothed = usable_lrs[::stride], smoothed[::stride]
    start = _skip_start(usable_lrs)
    if method == "combined":
        return _combined(usable_lrs, smoothed, start, all_lrs)
    index, details = _RULES[method](usable_lrs, smoothed, start)
    lr = float(usable_lrs[index])
    if method == "minimum":
        lr /= MINIMUM_DIVISOR
        index = _nearest(usable_lrs, lr)
    details.update(smoothed_loss=float(smoothed[index]), points=int(usable_lrs.size))
    return LrSuggestion(lr, method, _index_in(all_lrs, usable_lrs[index]), details)


def _skip_start(lrs: np.ndarray) -> int:
    """Points in the first 10% of the tested log-LR span (10% of the points for an exp test).

    Measured in log-LR, not in points, so a linear test - whose low rates are its first few
    points - keeps them.
    """
    log_lr = np.log10(lrs)
    if np.any(np.diff(log_lr) < 0):  # not a rising test: fall back to a share of the points
        return int(lrs.size * SKIP_START_FRACTION)
    span = log_lr[-1] - log_lr[0]
    # Round-off: the point exactly at 10% of an exp test's span belongs to the skipped part.
    cut = log_lr[0] + SKIP_START_FRACTION * span * (1 - 1e-9)
    return min(int(np.searchsorted(log_lr, cut, side="right")), lrs.size - 3)


def _nearest(lrs: np.ndarray, lr: float) -> int:
    return int(np.argmin(np.abs(np.log10(lrs) - np.log10(lr))))


def _combined(lrs: np.ndarray, smoothed: np.ndarray, start: int, all_lrs) -> LrSuggestion:
    picks = {}
    for name, rule in _RULES.items():
        index, _ = rule(lrs, smoothed, start)
        picks[name] = float(lrs[index]) / (MINIMUM_DIVISOR if name == "minimum" else 1.0)
    lr = float(10 ** np.median(np.log10(list(picks.values()))))
    nearest = _nearest(lrs, lr)
    details = {f"{name}_lr": value for name, value in picks.items()}
    details.update(smoothed_loss=float(smoothed[nearest]), points=int(lrs.size))
    return LrSuggestion(lr, "combined", _index_in(all_lrs, lrs[nearest]), details)


def _index_in(all_lrs: np.ndarray, lr: float) -> int:
    """Index of the first point with this LR in the caller's (uncut) array."""
    matches = np.flatnonzero(all_lrs == lr)
    return int(matches[0]) if matches.size else int(np.argmin(np.abs(all_lrs - lr)))


def range_test_curve(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A range-test run as ``(lrs, losses, smoothed)``, one point per step logged with both.

    The chart of loss against LR: ``losses`` as logged (non-finite kept), ``smoothed`` the EMA of
    :func:`smooth_losses` that the suggestion rules read. Empty arrays when the run lacks either.
    """
    empty = np.array([], dtype=np.float64)
    if run.loss is None or run.lr is None:
        return empty, empty, empty
    loss, lr = run.loss.cleaned(), run.lr.cleaned()
    steps, in_loss, in_lr = np.intersect1d(loss.steps, lr.steps, return_indices=True)
    if steps.size == 0:
        return empty, empty, empty
    losses = loss.values[in_loss]
    return lr.values[in_lr], losses, smooth_losses(losses, _smooth_of(run))


def _smooth_of(run: Run) -> float:
    try:
        smooth = float(run.params.get("smooth", DEFAULT_SMOOTH))
    except ValueError:
        return DEFAULT_SMOOTH
    return smooth if 0 < smooth <= 1 else DEFAULT_SMOOTH


def range_test_schedule(lrs: np.ndarray) -> Schedule:
    """``exponential`` (constant ratio per step), ``linear`` (constant increment) or ``unknown``."""
    lrs = lrs[np.isfinite(lrs) & (lrs > 0)]
    if lrs.size < 3:
        return Schedule(kind="unknown", details={"range_test": True})
    # A rate that rises by a constant factor (or amount) each step, within 1% of its mean step.
    log_steps, steps = np.diff(np.log(lrs)), np.diff(lrs)
    if np.all(log_steps > 0) and np.ptp(log_steps) <= 0.01 * abs(log_steps.mean()):
        kind = "exponential"
    elif np.all(steps > 0) and np.ptp(steps) <= 0.01 * abs(steps.mean()):
        kind = "linear"
    else:
        kind = "unknown"
    return Schedule(
        kind=kind,
        initial_lr=float(lrs[0]),
        final_lr=float(lrs[-1]),
        peak_lr=float(lrs.max()),
        details={"range_test": True},
    )


def analyze_range_test(run: Run, *, method: str = DEFAULT_METHOD) -> Report:
    """The report for a range-test run: no findings, a ``use_lr`` recommendation and its reasons.

    The four training-run detectors do not apply (the LR rises on purpose until the loss blows
    up). ``extras["range_test"]`` holds ``suggested_lr``, ``method``, ``min_loss_lr``, ``points``
    and the tested LR range. A run with fewer than 3 finite points gets action ``none``.
    """
    lrs, losses, smoothed = range_test_curve(run)
    schedule = range_test_schedule(lrs)
    try:
        suggestion = suggest_lr(lrs, losses, method=method, smooth=_smooth_of(run))
    except ValueError:
        message = f"This LR range test has too few points with a finite loss ({lrs.size} logged)."
        recommendation = Recommendation(action="none", message=message)
        return Report(run.id, (), recommendation, schedule, lrs.size, {"range_test": {}})
    finite = np.isfinite(smoothed)
    min_index = int(np.flatnonzero(finite)[np.argmin(smoothed[finite])])
    min_loss_lr = float(lrs[min_index])
    tested = (float(np.nanmin(lrs)), float(np.nanmax(lrs)))
    if min_index < int(np.flatnonzero(finite)[-1]):
        bottom = f"The smoothed loss was lowest at lr={min_loss_lr:.3g} and rose after it"
    else:
        bottom = "The loss was still falling when the test ended (a higher end_lr shows more)"
    message = (
        f"Start training at lr={suggestion.lr:.3g}: the {suggestion.method} rule picks "
        f"{explain_method(suggestion.method)}. {bottom}; the test covered {tested[0]:.3g} to "
        f"{tested[1]:.3g} in {lrs.size} steps."
    )
    evidence = {"min_loss_lr": min_loss_lr, "min_smoothed_loss": float(smoothed[min_index])}
    recommendation = Recommendation(
        action="use_lr", message=message, suggested_lr=suggestion.lr, evidence=evidence
    )
    extras = {
        "range_test": {
            "suggested_lr": suggestion.lr,
            "method": suggestion.method,
            "min_loss_lr": min_loss_lr,
            "points": int(lrs.size),
            "tested_lr_range": list(tested),
            "stopped_early": run.tags.get(keys.TAG_RANGE_TEST_STOPPED_EARLY, "").lower() == "true",
        }
    }
    return Report(run.id, (), recommendation, schedule, int(lrs.size), extras)


# The settings lrwatch.find_lr logs as params: the test's own, no part of the setup it tested.
_RANGE_TEST_SETTINGS = frozenset(
    {"start_lr", "end_lr", "num_steps", "mode", "smooth", "diverge_threshold"}
)


def may_have_tested(range_test: Run, run: Run) -> bool:
    """Whether ``range_test`` may have tested ``run``'s setup: every param both record agrees
    (case aside: ``adam`` and ``Adam``), LRs, seeds, names and the test's own settings aside.
    Runs that record no params (saved files) cannot be told apart and count as the same."""
    from lrwatch.analysis.sweep import varies_within_a_task

    shared = (set(run.params) & set(range_test.params)) - _RANGE_TEST_SETTINGS
    return all(
        str(run.params[key]).lower() == str(range_test.params[key]).lower()
        for key in shared
        if not varies_within_a_task(key)
    )


def relate_lr_to_range_test(lr: float, range_test: Run) -> dict[str, Any] | None:
    """Where a training run's LR sits on an earlier range test, for its diagnosis to point back.

    Returns ``None`` when the range test has nothing to suggest; otherwise ``suggested_lr``,
    ``min_loss_lr``, ``ratio_to_suggested`` (lr / suggested), ``past_minimum`` (lr at or above
    the LR where the test's smoothed loss bottomed out - already too hot to train at) and a
    ``message`` for a person, naming the range test's run id.
    """
    report = analyze_range_test(range_test)
    extras = report.extras.get("range_test") or {}
    if report.recommendation.action != "use_lr" or not lr > 0:
        return None
    suggested, min_loss_lr = extras["suggested_lr"], extras["min_loss_lr"]
    ratio = lr / suggested
    past_minimum = lr >= min_loss_lr
    where = (
        f"at or past the rate where its loss bottomed out ({min_loss_lr:.3g})"
        if past_minimum
        else f"{ratio:.3g}x its suggested {suggested:.3g}"
    )
    return {
        "range_test_run": range_test.id,
        "suggested_lr": suggested,
        "min_loss_lr": min_loss_lr,
        "ratio_to_suggested": ratio,
        "past_minimum": past_minimum,
        "message": f"The range test {range_test.id} puts lr={lr:.3g} {where}.",
    }


# An LR that rises by a steady factor step after step across at least this many decades is a
# range test's: no training schedule climbs 1000x geometrically (a warmup rises linearly, by a
# decade or two; torch's LinearLR starts at a third of the rate, Hugging Face's at 1/warmup).
RANGE_TEST_MIN_DECADES = 3.0
# ... over at least this many logged points (fastai's and Lightning's tests take 100).
RANGE_TEST_MIN_POINTS = 20
# "Steady": log(LR) stays within this share of its span of a straight line in the step (float32
# logging and a test logged every k-th step stay far inside; a linear ramp, read on a log scale,
# bends by a quarter of its span or more).
RANGE_TEST_MAX_DEVIATION = 0.02


def rises_like_a_range_test(steps: np.ndarray, lrs: np.ndarray) -> bool:
    """Whether an LR series is an exponential range test's: rising at every logged step, at a
    steady geometric pace, across at least :data:`RANGE_TEST_MIN_DECADES` decades."""
    lrs = np.asarray(lrs, dtype=np.float64)
    if lrs.size < RANGE_TEST_MIN_POINTS or not 0 < lrs[0] < lrs[-1] < np.inf:
        return False
    # The span first, from two values: a training run (most of them) is ruled out at once.
    span = float(np.log10(lrs[-1]) - np.log10(lrs[0]))
    if span < RANGE_TEST_MIN_DECADES:
        return False
    if not np.all(np.isfinite(lrs) & (lrs > 0)) or np.any(np.diff(lrs) <= 0):
        return False
    log_lr = np.log10(lrs)
    x = np.asarray(steps, dtype=np.float64)
    line = np.polyval(np.polyfit(x - x[0], log_lr, 1), x - x[0])
    return float(np.max(np.abs(log_lr - line))) <= RANGE_TEST_MAX_DEVIATION * span
