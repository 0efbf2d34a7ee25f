"""Pure analysis: cleaned series in, findings, schedule and a recommendation out.

Imports numpy, scipy and pandas only; never MLflow, files, Dash or torch.

Example::

    from lrwatch.analysis import analyze
    report = analyze(run)
    report.recommendation.message
"""

from __future__ import annotations

from lrwatch.analysis.detectors import MIN_STEPS_TO_JUDGE, run_detectors
from lrwatch.analysis.findings import (
    Finding,
    Recommendation,
    Report,
    Schedule,
    severity_rank,
    while_running,
)
from lrwatch.analysis.prepare import prepare
from lrwatch.analysis.recommend import primary_finding, recommend
from lrwatch.analysis.recommend_groups import with_group_rates
from lrwatch.analysis.schedule import recognize_schedule
from lrwatch.analysis.sweep import SweepPoint, analyze_sweep, sensitivity_curve
from lrwatch.run import Run

__all__ = [
    "Finding",
    "Recommendation",
    "Report",
    "Schedule",
    "SweepPoint",
    "analyze",
    "analyze_sweep",
    "recognize_schedule",
    "sensitivity_curve",
]


def analyze(run: Run) -> Report:
    """Diagnose one run: findings, the recognised schedule and one primary recommendation.

    An LR range test (tag ``lrwatch.range_test=true``) is analysed as one instead.

    Args:
        run: any :class:`~lrwatch.run.Run` with a loss series; the LR series is optional. A run
            whose status is ``running`` is judged as the run so far: steady slow progress is a
            note until it ends (:func:`~lrwatch.analysis.findings.while_running`).

    Returns:
        A :class:`Report`; ``extras["verdict"]`` is ``"too_short"`` (fewer than
        ``MIN_STEPS_TO_JUDGE`` loss points and no finding; only a loss that blew up is judged
        at any length), ``"issues"`` (a warning or critical
        finding) or ``"ok"`` (none, or only informational ones); ``extras["primary_finding"]``
        is the index in ``findings`` of the finding the recommendation acts on, or ``None``.

    Raises:
        InputError: the run has no loss series.
    """
    if run.is_range_test:
        from lrwatch.analysis.range_test import analyze_range_test

        return analyze_range_test(run)
    prepared = prepare(run)
    findings = tuple(run_detectors(prepared))
    if run.status == "running":  # judged on the run so far: see findings.while_running
        findings = tuple(while_running(f) for f in findings)
    schedule = recognize_schedule(prepared.lr_steps, prepared.lr_values)
    recommendation = recommend(
        prepared, findings, schedule, params=run.params, min_points=MIN_STEPS_TO_JUDGE
    )
    recommendation = with_group_rates(recommendation, run)
    if prepared.n < MIN_STEPS_TO_JUDGE and not findings:
        verdict = "too_short"
    elif any(severity_rank(f.severity) >= severity_rank("warning") for f in findings):
        verdict = "issues"
    else:
        verdict = "ok"
    acted_on = primary_finding(findings)
    return Report(
        run=run.id,
        findings=findings,
        recommendation=recommendation,
        schedule=schedule,
        num_steps=prepared.n,
        extras={
            "verdict": verdict,
            # Index into findings of the one the recommendation acts on (None: none).
            "primary_finding": None if acted_on is None else findings.index(acted_on),
        },
    )
