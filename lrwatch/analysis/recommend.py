"""One primary recommendation per run, computed from the run's own history.

The primary finding is the most severe one, earliest first (a divergence at step 900 explains a
plateau after it, not the other way round). Its kind, the recognised schedule and the LR that was
in force when it began decide the action; the suggested LR is that LR scaled by a stated factor:

==================  =========================================================================
divergence          LR in force before it began x 0.3 (x 0.1 if the loss never improved);
                    during a warmup: peak below 0.3 x the LR at the onset; right after
                    the warmup peak: peak x 0.3 (or lengthen the warmup);
                    at the very start after early progress, no warmup: add a warmup;
                    an isolated spike the loss recovers from: clip gradients (a blow-up
                    it took a fifth of the run or more to come back from is the LR's)
oscillation         heavy-ball momentum >= 0.9: reduce momentum; otherwise LR x 0.5
plateau             under a constant (or still high) LR: decay the LR x 0.1; late in an
                    annealing schedule, or converged (an ``info`` plateau): keep
slow_convergence    LR (the peak, for a schedule) x 3
none                keep
==================  =========================================================================

Before any of these: an LR that went negative, or stayed at zero for most of the run, is a bug
to fix (``fix_lr``), whatever the loss did - scaling it would only scale the bug.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lrwatch.analysis.detectors._common import block_median_noise
from lrwatch.analysis.detectors.plateau import MIN_PLATEAU_POINTS
from lrwatch.analysis.findings import (
    KINDS,
    Finding,
    Recommendation,
    Schedule,
    is_provisional,
    severity_rank,
)
from lrwatch.analysis.prepare import PreparedRun, robust_median
from lrwatch.analysis.recommend_context import RunContext, at_lr, fmt, lr_phrase, scaled
from lrwatch.analysis.recommend_divergence import for_divergence, recovered_spike

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
# An LR of exactly 0 at a schedule's first or last steps is normal (a warmup from 0, a decay to
# 0); at zero for at least this share of the logged points, the optimizer mostly did nothing.
ZERO_LR_SHARE = 0.5
# A healthy run's "keep" states where the loss started: the median of its first this many points.
START_POINTS = 5
# ... and, at a constant rate, that the loss was still falling when the run ended: the median of
# its last fifth below that of the fifth before by this share of the run's progress and by 3
# standard errors (the quality sets' label rule for "still clearly improving").
STILL_FALLING_SHARE = 0.05


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
    ctx = RunContext(prepared, schedule, dict(params or {}))
    broken = _non_positive_lr(ctx)
    if broken is not None:
        return broken
    # A short run is judged only when a detector could judge it anyway (a loss that blew up).
    if prepared.n < min_points and not findings:
        return Recommendation(
            action="none",
            message=(
                f"Too short to judge: {prepared.n} loss point{'s' if prepared.n != 1 else ''} "
                f"logged, at least {min_points} "
                "are needed to tell a trend or a bounce from minibatch noise."
            ),
            evidence={"num_points": prepared.n, "min_points": min_points},
        )
    finding = primary_finding(findings)
    if finding is None:
        return recovered_spike(ctx) or _keep(ctx)
    handler = {
        "divergence": for_divergence,
        "oscillation": _for_oscillation,
        "plateau": _for_plateau,
        "slow_convergence": _for_slow,
    }[finding.kind]
    return handler(ctx, finding)


def _non_positive_lr(ctx: RunContext) -> Recommendation | None:
    """``fix_lr`` for an LR that went negative, or sat at zero for most of the run."""
    lr, steps = ctx.p.lr_values, ctx.p.lr_steps
    if lr is None or steps is None or lr.size == 0:
        return None
    positive = lr[lr > 0]
    suggested = float(positive.max()) if positive.size else None
    if (lr < 0).any():
        first = int(np.argmax(lr < 0))
        lowest = float(lr.min())
        cause = (
            "A schedule that decays past zero (a linear or polynomial decay run beyond its "
            "total steps) or a sign error sets it; end the decay at 0 or above."
            if positive.size
            else "A sign error sets it: use the rate's absolute value."
        )
        return Recommendation(
            action="fix_lr",
            suggested_lr=suggested if suggested is not None else -lowest,
            factor=None,
            message=(
                f"The LR went negative at step {int(steps[first])} (down to {fmt(lowest)}): the "
                f"optimizer then climbs the loss instead of descending it. {cause}"
            ),
            evidence={"first_negative_step": int(steps[first]), "lowest_lr": lowest},
        )
    zero_share = float(np.mean(lr == 0))
    if zero_share < ZERO_LR_SHARE:
        return None
    fallback = suggested or ctx.param_lr
    instead = (
        f"the {fmt(fallback)} it had elsewhere" if fallback else "an LR range test's suggestion"
    )
    return Recommendation(
        action="fix_lr",
        suggested_lr=fallback,
        factor=None,
        message=(
            f"The LR was 0 at {zero_share:.0%} of the logged steps: the optimizer did not move "
            f"the weights there. Set a positive LR, e.g. {instead}."
        ),
        evidence={"zero_lr_share": zero_share},
    )


def _for_oscillation(ctx: RunContext, f: Finding) -> Recommendation:
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
                f"The loss bounces without settling {where} {at_lr(lr)} with momentum "
                f"{momentum:g}, which multiplies the step by {1 / (1 - momentum):.0f}x. Reduce "
                f"momentum to {suggested_m:g} (halves the effective step), or keep the momentum "
                f"and set the LR to {lr_phrase(lr, OSCILLATION_FACTOR)}."
            ),
            evidence={
                "momentum": momentum,
                "suggested_momentum": suggested_m,
                "alternative_lr": scaled(lr, OSCILLATION_FACTOR),
            },
        )
    return Recommendation(
        action="decrease_lr",
        suggested_lr=scaled(lr, OSCILLATION_FACTOR),
        factor=OSCILLATION_FACTOR,
        message=(
            f"The loss bounces without settling {where} {at_lr(lr)}: each step overshoots "
            f"the valley. Use {lr_phrase(lr, OSCILLATION_FACTOR)}; halving the LR is "
            "enough when the bounce comes from overshooting."
        ),
        evidence={"lr_in_force": lr},
    )


def _for_plateau(ctx: RunContext, f: Finding) -> Recommendation:
    lr = ctx.lr_during(f)
    peak = ctx.schedule.peak_lr or lr
    where = f"from step {f.start_step} to {f.end_step}"
    # The schedule annealed the LR: levelling off there is convergence.
    if lr is not None and peak is not None and lr < ANNEALED_FRACTION * peak:
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
    if f.severity == "info":
        # The plateau detector's "converged": the level neither wanders nor stays correlated, as
        # a floor held up by a too-high LR would. Advising a decay for every constant-LR run that
        # levelled off would say nothing; the decay stays in the message as the optional step.
        return Recommendation(
            action="keep",
            suggested_lr=lr,
            factor=1.0,
            message=(
                f"The loss levelled off {where} {at_lr(lr)} and looks converged: its level "
                "does not wander the way a floor held up by a too-high LR does. Keep the LR; "
                f"stopping near step {f.start_step} would save the rest of the compute. If the "
                f"level matters, a decay to {lr_phrase(lr, PLATEAU_DECAY_FACTOR)} there may "
                "still take a little off."
            ),
            evidence={"lr_in_force": lr, "optional_decay_lr": scaled(lr, PLATEAU_DECAY_FACTOR)},
        )
    return Recommendation(
        action="decay_lr",
        suggested_lr=scaled(lr, PLATEAU_DECAY_FACTOR),
        factor=PLATEAU_DECAY_FACTOR,
        message=(
            f"The loss is flat {where} {at_lr(lr)}: at this LR the minibatch noise "
            f"sets the floor. Decay the LR around step {f.start_step} to "
            f"{lr_phrase(lr, PLATEAU_DECAY_FACTOR)} (a step decay), or use a cosine "
            "schedule that anneals to it."
        ),
        evidence={"lr_in_force": lr, "decay_at_step": f.start_step},
    )


def _for_slow(ctx: RunContext, f: Finding) -> Recommendation:
    lr = ctx.lr_during(f)
    peak = ctx.schedule.peak_lr
    base = peak if (peak is not None and ctx.schedule.kind not in ("missing",)) else lr
    which = "peak LR" if ctx.schedule.kind not in ("constant", "missing") else "LR"
    factor = NO_PROGRESS_SLOW_FACTOR if f.evidence.get("no_progress") else SLOW_FACTOR
    if f.evidence.get("never_changed"):
        # Not one digit moved, not even by minibatch noise: a bug in the training step is far
        # likelier than a rate too small, so the LR change is the fallback, not the advice.
        return Recommendation(
            action="check_training",
            suggested_lr=None,
            factor=None,
            message=(
                f"The loss did not change at all from step {f.start_step} to {f.end_step} "
                f"{at_lr(base, which)}: no update reaches it. Check the training step before "
                "the LR: the optimizer must hold this model's parameters, they must require "
                "grad, and the loss must be computed from them (not detached, not from a frozen "
                f"copy). If all that holds, the LR is far too small: try {lr_phrase(base, factor)}."
            ),
            evidence={"lr_in_force": lr, "fallback_lr": scaled(base, factor)},
        )
    if is_provisional(f):
        # The run is still running: a good rate also falls steadily early on (findings.py).
        return Recommendation(
            action="keep",
            suggested_lr=base,
            factor=1.0,
            message=(
                f"Up to step {f.end_step} the loss is still falling steadily "
                f"{at_lr(base, which)}, as a good rate's does early in a run: keep training. If "
                f"it still falls this steadily when the run ends, the rate was too small: use "
                f"{lr_phrase(base, factor)} next time."
            ),
            evidence={"lr_in_force": lr, "base_lr": base, "if_still_slow_lr": scaled(base, factor)},
        )
    moved = not f.evidence.get("no_progress")
    if moved and "before_decay_at_step" in f.evidence:
        return _for_slow_before_decay(f, base)
    what = "is still falling slowly" if moved else "did not measurably improve"
    # A loss still falling steadily at the end looks the same whether the rate is too small or
    # the budget too short: Adam at its sweep's best rate on the regression MLP still fell this
    # way at 1,000 steps (slow-convergence warnings on healthy runs of the Adam labelled sets),
    # and 3.3x that rate ended 1.5-2.3x higher on all 16 of their seeds. The x3 run tells the
    # two apart, and the message says how.
    short_budget = (
        " If it ends higher there, this rate was about right and the run needs more steps."
        if moved
        else ""
    )
    return Recommendation(
        action="increase_lr",
        suggested_lr=scaled(base, factor),
        factor=factor,
        message=(
            f"The loss {what} from step {f.start_step} to {f.end_step} "
            f"{at_lr(base, which)}: the steps are too small to use the budget. Raise it to "
            f"{lr_phrase(base, factor)}; if that trains stably, try another 3x "
            f"(an LR range test finds the edge in one short run).{short_budget}"
        ),
        evidence={"lr_in_force": lr, "base_lr": base},
    )


def _for_slow_before_decay(f: Finding, base: float | None) -> Recommendation:
    """Still falling steadily when a step decay first lowered the rate: the starting rate was
    too small for the stretch, or the stretch too short for the rate. On the step-decay labelled
    sets 3x the rate ended lower every time; on a batch-norm CNN near its best rate, the first
    decay often comes while the loss still falls (``benchmarks/cnn_check.py``), where holding
    the rate longer is the fix - the message names both."""
    step = f.evidence["before_decay_at_step"]
    return Recommendation(
        action="increase_lr",
        suggested_lr=scaled(base, SLOW_FACTOR),
        factor=SLOW_FACTOR,
        message=(
            f"A{at_lr(base, 'starting LR')[1:]} the loss was still falling steadily when the "
            f"LR was first lowered, at step {step}: the first stretch did not use its budget. "
            f"Raise the starting LR to {lr_phrase(base, SLOW_FACTOR)}; if that trains unstably "
            f"or ends higher, keep {fmt(base)} and hold it longer before the first decay."
        ),
        evidence={"lr_in_force": base, "base_lr": base, "decayed_at_step": step},
    )


def _under(schedule: Schedule) -> str:
    """'under a cosine schedule', 'under an exponential schedule', ..."""
    if schedule.kind == "unknown":
        return "under an LR schedule of no kind lrwatch knows"
    text = schedule.describe()
    return f"under {'an' if text[0] in 'aeiou' else 'a'} {text} schedule"


def _keep(ctx: RunContext) -> Recommendation:
    p = ctx.p
    lr = ctx.schedule.peak_lr if ctx.schedule.peak_lr is not None else ctx.param_lr
    finite = p.loss[np.isfinite(p.loss)]
    # The end level: the median of the last 5%. The start: of the first few points only - the
    # first 5% of a long run already holds most of its early drop (a 20,000-step run that began
    # at 1.4 "went from 0.015", the median of its first 1,000 steps).
    k = max(1, finite.size // 20)
    start, end = (
        (float(np.median(finite[: min(k, START_POINTS)])), float(np.median(finite[-k:])))
        if finite.size
        else (0.0, 0.0)
    )
    if ctx.schedule.kind == "missing":
        under = "with no LR logged" + ("" if lr is None else f" (base LR {fmt(lr)})")
    else:
        under = f"{_under(ctx.schedule)} (LR {fmt(lr)})"
    unjudged = ""
    if p.n < MIN_PLATEAU_POINTS and ctx.schedule.kind in ("constant", "missing"):
        # A per-epoch log of a constant rate: "keep" must not read as "no plateau either".
        unjudged = (
            f" A plateau is judged on {MIN_PLATEAU_POINTS} logged points or more, so whether a "
            "decay would lower the loss further was not: log the loss more often to have it "
            "checked."
        )
    evidence = {"initial_loss": start, "final_loss": end}
    falling = ""
    if ctx.schedule.kind in ("constant", "missing"):
        drop = _last_fifth_drop(finite, p.noise, start - end)
        if drop is not None:
            evidence["last_fifth_drop"] = drop
            falling = (
                f" It was still falling when the run ended ({fmt(drop)} lower over its last "
                "fifth): more steps would take it lower; with a fixed budget, a higher LR may "
                "get there sooner."
            )
    return Recommendation(
        action="keep",
        suggested_lr=lr,
        factor=1.0,
        message=(
            f"No problem found in {p.n} logged steps: the loss went from {start:.4g} to "
            f"{end:.4g} {under}. Keep it.{falling}{unjudged}"
        ),
        evidence=evidence,
    )


def _last_fifth_drop(loss: np.ndarray, noise: float, progress: float) -> float | None:
    """How far the median of the last fifth sits below that of the fifth before, when that is
    clearly more than noise and a real share of the run's progress (else None)."""
    fifth = loss.size // 5
    if fifth < 3 or progress <= 0:
        return None
    drop = robust_median(loss[-2 * fifth : -fifth]) - robust_median(loss[-fifth:])
    standard_error = block_median_noise(noise, fifth)
    if drop > STILL_FALLING_SHARE * progress and drop > 3 * standard_error:
        return drop
    return None
