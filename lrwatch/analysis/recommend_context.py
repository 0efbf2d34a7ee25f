"""What the recommendation rules read from a run: the LR in force, base LR, momentum, span."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lrwatch import keys
from lrwatch.analysis.findings import Finding, Schedule
from lrwatch.analysis.prepare import PreparedRun

ADAPTIVE = ("adam", "adamw", "rmsprop", "adagrad", "adadelta", "nadam", "radam", "lamb")


class RunContext:
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
        # Halved, then doubled (both exact): the mean of the two middle values of an even count
        # overflows when they are near the float maximum (an LR of 9e307 in a corrupt log).
        return float(np.median(self.p.lr[lo:hi] * 0.5) * 2.0)

    def index_range(self, finding: Finding) -> tuple[int, int]:
        lo = int(np.searchsorted(self.p.steps, finding.start_step, side="left"))
        hi = int(np.searchsorted(self.p.steps, finding.end_step, side="right"))
        lo = min(lo, self.p.n - 1)
        return lo, max(hi, lo + 1)

    def momentum(self) -> float | None:
        optimizer = self.params.get(keys.PARAM_OPTIMIZER, "").lower()
        if optimizer in ADAPTIVE and optimizer != "rmsprop":
            return None  # Adam's beta1 is not heavy-ball momentum on the raw step
        for key in (keys.PARAM_PREFIX_OPTIMIZER + "momentum", "momentum"):
            value = as_float(self.params.get(key))
            if value is not None and 0 <= value < 1:
                return value
        return None

    @property
    def span(self) -> int:
        return max(int(self.p.steps[-1] - self.p.steps[0]), 1) if self.p.n else 1


def base_lr_from_params(params: Mapping[str, str]) -> float | None:
    """The base LR recorded in params (``base_lr``, ``lr``, ``learning_rate``, or Ultralytics'
    ``lr0``), if any."""
    for key in (keys.PARAM_BASE_LR, "lr", "learning_rate", "lr0"):
        value = as_float(params.get(key))
        if value is not None and value > 0:
            return value
    return None


def as_float(text) -> float | None:
    """``float(text)`` when it is a finite number, else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def fmt(value: float | None) -> str:
    """A value for a message: 3 significant digits, '?' when unknown."""
    return "?" if value is None else f"{value:.3g}"


def at_lr(lr: float | None, which: str = "LR") -> str:
    """'at LR 0.01', or 'at an unlogged LR' when neither the run nor its params give it."""
    return f"at {which} {fmt(lr)}" if lr is not None else f"at an unlogged {which}"


def scaled(lr: float | None, factor: float) -> float | None:
    """``lr * factor``, None when the LR is unknown."""
    return None if lr is None else float(lr * factor)


def lr_phrase(lr: float | None, factor: float) -> str:
    """'0.01 (0.1 x 0.1)' or, when neither the run nor its params give the LR, '0.1x the LR
    you used' (the message says the LR was not logged where it names the LR in force)."""
    if lr is None:
        return f"{factor:g}x the LR you used"
    return f"{fmt(lr * factor)} ({factor:g} x {fmt(lr)})"
