"""Sweep analysis: runs of one task at different LRs -> the LR-sensitivity curve and a pick.

The curve is the final loss (a robust mean of the last ~10% of finite loss; ``inf`` for a run that
diverged) against each run's base LR. The pick is the best LR of the grid refined by a parabola in
log-LR through it and its neighbours; a best LR at the edge of the grid says to extend the sweep
that way instead.

Example::

    curve = sensitivity_curve(runs)          # [SweepPoint(lr=0.001, final_loss=0.31, ...), ...]
    analyze_sweep(runs).suggested_lr         # e.g. 0.021
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lrwatch.analysis.findings import Finding, Recommendation
from lrwatch.analysis.recommend_context import base_lr_from_params, fmt
from lrwatch.run import Run

# The final loss is the robust mean of this trailing fraction of the finite loss ...
FINAL_FRACTION = 0.1
# ... and of at least this many points, so short runs still average out minibatch noise.
MIN_FINAL_POINTS = 5
# Trim this fraction at each end before averaging: a few spikes do not move the level.
TRIM = 0.1
# LRs whose final loss is within 50% of the best (losses > 0; else within 10% of the curve's
# spread) form the "near-best" range reported with the pick: about what seed noise moves.
NEAR_BEST = 0.5
NEAR_BEST_SPREAD = 0.1


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its base LR and where its loss ended up."""

    run: str
    lr: float
    final_loss: float  # inf when the run diverged
    best_loss: float  # lowest finite loss logged (nan if none)
    diverged: bool

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("final_loss", "best_loss"):
            if not np.isfinite(out[key]):
                out[key] = str(out[key])
        return out


def base_lr(run: Run) -> float | None:
    """A run's base LR: the max of its LR series (the peak of any schedule), else its params."""
    series = run.lr
    if series is not None:
        values = series.cleaned().values
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            return float(values.max())
    return base_lr_from_params(run.params)


def final_loss(values: np.ndarray) -> tuple[float, bool]:
    """``(final loss, diverged)``: trimmed mean of the last ~10% of finite loss, or inf.

    A run diverged when its loss turned non-finite, or ended above every one of its first
    points (blew up while staying finite).
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.size < values.size:
        return float("inf"), True
    k = min(finite.size, max(MIN_FINAL_POINTS, int(np.ceil(FINAL_FRACTION * finite.size))))
    tail, head = np.sort(finite[-k:]), finite[:k]
    cut = int(TRIM * k)
    level = float(np.mean(tail[cut : k - cut] if k - 2 * cut > 0 else tail))
    if level > float(np.max(head)) and finite.size > k:
        return float("inf"), True
    return level, False


# A sensitivity curve needs a minimum, a left and a right side: three LRs at least.
MIN_SWEEP_LRS = 3
# Params that may differ between the runs of one sweep: the rate itself (Ultralytics and YOLOv5
# call it lr0), seeds, names, and the folders a run writes to (the Hugging Face Trainer logs its
# output_dir and a timestamped logging_dir as params, so no two of its runs agreed; a data_dir
# is the task, and must agree).
_SWEEP_VARYING = re.compile(
    r"(^|[._/-])(lr0?|learning_rate|base_lr|max_lr|peak_lr|seed|name|run_name"
    r"|(output|logging|log|save|checkpoint|ckpt|run|out)_?dir)([._/-]|$)",
    re.IGNORECASE,
)


def varies_within_a_task(key: str) -> bool:
    """Whether param ``key`` may differ between runs of one task: the LR, seeds, names, the
    folders a run writes to (see :data:`_SWEEP_VARYING`)."""
    return bool(_SWEEP_VARYING.search(key))


# MLflow's tag naming the run a nested run belongs to (``mlflow.start_run(nested=True)``).
PARENT_RUN_TAG = "mlflow.parentRunId"


def trial_runs(runs: Sequence[Run]) -> list[Run]:
    """``runs`` less the parents of others among them and less LR range tests.

    An Optuna study or a hyperopt search that logs its trials as nested runs keeps the search's
    own params (``n_trials``) and summary metrics (``best_loss``) in the parent, which trained
    nothing. Counted as a trial, its params kept the trials from reading as one sweep, and its
    summary could be a point of the curve. A range test trains at no one rate: analysed beside a
    sweep with ``--sweep``, the top of its ramp (1.28) and its blown-up last loss were a point
    ("Of 7 LRs from 0.0001 to 1.28")."""
    parents = {run.tags.get(PARENT_RUN_TAG) for run in runs}
    return [run for run in runs if run.id not in parents and not run.is_range_test]


def distinct_lrs(runs: Sequence[Run]) -> set[float]:
    """The base LRs of ``runs``, rounded so that one rate read twice counts once."""
    return {round(lr, 12) for lr in (base_lr(run) for run in runs) if lr is not None}


def looks_like_sweep(runs: Sequence[Run]) -> bool:
    """True when ``runs`` read as one task trained at several LRs.

    That is, among the :func:`trial_runs`: at least :data:`MIN_SWEEP_LRS` distinct base LRs, and
    every run carries params that agree once LR, seed and name params are set aside. Runs
    without params (saved files) never qualify on their own: the caller must say they are a
    sweep (``lrwatch analyze --sweep``).
    """
    runs = trial_runs(runs)
    if not runs or any(not run.params for run in runs):
        return False
    if len(distinct_lrs(runs)) < MIN_SWEEP_LRS:
        return False

    def task_params(run: Run) -> dict[str, str]:
        return {k: v for k, v in run.params.items() if not varies_within_a_task(k)}

    first = task_params(runs[0])
    return all(task_params(run) == first for run in runs[1:])


def diverged_in(findings: Sequence[Finding]) -> bool:
    """Whether a run's findings hold a critical divergence: it diverged, for the sweep too."""
    return any(f.kind == "divergence" and f.severity == "critical" for f in findings)


