"""Pure analysis: cleaned series in, findings, schedule and a recommendation out.

Imports numpy, scipy and pandas only; never MLflow, files, Dash or torch.
(Stub until the analysis core lands: the signatures below are the contract.)
"""

from __future__ import annotations

from collections.abc import Sequence

from lrwatch.analysis.findings import Finding, Recommendation, Report, Schedule
from lrwatch.run import Run

__all__ = ["Finding", "Recommendation", "Report", "Schedule", "analyze", "analyze_sweep"]


def analyze(run: Run) -> Report:
    """Diagnose one run: findings, the recognised schedule and one primary recommendation."""
    n = run.num_steps
    return Report(
        run=run.id,
        findings=(),
        recommendation=Recommendation(action="keep", message="(analysis not implemented yet)"),
        schedule=Schedule(kind="unknown"),
        num_steps=n,
    )


def analyze_sweep(runs: Sequence[Run]) -> Recommendation | None:
    """A sweep-level recommendation from the LR-vs-final-loss curve of runs of one task."""
    return None
