"""Slow convergence: steady, small progress that is still going when the run ends.

A run at a good rate makes most of its progress early and then flattens; a run whose rate is too
small descends almost linearly and is still descending at the end. The detector compares the
progress of the last third of the run with the progress of the whole run, and asks that the last
third's progress be real (many noise units) and steady (block medians fall monotonically).

The extreme case is a rate so small that the loss never measurably moves: its end sits where it
started, within the noise. That is reported too (the run learned nothing, which a rate 1000x too
small - or a model that is not training at all - looks like), rather than read as convergence.

Under a step decay the run's end cannot show it: a rate too small for the first stretch creeps
until the first decay, and the decayed rates then freeze the loss wherever it was, which reads
as converged. So when the whole run shows nothing, the stretch before the first step down is
judged the same way, as a run of its own.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lrwatch.analysis.detectors._common import block_median_noise, fmt, require_in_range
from lrwatch.analysis.detectors.plateau import wanders
from lrwatch.analysis.findings import Finding
from lrwatch.analysis.prepare import PreparedRun, robust_median

# Blocks used for the steadiness check: 12 medians show a trend's shape without tracing noise.
STEADINESS_BLOCKS = 12
# "Never measurably moved": the start level (median of the first 2%) and the end level (median
# of the last third) differ by less than this many standard errors of their difference, and so
# do the middle and last thirds. Healthy
# runs on the tuning sets dropped by at least 8.9 of them, runs at a rate 1000-3000x too small
# by -1.3 to 3; a drop above 3 is a trend, and the steady-progress tests judge it.
NO_PROGRESS_STANDARD_ERRORS = 3.0
# The stretch before a step decay is judged from the LR's first fall to at most this share of
# its starting value (StepLR's gamma is 0.1-0.5), the rate having held until then.
STEP_DOWN = 0.5
# ... on as few as this many points: a 50-epoch log decayed at each third holds 16 before the
# first decay, the classic 90-epoch ImageNet recipe (x0.1 at epochs 30 and 60) 30, under the 36
# a whole run needs. Each point is then an epoch's mean, so pairs of points serve as the
# steadiness blocks (8 of them on 16 points, where the rank correlation's 0.7 is still p ~ 0.03;
# 16 is also the fewest the no-progress test's wander check takes, one point per block).
MIN_STRETCH_POINTS = 16


def detect_slow_convergence(
    prepared: PreparedRun,
    *,
    late_share: float = 0.14,
    min_late_drop_noise: float = 3.0,
    min_steadiness: float = 0.7,
    steady_late_drop_noise: float = 1.5,
    steady_min_steadiness: float = 0.85,
    steady_total_drop_noise: float = 6.0,
) -> list[Finding]:
    """Report slow convergence (at most one finding, spanning the run).

    Args:
        late_share: the last third must still make at least this share of the run's total
            progress. An exponential approach with a time constant of a sixth of the run leaves
            5% for the last third; a linear descent leaves 33%. On the tuning runs healthy ones
            left at most 0.13, runs at a rate 30-300x too small mostly 0.15-0.85.
        min_late_drop_noise: the last third's progress must exceed this many standard errors of
            a third's median (3: a one-in-a-thousand fluke for noise alone).
        min_steadiness: minimum Spearman rank correlation between time and the block medians
            (sign flipped): 0.7 means the loss falls from block to block with few pauses.
        steady_late_drop_noise / steady_min_steadiness / steady_total_drop_noise: a rate far too
            small makes progress close to the noise, so the last third alone may show fewer than
            ``min_late_drop_noise`` standard errors. Such a run still counts when it falls very
            steadily (``steady_min_steadiness``: 0.85, nearly every block below the one before)
            and significantly over the whole run (``steady_total_drop_noise`` standard errors)
            and the last third still shows ``steady_late_drop_noise`` of them: the whole run, not
            one third, is then the evidence (a rank correlation of 0.85 over 12 block medians
            is itself a significance test, p ~ 2e-4, independent of the per-step noise model).
            Healthy tuning runs never reach ``late_share`` with such steadiness, so this adds no
            false alarms there.

    Returns:
        ``[]`` or one ``slow_convergence`` finding (``warning``).
    """
    late_share = require_in_range("late_share", late_share, 0.0, 1.0)
    min_late_drop_noise = require_in_range("min_late_drop_noise", min_late_drop_noise, 0.0, 1e6)
    min_steadiness = require_in_range("min_steadiness", min_steadiness, -1.0, 1.0)
    steady_late_drop_noise = require_in_range(
        "steady_late_drop_noise", steady_late_drop_noise, 0.0, 1e6
    )
    steady_min_steadiness = require_in_range(
        "steady_min_steadiness", steady_min_steadiness, -1.0, 1.0
    )
    steady_total_drop_noise = require_in_range(
        "steady_total_drop_noise", steady_total_drop_noise, 0.0, 1e6
    )
    if prepared.first_nonfinite is not None:
        return []
    thresholds = (
        min_late_drop_noise,
        min_steadiness,
        steady_late_drop_noise,
        steady_min_steadiness,
        steady_total_drop_noise,
    )
    found = _judge(prepared, late_share, *thresholds)
    decay = _first_step_down(prepared)
    if found or decay is None:
        return found
    # The same thresholds: on the step-decay sets every healthy-labelled run it warns on (a
    # third of the constant-rate best) ended 2.2-100x higher than its twin at 3x the rate.
    found = _judge(_before(prepared, decay), late_share, *thresholds, MIN_STRETCH_POINTS)
    return [_before_decay(f, prepared, decay) for f in found]


def _judge(
    prepared: PreparedRun,
    late_share: float,
    min_late_drop_noise: float,
    min_steadiness: float,
    steady_late_drop_noise: float,
    steady_min_steadiness: float,
    steady_total_drop_noise: float,
    min_points: int = 3 * STEADINESS_BLOCKS,
) -> list[Finding]:
    """The test itself, on a finite loss (the thresholds as :func:`detect_slow_convergence`'s),
    judged on ``min_points`` or more."""
    y = prepared.loss
    n = y.size
    if n < min_points:
        return []
    if _never_changed(y) and prepared.lr_is_constant:
        level = float(y[0])
        return [_no_progress_finding(prepared, level, level, 0.0, exact=True)]
    third = n // 3
    # The starting level: the median of the first 2% of the run, however few points that is. A
    # per-epoch log's first point already averages the fast early drop; three points of a
    # 50-epoch log (6% of the run) would start after it, and a healthy run still falling
    # gently then showed most of its "progress" in the last third.
    head = max(1, int(np.ceil(0.02 * n)))
    start_level = robust_median(y[:head])
    middle = robust_median(y[third : 2 * third])
    end = robust_median(y[n - third :])
    total = start_level - end
    late = middle - end
    se = block_median_noise(prepared.noise, third)
    se_total = float(np.hypot(block_median_noise(prepared.noise, head), se))
    no_progress = (
        abs(total) < NO_PROGRESS_STANDARD_ERRORS * se_total
        and abs(late) < NO_PROGRESS_STANDARD_ERRORS * np.sqrt(2.0) * se  # nor within the run
    )
    # Not during a warmup: the loss often waits for the rate to grow (and a live run judged
    # early would be told it learned nothing). After it, a schedule that lowers the rate does
    # not explain a loss that never moved: under cosine and warmup-cosine, SGD at 300-3000x
    # below the best rate left the loss within its noise and was "keep". And not when the
    # level wanders: a rate far too *high* can also leave the loss where it started - it drops
    # to a high floor within the first few steps (hidden in the first 2%) and bounces there,
    # its level moving with the parameters; a rate too small to move them leaves independent
    # minibatch draws.
    if no_progress and _past_warmup(prepared) and not wanders(y, prepared.noise):
        return [_no_progress_finding(prepared, start_level, end, total / se_total)]
    if total <= 0 or late < late_share * total or late <= steady_late_drop_noise * se:
        return []
    steadiness = _steadiness(y)
    clear = late > min_late_drop_noise * se and steadiness >= min_steadiness
    faint_but_steady = steadiness >= steady_min_steadiness and total > steady_total_drop_noise * se
    if not (clear or faint_but_steady):
        return []
    first, last = int(prepared.steps[0]), int(prepared.steps[-1])
    message = (
        f"The loss was still falling steadily when the run ended at step {last}: the last third "
        f"brought {late / total:.0%} of the total progress ({fmt(middle)} -> {fmt(end)}), so the "
        f"learning rate looks too small for this budget."
    )
    evidence = {
        "start_level": start_level,
        "middle_level": middle,
        "end_level": end,
        "late_share_of_progress": float(late / total),
        "late_drop_in_standard_errors": float(late / se) if se > 0 else float("inf"),
        "steadiness": steadiness,
    }
    return [Finding("slow_convergence", first, last, "warning", message, evidence)]


def _first_step_down(prepared: PreparedRun) -> int | None:
    """Index of the first point whose LR fell to :data:`STEP_DOWN` of the starting LR or below,
    the LR having held exactly until then; ``None`` for any other schedule (a warmup, a smooth
    decay, a constant rate)."""
    lr = prepared.lr
    if lr is None or lr.size == 0 or not np.isfinite(lr).all() or lr[0] <= 0:
        return None
    moved = np.flatnonzero(np.abs(lr - lr[0]) > 1e-6 * lr[0])
    if moved.size == 0 or lr[moved[0]] > STEP_DOWN * lr[0]:
        return None
    return int(moved[0])


def _before(prepared: PreparedRun, decay: int) -> PreparedRun:
    """The run cut just before index ``decay`` (its first step down)."""
    lr_steps, lr_values = prepared.lr_steps, prepared.lr_values
    if lr_steps is not None and lr_values is not None:
        keep = lr_steps < prepared.steps[decay]
        lr_steps, lr_values = lr_steps[keep], lr_values[keep]
    assert prepared.lr is not None  # a step down was found in it
    return replace(
        prepared,
        steps=prepared.steps[:decay],
        loss=prepared.loss[:decay],
        lr=prepared.lr[:decay],
        lr_steps=lr_steps,
        lr_values=lr_values,
    )


def _before_decay(finding: Finding, prepared: PreparedRun, decay: int) -> Finding:
    """A finding on the stretch before the first step down, worded for the whole run."""
    assert prepared.lr is not None
    step, lr = int(prepared.steps[decay]), float(prepared.lr[0])
    if finding.evidence.get("no_progress"):
        what = f"did not measurably improve ({fmt(finding.evidence['start_level'])} -> "
        what += f"{fmt(finding.evidence['end_level'])}, within the noise)"
    else:
        share = finding.evidence["late_share_of_progress"]
        what = (
            f"was still falling steadily (the stretch's last third brought {share:.0%} of its "
            f"progress, {fmt(finding.evidence['middle_level'])} -> "
            f"{fmt(finding.evidence['end_level'])})"
        )
    message = (
        f"Before the LR was first lowered, at step {step}, the loss {what} at LR {fmt(lr)}: the "
        f"starting LR looks too small for its stretch, or the decay came too early."
    )
    evidence = {**finding.evidence, "before_decay_at_step": step}
    return replace(finding, message=message, evidence=evidence)


def _past_warmup(prepared: PreparedRun) -> bool:
    """A constant rate, or one that reached its peak before the run's last point."""
    if prepared.lr_is_constant or prepared.lr is None:
        return True
    return int(np.argmax(np.nan_to_num(prepared.lr, nan=-np.inf))) < prepared.n - 1


def _never_changed(y: np.ndarray) -> bool:
    """Every logged loss the same nonzero number (to float32's 7 digits): no minibatch noise,
    no progress. A loss at zero from the start has nothing left to learn."""
    level = abs(float(np.median(y)))
    return level > 0 and float(np.ptp(y)) <= 1e-7 * level


def _no_progress_finding(
    prepared: PreparedRun, start: float, end: float, z: float, *, exact: bool = False
) -> Finding:
    first, last = int(prepared.steps[0]), int(prepared.steps[-1])
    if exact:
        # Not even minibatch noise: the same batch each step and parameters that do not move.
        message = (
            f"The loss did not change at all between steps {first} and {last} (it stayed at "
            f"{fmt(start)}): the model is not training (frozen parameters, a loss detached from "
            "them, an optimizer over other parameters) - or the learning rate is far too small "
            "to move it."
        )
    else:
        message = (
            f"The loss did not measurably improve between steps {first} and {last} "
            f"({fmt(start)} -> {fmt(end)}, within the noise): the learning rate looks far too "
            "small to move it - or the model is not training (frozen parameters, a loss "
            "detached from them)."
        )
    evidence = {
        "start_level": start,
        "end_level": end,
        "drop_in_standard_errors": float(z),
        "no_progress": True,
        "never_changed": exact,
    }
    return Finding("slow_convergence", first, last, "warning", message, evidence)


def _steadiness(y: np.ndarray) -> float:
    """Spearman correlation of block medians with time, sign flipped (1 = strictly falling):
    :data:`STEADINESS_BLOCKS` blocks, or on fewer than twice as many points one per pair."""
    blocks = min(STEADINESS_BLOCKS, y.size // 2)
    size = y.size // blocks
    body = y[: size * blocks].reshape(blocks, size)
    medians = np.median(body[:, :: max(1, size // 2000)], axis=1)
    ranks = medians.argsort().argsort().astype(np.float64)
    t = np.arange(blocks, dtype=np.float64)
    return float(-np.corrcoef(t, ranks)[0, 1]) if ranks.std() > 0 else 0.0