def _analysis_says_diverged(run: Run) -> bool:
    from lrwatch.analysis.detectors import detect_divergence
    from lrwatch.analysis.prepare import prepare

    return diverged_in(detect_divergence(prepare(run)))


def sensitivity_curve(
    runs: Sequence[Run], *, diverged: Collection[str] | None = None
) -> list[SweepPoint]:
    """One :class:`SweepPoint` per trial run (:func:`trial_runs`) with a loss and a base LR,
    sorted by LR.

    A run diverged when :func:`final_loss` says so or when its own analysis found a critical
    divergence (one that stayed finite: a loss thrown to 20x its first value by the first
    steps still has a final level). ``diverged``: the ids of the runs whose analysis did, when
    the caller analysed them already; else the divergence detector judges each run here.
    """
    points = []
    for run in trial_runs(runs):
        loss = run.loss
        lr = base_lr(run)
        if loss is None or loss.is_empty or lr is None:
            continue
        values = loss.cleaned().values
        final, gone = final_loss(values)
        if not gone and (
            run.id in diverged if diverged is not None else _analysis_says_diverged(run)
        ):
            final, gone = float("inf"), True
        finite = values[np.isfinite(values)]
        best = float(finite.min()) if finite.size else float("nan")
        points.append(SweepPoint(run.id, lr, final, best, gone))
    return sorted(points, key=lambda p: (p.lr, p.run))


