"""One primary recommendation per run, computed from the run's own history.

The primary finding is the most severe one, earliest first (a divergence at step 900 explains a
plateau after it, not the other way round). Its kind, the recognised schedule and the LR that was
in force when it began decide the action; the suggested LR is that LR scaled by a stated factor:

==================  =========================================================================
divergence          LR in force before it began x 0.3 (x 0.1 if the loss never improved);
                    during a warmup: peak below 0.3 x the LR at the onset; right after
                    the warmup peak: peak x 0.3 (or lengthen the warmup);
                    at the very start after early progress, no warmup: add a warmup;
                    an isolated spike the loss recovers from: clip gradients
oscillation         heavy-ball momentum >= 0.9: reduce momentum; otherwise LR x 0.5
plateau             under a constant (or still high) LR: decay the LR x 0.1; late in an
                    annealing schedule: keep (that is convergence)
slow_convergence    LR (the peak, for a schedule) x 3
none                keep
==================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lrwatch import keys
from lrwatch.analysis.detectors._common import MIN_LEVEL_POINTS, recovered_after
from lrwatch.analysis.findings import KINDS, Finding, Recommendation, Schedule, severity_rank
from lrwatch.analysis.prepare import PreparedRun, robust_diff_noise

# A run that trained for a while and then diverged sits just above its stable edge: one
# half-decade sweep step down (x0.3) leaves a margin for noise and sharpening.
DIVERGENCE_FACTOR = 0.3
# A loss that climbed from the first steps never trained: the LR is far too high, so go a full
# decade down.
NO_PROGRESS_DIVERGENCE_FACTOR = 0.1
# Bouncing without settling: in a quadratic valley GD oscillates for LR between 1/L and 2/L,
# so halving the LR brings it below 1/L where steps no longer overshoot.
OSCILLATION_FACTOR = 0.5
# Heavy-ball momentum multiplies the effective step by 1/(1-m); at or above 0.9 that is >= 10x.
HIGH_MOMENTUM = 0.9
# Plateau under a constant LR: the classic step decay (ResNet schedules) divides by 10.
PLATEAU_DECAY_FACTOR = 0.1
# A plateau at an LR below this fraction of the schedule's peak is the end of annealing.
ANNEALED_FRACTION = 0.3
# Slow convergence: one half-decade step up; re-check, then go further if it stays stable.
SLOW_FACTOR = 3.0
# A loss that never measurably moved sits at a rate orders of magnitude too small (on the quality
# runs, 1000-3000x below the best): x3 would take many runs to get anywhere, so go a decade up.
NO_PROGRESS_SLOW_FACTOR = 10.0
# "At the very start": within this fraction of the run's steps.
EARLY_FRACTION = 0.1

_ADAPTIVE = ("adam", "adamw", "rmsprop", "adagrad", "adadelta", "nadam", "radam", "lamb")


def primary_finding(findings: Sequence[Finding]) -> Finding | None:
    """The finding to act on: most severe first, then earliest.

    Ties go to instability first (divergence, oscillation, plateau, slow convergence): a run that
    bounces and creeps at once needs a steadier step before a larger one.
    """
    if not findings:
        return None
    return min(
        findings, key=lambda f: (-severity_rank(f.severity), f.start_step, KINDS.index(f.kind))
    )


def recommend(
    prepared: PreparedRun,
    findings: Sequence[Finding],
    schedule: Schedule,
    *,
    params: Mapping[str, str] | None = None,
    min_points: int = 30,
) -> Recommendation:
    """The one recommendation for a run.

    Args:
        prepared: the cleaned run.
        findings: the detectors' findings for it.
        schedule: the recognised LR schedule.
        params: the run's params (base LR and momentum are read from them when needed).
        min_points: fewer loss points than this and the run is "too short to judge".

    Returns:
        A :class:`Recommendation` whose message names the numbers and steps behind it.

    Example::

        recommend(prepare(run), run_detectors(prepare(run)), schedule).action  # 'decrease_lr'
    """
    ctx = _Context(prepared, schedule, dict(params or {}))
    # A short run is judged only when a detector could judge it anyway (a loss that blew up).
    if prepared.n < min_points and not findings:
        return Recommendation(
            action="none",
            message=(
                f"Too short to judge: {prepared.n} loss points logged, at least {min_points} "
                "are needed to tell a trend or a bounce from minibatch noise."
            ),
            evidence={"num_points": prepared.n, "min_points": min_points},
        )
    finding = primary_finding(findings)
    if finding is None:
        return _spike_or_keep(ctx)
    handler = {
        "divergence": _for_divergence,
        "oscillation": _for_oscillation,
        "plateau": _for_plateau,
        "slow_convergence": _for_slow,
    }[finding.kind]
    return handler(ctx, finding)


class _Context:
    """The run facts the rules read: LR in force at a step, base LR, momentum, levels."""

    def __init__(self, prepared: PreparedRun, schedule: Schedule, params: dict[str, str]):
        self.p = prepared
        self.schedule = schedule
        self.params = params
        self.param_lr = base_lr_from_params(params)

    def lr_before(self, step: int) -> float | None:
        """The LR in force just before ``step`` (at it, for the first point)."""
        if self.p.lr is None or self.p.n == 0:
            return self.param_lr
        index = int(np.searchsorted(self.p.steps, step, side="left"))
        return float(self.p.lr[min(max(index - 1, 0), self.p.n - 1)])

    def lr_during(self, finding: Finding) -> float | None:
        if self.p.lr is None:
            return self.param_lr
        lo, hi = self.index_range(finding)
        return float(np.median(self.p.lr[lo:hi]))

    def index_range(self, finding: Finding) -> tuple[int, int]:
        lo = int(np.searchsorted(self.p.steps, finding.start_step, side="left"))
        hi = int(np.searchsorted(self.p.steps, finding.end_step, side="right"))
        lo = min(lo, self.p.n - 1)
        return lo, max(hi, lo + 1)

    def momentum(self) -> float | None:
        optimizer = self.params.get(keys.PARAM_OPTIMIZER, "").lower()
        if optimizer in _ADAPTIVE and optimizer != "rmsprop":
            return None  # Adam's beta1 is not heavy-ball momentum on the raw step
        for key in (keys.PARAM_PREFIX_OPTIMIZER + "momentum", "momentum"):
            value = _as_float(self.params.get(key))
            if value is not None and 0 <= value < 1:
                return value
        return None

    @property
    def span(self) -> int:
        return max(int(self.p.steps[-1] - self.p.steps[0]), 1) if self.p.n else 1


def base_lr_from_params(params: Mapping[str, str]) -> float | None:
    """The base LR recorded in params (``base_lr``, ``lr`` or ``learning_rate``), if any."""
    for key in (keys.PARAM_BASE_LR, "lr", "learning_rate"):
        value = _as_float(params.get(key))
        if value is not None and value > 0:
            return value
    return None


def _as_float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def _scaled(lr: float | None, factor: float) -> float | None:
    return None if lr is None else float(lr * factor)


def _lr_phrase(lr: float | None, factor: float) -> str:
    """'0.01 (0.1 x 0.1)' or, without any known LR, '0.1x your LR (no LR was logged)'."""
    if lr is None:
        return f"{factor:g}x your learning rate (the run logged no LR and no base LR param)"
    return f"{fmt(lr * factor)} ({factor:g} x {fmt(lr)})"


def _warmup_end(schedule: Schedule, first_step: int) -> int | None:
    if schedule.warmup_steps:
        return first_step + schedule.warmup_steps - 1
    if schedule.kind in ("one_cycle", "warmup_only") and schedule.details.get("rise_steps"):
        return first_step + int(schedule.details["rise_steps"]) - 1
    return None


def _for_divergence(ctx: _Context, f: Finding) -> Recommendation:
    if _recovered(ctx, f):
        return _clip(ctx, f)
    lr = ctx.lr_before(f.start_step)
    first = int(ctx.p.lr_steps[0]) if ctx.p.lr_steps is not None else int(ctx.p.steps[0])
    warmup_end = _warmup_end(ctx.schedule, first)
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
                f"{_lr_phrase(base, DIVERGENCE_FACTOR)}."
            )
        elif after_peak:
            base = peak
            evidence.update(peak_lr=peak, warmup_steps=warmup, suggested_warmup_steps=2 * warmup)
            message = (
                f"The loss began to diverge at step {f.start_step}, right after the warmup "
                f"({warmup} steps to a peak LR of {fmt(peak)}). Lower the peak LR to "
                f"{_lr_phrase(base, DIVERGENCE_FACTOR)}, or lengthen the warmup to about "
                f"{2 * warmup} steps so the model reaches the peak in a flatter region."
            )
        if f.start_step <= warmup_end or after_peak:
            return Recommendation(
                action="lower_peak_lr",
                suggested_lr=_scaled(base, DIVERGENCE_FACTOR),
                factor=DIVERGENCE_FACTOR,
                message=message,
                evidence=evidence,
            )
    early = f.start_step - int(ctx.p.steps[0]) <= EARLY_FRACTION * ctx.span
    progressed = _progressed_before(ctx, f)
    evidence.update(early=early, improved_before=progressed)
    if early and not progressed:
        return Recommendation(
            action="decrease_lr",
            suggested_lr=_scaled(lr, NO_PROGRESS_DIVERGENCE_FACTOR),
            factor=NO_PROGRESS_DIVERGENCE_FACTOR,
            message=(
                f"The loss climbed from the start (divergence from step {f.start_step}) at LR "
                f"{fmt(lr)} and never improved: the LR is far too high. Use "
                f"{_lr_phrase(lr, NO_PROGRESS_DIVERGENCE_FACTOR)}; a warmup would only "
                "delay the blow-up. An LR range test finds the edge in one short run."
            ),
            evidence=evidence,
        )
    if early:
        warmup = max(int(2 * (f.start_step - int(ctx.p.steps[0]))), int(0.05 * ctx.span), 10)
        evidence["suggested_warmup_steps"] = warmup
        return Recommendation(
            action="add_warmup",
            suggested_lr=_scaled(lr, DIVERGENCE_FACTOR),
            factor=DIVERGENCE_FACTOR,
            message=(
                f"The loss improved at first, then diverged early, from step {f.start_step} at "
                f"LR {fmt(lr)}, with no warmup: the first steps are the fragile part. Add a "
                f"linear warmup of about {warmup} steps; if it still diverges, use "
                f"{_lr_phrase(lr, DIVERGENCE_FACTOR)} (the safe choice without a warmup)."
            ),
            evidence=evidence,
        )
    return Recommendation(
        action="decrease_lr",
        suggested_lr=_scaled(lr, DIVERGENCE_FACTOR),
        factor=DIVERGENCE_FACTOR,
        message=(
            f"The loss trained until step {f.start_step}, then diverged at LR {fmt(lr)}: the "
            f"LR is just above the stable edge. Use {_lr_phrase(lr, DIVERGENCE_FACTOR)} "
            "(one half-decade step down leaves a margin), or clip gradients if the blow-up "
            "started with a single bad batch."
        ),
        evidence=evidence,
    )


def _for_oscillation(ctx: _Context, f: Finding) -> Recommendation:
    lr = ctx.lr_during(f)
    momentum = ctx.momentum()
    where = f"from step {f.start_step} to {f.end_step}"
    if momentum is not None and momentum >= HIGH_MOMENTUM:
        # Doubling (1 - m) halves the effective step 1/(1-m), like halving the LR.
        suggested_m = round(2 * momentum - 1, 4)
        return Recommendation(
            action="reduce_momentum",
            suggested_lr=lr,
            factor=None,
            message=(
                f"The loss bounces without settling {where} at LR {fmt(lr)} with momentum "
                f"{momentum:g}, which multiplies the step by {1 / (1 - momentum):.0f}x. Reduce "
                f"momentum to {suggested_m:g} (halves the effective step), or keep the momentum "
                f"and use LR {_lr_phrase(lr, OSCILLATION_FACTOR)}."
            ),
            evidence={
                "momentum": momentum,
                "suggested_momentum": suggested_m,
                "alternative_lr": _scaled(lr, OSCILLATION_FACTOR),
            },
        )
    return Recommendation(
        action="decrease_lr",
        suggested_lr=_scaled(lr, OSCILLATION_FACTOR),
        factor=OSCILLATION_FACTOR,
        message=(
            f"The loss bounces without settling {where} at LR {fmt(lr)}: each step overshoots "
            f"the valley. Use {_lr_phrase(lr, OSCILLATION_FACTOR)}; halving the LR is "
            "enough when the bounce comes from overshooting."
        ),
        evidence={"lr_in_force": lr},
    )


def _for_plateau(ctx: _Context, f: Finding) -> Recommendation:
    lr = ctx.lr_during(f)
    peak = ctx.schedule.peak_lr or lr
    annealed = lr is not None and peak is not None and lr < ANNEALED_FRACTION * peak
    where = f"from step {f.start_step} to {f.end_step}"
    if annealed:
        return Recommendation(
            action="keep",
            suggested_lr=peak,
            factor=1.0,
            message=(
                f"The loss levelled off {where} while the {ctx.schedule.describe()} schedule "
                f"had annealed the LR to {fmt(lr)} ({lr / peak:.0%} of its peak {fmt(peak)}): "
                "that is convergence, not a stall. Keep the schedule; train longer or on more "
                "data if the level is too high."
            ),
            evidence={"lr_in_force": lr, "peak_lr": peak},
        )
    return Recommendation(
        action="decay_lr",
        suggested_lr=_scaled(lr, PLATEAU_DECAY_FACTOR),
        factor=PLATEAU_DECAY_FACTOR,
        message=(
            f"The loss is flat {where} at LR {fmt(lr)}: at this LR the minibatch noise "
            f"sets the floor. Decay the LR around step {f.start_step} to "
            f"{_lr_phrase(lr, PLATEAU_DECAY_FACTOR)} (a step decay), or use a cosine "
            "schedule that anneals to it."
        ),
        evidence={"lr_in_force": lr, "decay_at_step": f.start_step},
    )


def _for_slow(ctx: _Context, f: Finding) -> Recommendation:
    lr = ctx.lr_during(f)
    peak = ctx.schedule.peak_lr
    base = peak if (peak is not None and ctx.schedule.kind not in ("missing",)) else lr
    which = "peak LR" if ctx.schedule.kind not in ("constant", "missing") else "LR"
    factor = NO_PROGRESS_SLOW_FACTOR if f.evidence.get("no_progress") else SLOW_FACTOR
    what = (
        "did not measurably improve" if f.evidence.get("no_progress") else "is still falling slowly"
    )
    return Recommendation(
        action="increase_lr",
        suggested_lr=_scaled(base, factor),
        factor=factor,
        message=(
            f"The loss {what} from step {f.start_step} to {f.end_step} at "
            f"{which} {fmt(base)}: the steps are too small to use the budget. Raise it to "
            f"{_lr_phrase(base, factor)}; if that trains stably, try another 3x "
            "(an LR range test finds the edge in one short run)."
        ),
        evidence={"lr_in_force": lr, "base_lr": base},
    )


def _spike_or_keep(ctx: _Context) -> Recommendation:
    p = ctx.p
    if p.first_nonfinite is not None:
        bad = np.flatnonzero(~np.isfinite(p.loss))
        spike = Finding(
            kind="divergence",
            start_step=int(p.steps[bad[0]]),
            end_step=int(p.steps[bad[-1]]),
            severity="warning",
            message="",
        )
        if _recovered(ctx, spike):
            return _clip(ctx, spike)
    lr = ctx.schedule.peak_lr if ctx.schedule.peak_lr is not None else ctx.param_lr
    finite = p.loss[np.isfinite(p.loss)]
    k = max(1, finite.size // 20)
    start, end = (float(np.median(finite[:k])), float(np.median(finite[-k:]))) if k else (0, 0)
    return Recommendation(
        action="keep",
        suggested_lr=lr,
        factor=1.0,
        message=(
            f"No problem found in {p.n} logged steps: the loss went from {start:.4g} to "
            f"{end:.4g} under a {ctx.schedule.describe()} schedule (LR {fmt(lr)}). Keep it."
        ),
        evidence={"initial_loss": start, "final_loss": end},
    )


def _clip(ctx: _Context, f: Finding) -> Recommendation:
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
            f"earlier level at LR {fmt(lr)}: a bad batch, not a wrong LR. Clip gradients "
            "(e.g. max norm 1.0) and keep the LR; lower it only if the spikes recur."
        ),
        evidence={"spike_start_step": start, "spike_end_step": end},
    )


def _recovered(ctx: _Context, f: Finding) -> bool:
    """True when the loss after the finding's event is back at its level from before it."""
    lo, hi = ctx.index_range(f)
    return recovered_after(ctx.p.loss, lo, hi)


def _progressed_before(ctx: _Context, f: Finding) -> bool:
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
