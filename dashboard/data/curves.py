"""The numbers behind the range-test and LR-sensitivity charts, from lrwatch.analysis.

Suggest first, draw second: the figures only draw what these functions return, and the tests
call them directly. Both analysis modules are imported lazily; when one is missing (an older
lrwatch), the chart says so instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    try:
        from lrwatch.analysis import range_test
    except ImportError:
        return _aligned_curve(run, note="range-test analysis is not available in this lrwatch")
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


def sensitivity_curve(runs: Sequence[Run]) -> SensitivityCurve:
    """Final (or best) loss against base LR for a sweep, with the sweep's recommendation."""
    try:
        from lrwatch.analysis.sweep import sensitivity_curve as curve_of

        from lrwatch.analysis import analyze_sweep
    except ImportError:
        empty = np.empty(0)
        return SensitivityCurve(empty, empty, [], None,
                                note="sweep analysis is not available in this lrwatch")  # fmt: skip
    curve = curve_of(list(runs))
    lrs, losses, names, label = _curve_points(curve, runs)
    recommendation = analyze_sweep(list(runs)) if len(runs) >= 2 else None
    note = None if len(runs) >= 2 else "a sweep needs at least two runs with different LRs"
    return SensitivityCurve(lrs, losses, names, recommendation, label, note)


def _curve_points(curve: Any, runs: Sequence[Run]) -> tuple[np.ndarray, np.ndarray, list, str]:
    """Accept the sweep module's curve as an object or a mapping with lrs/losses (+ names)."""
    lrs = _get(curve, "lrs") if _get(curve, "lrs") is not None else _get(curve, "lr")
    losses = _get(curve, "losses") if _get(curve, "losses") is not None else _get(curve, "loss")
    lrs, losses = (
        np.asarray(lrs if lrs is not None else [], float),
        np.asarray(losses if losses is not None else [], float),
    )
    names = _get(curve, "names") or _get(curve, "run_names") or _get(curve, "run_ids")
    if names is None:
        names = [r.display_name() for r in runs] if len(runs) == lrs.size else None
    label = _get(curve, "loss_label") or _get(curve, "metric") or "final loss"
    return lrs, losses, list(names) if names is not None else [], str(label)


def _aligned_curve(run: Run, *, note: str) -> RangeTestCurve:
    if run.loss is None or run.lr is None:
        return RangeTestCurve(np.empty(0), np.empty(0), None, None, None, note=note)
    steps, in_loss, in_lr = np.intersect1d(run.loss.steps, run.lr.steps, return_indices=True)
    return RangeTestCurve(run.lr.values[in_lr], run.loss.values[in_loss], None, None, None, note)


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)