def analyze_sweep(
    runs: Sequence[Run], *, diverged: Collection[str] | None = None
) -> Recommendation | None:
    """The sweep's recommendation, or ``None`` with fewer than two distinct LRs.

    Returns a :class:`Recommendation` with action ``use_lr`` (best inside the grid),
    ``decrease_lr`` / ``increase_lr`` (best at an edge: extend the sweep that way, or every run
    diverged). ``evidence["curve"]`` holds the points ``[{lr, final_loss, best_loss, diverged,
    run}]`` for the dashboard's sensitivity plot. ``diverged``: as for :func:`sensitivity_curve`.
    """
    curve = _one_point_per_lr(sensitivity_curve(runs, diverged=diverged))
    if len(curve) < 2:
        return None
    lrs = np.array([p.lr for p in curve])
    finals = np.array([p.final_loss for p in curve])
    evidence: dict[str, Any] = {"curve": [p.to_dict() for p in curve]}
    ok = np.isfinite(finals)
    # The grid's typical step, to 4 digits: exp(log) round trips leave 10.000000000000002.
    ratio = float(f"{np.exp(np.median(np.diff(np.log(lrs)))):.4g}")
    if not ok.any():
        return Recommendation(
            action="decrease_lr",
            suggested_lr=float(lrs[0] / ratio),
            factor=1 / ratio,
            message=(
                f"Every run of the sweep diverged (LRs {fmt(lrs[0])} to {fmt(lrs[-1])}). "
                f"Extend it downward: try {fmt(lrs[0] / ratio)} and below."
            ),
            evidence=evidence,
        )
    best = int(np.nanargmin(np.where(ok, finals, np.nan)))
    stable = lrs[ok]
    near = lrs[ok & (finals <= _near_best_limit(finals[ok], finals[best]))]
    evidence.update(
        grid_best_lr=float(lrs[best]),
        grid_best_final_loss=float(finals[best]),
        stable_range=[float(stable.min()), float(stable.max())],
        near_best_range=[float(near.min()), float(near.max())],
        grid_ratio=ratio,
    )
    # "Ended diverged", not "did not diverge": a run that blew up and came back has a warning
    # divergence in its own report, and its final loss stands on the curve.
    span = f"none of the runs at {fmt(stable.min())} to {fmt(stable.max())} ended diverged"
    if best == 0:
        return Recommendation(
            action="decrease_lr",
            suggested_lr=float(lrs[0] / ratio),
            factor=1 / ratio,
            message=(
                f"The lowest LR of the sweep, {fmt(lrs[0])}, ended lowest (final loss "
                f"{finals[0]:.4g}): the best LR may lie below the grid. Extend the sweep "
                f"downward, starting with {fmt(lrs[0] / ratio)}; {span}."
            ),
            evidence=evidence,
        )
    if best == len(curve) - 1:
        return Recommendation(
            action="increase_lr",
            suggested_lr=float(lrs[-1] * ratio),
            factor=ratio,
            message=(
                f"The highest LR of the sweep, {fmt(lrs[-1])}, ended lowest (final loss "
                f"{finals[-1]:.4g}) and nothing above it was tried: extend the sweep upward, "
                f"starting with {fmt(lrs[-1] * ratio)}."
            ),
            evidence=evidence,
        )
    suggested, how = _refine(lrs, finals, best)
    evidence.update(suggested_by=how)
    return Recommendation(
        action="use_lr",
        suggested_lr=suggested,
        factor=None,
        message=(
            f"Of {len(curve)} LRs from {fmt(lrs[0])} to {fmt(lrs[-1])}, {fmt(lrs[best])} ended "
            f"lowest (final loss {finals[best]:.4g}); {how} gives {fmt(suggested)}. "
            f"{_near_sentence(near, finals[best])}; {span}."
        ),
        evidence=evidence,
    )


def _near_best_limit(finals: np.ndarray, best: float) -> float:
    if best > 0:
        return best * (1 + NEAR_BEST)
    return best + NEAR_BEST_SPREAD * float(finals.max() - best)


def _near_sentence(near: np.ndarray, best: float) -> str:
    within = (
        f"within {NEAR_BEST:.0%} of that loss"
        if best > 0
        else f"within {NEAR_BEST_SPREAD:.0%} of the curve's spread from it"
    )
    if near.size < 2:
        return f"No other LR ended {within} (a sharp optimum: refine the grid around it)"
    return f"LRs from {fmt(near.min())} to {fmt(near.max())} ended {within}"


def _one_point_per_lr(curve: list[SweepPoint]) -> list[SweepPoint]:
    """Average repeated LRs (seeds) into one point; a diverged seed marks the LR diverged."""
    by_lr: dict[float, list[SweepPoint]] = {}
    for point in curve:
        by_lr.setdefault(float(np.float32(point.lr)), []).append(point)
    merged = []
    for group in by_lr.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        diverged = any(p.diverged for p in group)
        final = float("inf") if diverged else float(np.mean([p.final_loss for p in group]))
        best = float(np.nanmin([p.best_loss for p in group]))
        runs = ",".join(p.run for p in group)
        merged.append(SweepPoint(runs, group[0].lr, final, best, diverged))
    return sorted(merged, key=lambda p: p.lr)


