"""The divergence rules: lower the LR or the warmup peak, add a warmup, or clip gradients.

Which one depends on when the loss began to climb: during or right after a warmup, at the very
start (with or without progress first), or after training for a while; a spike the loss
recovers from is a bad batch, not a wrong LR.
"""

from __future__ import annotations

import numpy as np

from lrwatch.analysis.detectors._common import MIN_LEVEL_POINTS, recovered_after
from lrwatch.analysis.findings import Finding, Recommendation, Schedule
from lrwatch.analysis.prepare import robust_diff_noise
from lrwatch.analysis.recommend_context import RunContext, at_lr, fmt, lr_phrase, scaled

# A run that trained for a while and then diverged sits just above its stable edge: one
# half-decade sweep step down (x0.3) leaves a margin for noise and sharpening.
DIVERGENCE_FACTOR = 0.3
# A loss that climbed from the first steps never trained: the LR is far too high, so go a full
# decade down.
NO_PROGRESS_DIVERGENCE_FACTOR = 0.1
# "At the very start": within this fraction of the run's steps.
EARLY_FRACTION = 0.1


def recovered_spike(ctx: RunContext) -> Recommendation | None:
    """Clip gradients when the run's non-finite losses were a spike it recovered from."""
    p = ctx.p
    if p.first_nonfinite is None:
        return None
    bad = np.flatnonzero(~np.isfinite(p.loss))
    spike = Finding(
        kind="divergence",
        start_step=int(p.steps[bad[0]]),
        end_step=int(p.steps[bad[-1]]),
        severity="warning",
        message="",
    )
    return _clip(ctx, spike) if _recovered(ctx, spike) else None


def _warmup_last_step(schedule: Schedule, first_step: int) -> int | None:
    """The last step of the schedule's warmup (or one-cycle rise), None without one."""
    if schedule.warmup_steps:
        return first_step + schedule.warmup_steps - 1
    if schedule.kind in ("one_cycle", "warmup_only") and schedule.details.get("rise_steps"):
        return first_step + int(schedule.details["rise_steps"]) - 1
    return None


def for_divergence(ctx: RunContext, f: Finding) -> Recommendation:
    """The recommendation for a divergence finding (see :mod:`lrwatch.analysis.recommend`)."""
    # A blow-up the detector already judged as one the loss came back from (slowly) is the LR's
    # doing, not a bad batch: the checks below say what to change.
    if not f.evidence.get("came_back") and _recovered(ctx, f):
        return _clip(ctx, f)
    lr = ctx.lr_before(f.start_step)
    if ctx.p.first_nonfinite == 0 and int(ctx.p.steps[0]) == 0:
        # Step 0's loss is computed before the first update: no learning rate made it NaN/inf.
        bad = ctx.p.loss[0]
        return Recommendation(
            action="check_training",
            suggested_lr=lr,
            factor=None,
            message=(
                f"The loss was already {bad} at step 0, computed before any update: the "
                "learning rate cannot have caused it. Check the data (NaN/inf inputs or "
                "targets), the loss (a log of 0, a division by zero) and the initialisation; "
                "judge the LR once the first loss is finite."
            ),
            evidence={"first_loss": float(bad)},
        )
    first = int(ctx.p.lr_steps[0]) if ctx.p.lr_steps is not None else int(ctx.p.steps[0])
    warmup_end = _warmup_last_step(ctx.schedule, first)
    evidence = {"finding_start_step": f.start_step, "lr_in_force": lr}
    if warmup_end is not None:
        peak = ctx.schedule.peak_lr
        warmup = warmup_end - first + 1
        after_peak = (
            warmup_end < f.start_step <= warmup_end + max(warmup, EARLY_FRACTION * ctx.span)
        )
        if f.start_step <= warmup_end:
            # Still rising: the LR at the onset is already too high, so a longer warmup would
            # only reach the same LR later. Cap the peak below it.
            base = min(lr, peak) if (lr is not None and peak is not None) else (lr or peak)
            evidence.update(peak_lr=peak, warmup_steps=warmup)
            message = (
                f"The loss began to diverge at step {f.start_step}, during the warmup, when "
                f"the rising LR had reached {fmt(lr)} (highest logged: {fmt(peak)}). This "
                f"model does not tolerate that LR here: set the peak LR to "
                f"{lr_phrase(base, DIVERGENCE_FACTOR)}."
            )
        elif after_peak:
            base = peak
            evidence.update(peak_lr=peak, warmup_steps=warmup, suggested_warmup_steps=2 * warmup)
            message = (
                f"The loss began to diverge at step {f.start_step}, right after the warmup "
                f"({warmup} steps to a peak LR of {fmt(peak)}). Lower the peak LR to "
                f"{lr_phrase(base, DIVERGENCE_FACTOR)}, or lengthen the warmup to about "
                f"{2 * warmup} steps so the model reaches the peak in a flatter region."
            )
        if f.start_step <= warmup_end or after_peak:
            return Recommendation(
                action="lower_peak_lr",
                suggested_lr=scaled(base, DIVERGENCE_FACTOR),
                factor=DIVERGENCE_FACTOR,
                message=message,
                evidence=evidence,
            )
    if f.evidence.get("came_back") and "first_loss" in f.evidence:  # thrown off, then back
        return _blown_up_at_start(ctx, f, lr)
    early = f.start_step - int(ctx.p.steps[0]) <= EARLY_FRACTION * ctx.span
    progressed = _progressed_before(ctx, f)
    evidence.update(early=early, improved_before=progressed)
    # A log that ends at the blow-up spans only the steps before it, so "early" says nothing
    # there: with fewer points before the onset than a level needs, the run had no time to train.
    at_start = early or ctx.index_range(f)[0] < MIN_LEVEL_POINTS
    if at_start and not progressed:
        return Recommendation(
            action="decrease_lr",
            suggested_lr=scaled(lr, NO_PROGRESS_DIVERGENCE_FACTOR),
            factor=NO_PROGRESS_DIVERGENCE_FACTOR,
            message=(
                f"The loss climbed from the start (divergence from step {f.start_step}) "
                f"{at_lr(lr)} and never improved: the LR is far too high. Use "
                f"{lr_phrase(lr, NO_PROGRESS_DIVERGENCE_FACTOR)}; a warmup would only "
                "delay the blow-up. An LR range test finds the edge in one short run."
            ),
            evidence=evidence,
        )
    if early:
        warmup = max(int(2 * (f.start_step - int(ctx.p.steps[0]))), int(0.05 * ctx.span), 10)
        evidence["suggested_warmup_steps"] = warmup
        return Recommendation(
            action="add_warmup",
            suggested_lr=scaled(lr, DIVERGENCE_FACTOR),
            factor=DIVERGENCE_FACTOR,
            message=(
                f"The loss improved at first, then diverged early, from step {f.start_step} "
                f"{at_lr(lr)}, with no warmup: the first steps are the fragile part. Add a "
                f"linear warmup of about {warmup} steps; if it still diverges, use "
                f"{lr_phrase(lr, DIVERGENCE_FACTOR)} (the safe choice without a warmup)."
            ),
            evidence=evidence,
        )
    return Recommendation(
        action="decrease_lr",
        suggested_lr=scaled(lr, DIVERGENCE_FACTOR),
        factor=DIVERGENCE_FACTOR,
        message=(
            f"The loss trained until step {f.start_step}, then diverged {at_lr(lr)}: the "
            f"LR is just above the stable edge. Use {lr_phrase(lr, DIVERGENCE_FACTOR)} "
            "(one half-decade step down leaves a margin), or clip gradients if the blow-up "
            "started with a single bad batch."
        ),
        evidence=evidence,
    )


