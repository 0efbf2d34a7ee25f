"""The numbers behind the range-test and LR-sensitivity charts, from lrwatch.analysis.

Suggest first, draw second: the figures only draw what these functions return, and the tests
call them directly. Both analysis modules are imported lazily; when one is missing (an older
lrwatch), the chart says so instead of failing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrwatch.analysis.findings import Recommendation, Report
from lrwatch.run import Run


@dataclass(frozen=True)
class RangeTestCurve:
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray | None
    suggested_lr: float | None
    method: str | None
    note: str | None = None


@dataclass(frozen=True)
class SensitivityCurve:
    lrs: np.ndarray
    losses: np.ndarray
    names: list[str]
    recommendation: Recommendation | None
    loss_label: str = "final loss"
    note: str | None = None


def range_test_curve(run: Run, report: Report | None = None) -> RangeTestCurve:
    """Loss against LR for a range-test run, with the suggested LR and its method."""
    from lrwatch.analysis import range_test

    lrs, losses, smoothed = range_test.range_test_curve(run)
    extras = (report.extras.get("range_test") if report else None) or {}
    lr, method = _get(extras, "suggested_lr") or _get(extras, "lr"), _get(extras, "method")
    if lr is None:
        try:
            suggestion = range_test.suggest_lr(lrs, losses)
            lr, method = suggestion.lr, suggestion.method
        except ValueError as exc:
            return RangeTestCurve(lrs, losses, smoothed, None, None, note=str(exc))
    return RangeTestCurve(lrs, losses, smoothed, float(lr), method)


def sensitivity_curve(
    runs: Sequence[Run], *, diverged: Collection[str] | None = None
) -> SensitivityCurve:
    """Final loss against base LR for a sweep (inf = diverged), with the sweep's recommendation.

    Points come from :func:`lrwatch.analysis.sweep.sensitivity_curve`, the pick from
    :func:`lrwatch.analysis.analyze_sweep` (None when the sweep gives no verdict);
    ``diverged``: the ids of the runs whose report found a critical divergence, when known.
    """
    from lrwatch.analysis.sweep import analyze_sweep
    from lrwatch.analysis.sweep import sensitivity_curve as points_of

    points = points_of(list(runs), diverged=diverged)
    names = {run.id: run.display_name() for run in runs}
    lrs = np.array([p.lr for p in points], dtype=float)
    losses = np.array([p.final_loss for p in points], dtype=float)
    labels = [names.get(p.run, p.run) for p in points]
    recommendation = analyze_sweep(list(runs), diverged=diverged)
    note = None
    if len(set(lrs.tolist())) < 2:
        note = "a sweep needs runs at two or more learning rates (a base LR param each)"
    return SensitivityCurve(lrs, losses, labels, recommendation, "final loss", note)


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)