def _refine(lrs: np.ndarray, finals: np.ndarray, best: int) -> tuple[float, str]:
    """A parabola in log-LR through the best point and its finite neighbours, clamped to them."""
    lo, hi = best - 1, best + 1
    x = np.log(lrs[[lo, best, hi]])
    y = finals[[lo, best, hi]]
    if not np.all(np.isfinite(y)):
        # The next LR up diverged: do not move toward the cliff.
        return float(lrs[best]), "the grid's best (the next LR up diverged, so no nudging up)"
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return float(lrs[best]), "the grid's best (the curve is not convex around it)"
    vertex = float(np.clip(-b / (2 * a), x[0], x[2]))
    return float(np.exp(vertex)), "a parabola in log-LR through it and its neighbours"


def relate_to_sweep(run_id: str, advice: Recommendation, sweep: Recommendation) -> dict | None:
    """Where one run of a sweep ended against the sweep's best, for its diagnosis to point at.

    A run's own advice is drawn from its curve alone; the sweep analysed with it may already
    hold the answer. Adam at its sweep's best rate on the regression MLP was still falling at
    the end, and told to raise the rate 3x - beside the sweep's own run at 3.3x, which ended
    twice as high. When the advice moves the rate (``increase_lr`` / ``decrease_lr``) and the
    sweep's next LR that way ended higher (or diverged), the note says so.

    Returns ``None`` when the run is not on the sweep's curve or the sweep has no finite best;
    else ``grid_best_lr``, ``grid_best_final_loss``, ``lr``, ``final_loss``,
    ``contradicts_advice`` (true when the next LR in the advice's direction ended higher, with
    ``next_lr_that_way`` and ``next_final_loss``) and a ``message`` for a person.
    """
    curve = sweep.evidence.get("curve") or []
    best_lr = sweep.evidence.get("grid_best_lr")
    best_final = sweep.evidence.get("grid_best_final_loss")
    index = next((i for i, p in enumerate(curve) if run_id in p["run"].split(",")), None)
    if index is None or best_lr is None:
        return None
    point = curve[index]
    final = float(point["final_loss"])  # SweepPoint.to_dict writes inf as text
    best_point = next(p for p in curve if p["lr"] == best_lr)
    if point["lr"] == best_lr:
        where = (
            f"this run's LR, {fmt(best_lr)}, ended lowest (final loss {best_final:.4g}"
            f"{_mean_of_runs(point)})"
        )
    else:
        ended = _diverged(point) if point["diverged"] else f"ended at {final:.4g}"
        where = (
            f"{fmt(best_lr)} ended lowest (final loss {best_final:.4g}{_mean_of_runs(best_point)}"
            f"); this run's LR, {fmt(point['lr'])}, {ended}{_mean_of_runs(point)}"
        )
    relation: dict[str, Any] = {
        "grid_best_lr": best_lr,
        "grid_best_final_loss": best_final,
        "lr": point["lr"],
        "final_loss": final,
        "contradicts_advice": False,
    }
    message = f"In the sweep analysed with it, {where}."
    step = {"increase_lr": 1, "decrease_lr": -1}.get(advice.action)
    if step is not None and 0 <= index + step < len(curve):
        neighbour = curve[index + step]
        other = float(neighbour["final_loss"])
        if np.isfinite(final) and not other < final:
            way = "higher" if step > 0 else "lower"
            outcome = (
                _diverged(neighbour)
                if neighbour["diverged"]
                else f"ended higher ({other:.4g}{_mean_of_runs(neighbour)})"
            )
            message += (
                f" Its next {way} LR, {fmt(neighbour['lr'])}, {outcome}: the sweep does not "
                f"bear out this run's advice to go {way} (its pick: {fmt(sweep.suggested_lr)})."
            )
            relation.update(
                next_lr_that_way=neighbour["lr"], next_final_loss=other, contradicts_advice=True
            )
    relation["message"] = message
    return relation


# An LR tried with several seeds is one point of the curve (_one_point_per_lr): its final loss
# is their mean, and it diverged when one of them did. The notes say so rather than pass it off
# as the run's own final loss.
def _mean_of_runs(point: dict) -> str:
    """``", the mean of its 3 runs"`` for a point of several runs, else ``""``."""
    runs = len(point["run"].split(","))
    return f", the mean of its {runs} runs" if runs > 1 and not point["diverged"] else ""


def _diverged(point: dict) -> str:
    runs = len(point["run"].split(","))
    return "diverged" if runs == 1 else f"diverged (at least one of its {runs} runs did)"