def _blown_up_at_start(ctx: RunContext, f: Finding, lr: float | None) -> Recommendation:
    """The first steps threw the loss to 3x its first value or more, and it came back."""
    first, level = f.evidence["first_loss"], f.evidence["start_level"]
    return Recommendation(
        action="decrease_lr",
        suggested_lr=scaled(lr, NO_PROGRESS_DIVERGENCE_FACTOR),
        factor=NO_PROGRESS_DIVERGENCE_FACTOR,
        message=(
            f"The first steps {at_lr(lr)} threw the loss from {fmt(first)} to around "
            f"{fmt(level)} (up to step {f.end_step}) before it came back: the LR is far "
            f"too high, and the level the loss settled at is likely held up by it. Use "
            f"{lr_phrase(lr, NO_PROGRESS_DIVERGENCE_FACTOR)}; a warmup would only carry the "
            "same LR past the first steps."
        ),
        evidence={"finding_start_step": f.start_step, "lr_in_force": lr},
    )


def _clip(ctx: RunContext, f: Finding) -> Recommendation:
    lr = ctx.lr_before(f.start_step)
    lo, hi = ctx.index_range(f)
    bad_steps = ctx.p.steps[lo:hi][~np.isfinite(ctx.p.loss[lo:hi])]
    if bad_steps.size:  # the spike is its non-finite points, not the detector's whole span
        start, end = int(bad_steps[0]), int(bad_steps[-1])
        what = f"{bad_steps.size} non-finite loss value{'s' if bad_steps.size > 1 else ''}"
    else:
        start, end, what = f.start_step, f.end_step, "a loss far above the trend"
    where = f"at step {start}" if start == end else f"from step {start} to {end}"
    return Recommendation(
        action="clip_gradients",
        suggested_lr=lr,
        factor=None,
        message=(
            f"An isolated loss spike {where} ({what}), after which the loss came back to its "
            f"earlier level {at_lr(lr)}: a bad batch, not a wrong LR. Clip gradients "
            "(e.g. max norm 1.0) and keep the LR; lower it only if the spikes recur."
        ),
        evidence={"spike_start_step": start, "spike_end_step": end},
    )


def _recovered(ctx: RunContext, f: Finding) -> bool:
    """True when the loss after the finding's event is back at its level from before it."""
    lo, hi = ctx.index_range(f)
    return recovered_after(ctx.p.loss, lo, hi)


def _progressed_before(ctx: RunContext, f: Finding) -> bool:
    """Did the loss improve (beyond noise) before the divergence began?"""
    p = ctx.p
    lo, _ = ctx.index_range(f)
    head = p.loss[: max(lo, 1)]
    head = head[np.isfinite(head)]
    if head.size < MIN_LEVEL_POINTS:
        return False
    k = max(1, min(5, head.size // 10))
    noise = max(robust_diff_noise(head), 1e-12 * abs(head[0]))
    return bool(np.min(head) < np.median(head[:k]) - 3 * noise)
