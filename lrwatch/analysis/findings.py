"""Findings, recommendations and reports: frozen data that serialises to the JSON contract.

The contract (``shared/design.md``)::

    {"kind": "divergence|oscillation|plateau|slow_convergence",
     "start_step": 1200, "end_step": 1450,
     "severity": "info|warning|critical",
     "message": "one sentence for a person",
     "evidence": {"...": "the numbers that triggered it"}}

Extra keys are welcome; the ones above may not change meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

KINDS = ("divergence", "oscillation", "plateau", "slow_convergence")
SEVERITIES = ("info", "warning", "critical")
ACTIONS = (
    "decrease_lr",
    "increase_lr",
    "decay_lr",
    "add_warmup",
    "lower_peak_lr",
    "clip_gradients",
    "reduce_momentum",
    "keep",
    "use_lr",  # range tests: start training at suggested_lr
    "fix_lr",  # the LR went negative or stayed at zero: a schedule or sign bug, not a tuning
    "check_training",  # the loss never changed at all: no update reaches it, whatever the LR
    "none",  # nothing to judge (e.g. a run too short, or no loss)
)


def severity_rank(severity: str | None) -> int:
    """0 for none, 1 info, 2 warning, 3 critical: for sorting and ``--fail-on``."""
    return 0 if severity is None else SEVERITIES.index(severity) + 1


def _json_number(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so the document stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        return _json_number(value.item())  # numpy scalar
    if isinstance(value, dict):
        return {str(k): _json_number(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_number(v) for v in value]
    return value


@dataclass(frozen=True)
class Finding:
    kind: str
    start_step: int
    end_step: int
    severity: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if self.end_step < self.start_step:
            raise ValueError("end_step precedes start_step")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start_step": int(self.start_step),
            "end_step": int(self.end_step),
            "severity": self.severity,
            "message": self.message,
            "evidence": _json_number(dict(self.evidence)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            kind=data["kind"],
            start_step=int(data["start_step"]),
            end_step=int(data["end_step"]),
            severity=data["severity"],
            message=data.get("message", ""),
            evidence=dict(data.get("evidence", {})),
        )


@dataclass(frozen=True)
class Recommendation:
    action: str
    message: str
    suggested_lr: float | None = None
    factor: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "suggested_lr": _json_number(self.suggested_lr),
            "factor": _json_number(self.factor),
            "message": self.message,
            "evidence": _json_number(dict(self.evidence)),
        }


@dataclass(frozen=True)
class Schedule:
    """The LR schedule recognised from the LR series.

    ``kind`` is one of :data:`lrwatch.analysis.schedule.KINDS` (constant, step, exponential,
    cosine, linear, polynomial, inverse_sqrt, cyclical, plateau_reductions, one_cycle, wsd -
    warmup-stable-decay -, warmup_only, unknown, missing: no LR logged); range tests report the
    test's own ramp (exponential or linear). ``warmup_steps`` is set when a warmup precedes
    it (e.g. ``kind="cosine", warmup_steps=500`` for linear warmup then cosine).
    """

    kind: str
    warmup_steps: int | None = None
    peak_lr: float | None = None
    initial_lr: float | None = None
    final_lr: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        text = self.kind.replace("_", " ")
        if self.kind == "plateau_reductions":
            # Drops by one factor at irregular steps are also what MultiStepLR's milestones
            # ([30, 60, 80] for ResNet) give; the LR alone cannot tell the two apart.
            text = "plateau-reduction or multi-step"
        if self.kind == "wsd":
            shape = str(self.details.get("decay_shape", "")).replace("_", " ")
            decay = f"{'an' if shape[:1] in ('e', 'i') else 'a'} {shape} decay"
            text = (
                f"constant, then {decay} from step {self.details.get('decay_start_step')} "
                "(warmup-stable-decay)"
            )
        if self.warmup_steps:
            text = f"warmup ({self.warmup_steps} steps) then {text}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return _json_number(
            {
                "kind": self.kind,
                "warmup_steps": self.warmup_steps,
                "peak_lr": self.peak_lr,
                "initial_lr": self.initial_lr,
                "final_lr": self.final_lr,
                "description": self.describe(),
                "details": dict(self.details),
            }
        )


@dataclass(frozen=True)
class Report:
    """Everything the analysis says about one run."""

    run: str
    findings: tuple[Finding, ...]
    recommendation: Recommendation
    schedule: Schedule
    num_steps: int
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def worst_severity(self) -> str | None:
        ranked = sorted(self.findings, key=lambda f: severity_rank(f.severity))
        return ranked[-1].severity if ranked else None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "run": self.run,
            "findings": [f.to_dict() for f in self.findings],
            "recommendation": self.recommendation.to_dict(),
            "schedule": self.schedule.to_dict(),
            "num_steps": int(self.num_steps),
        }
        out.update(_json_number(dict(self.extras)))
        return out


# Mid-run, a healthy run is still descending steadily, which is what slow convergence judges at
# a run's end. Fed point by point (chunks of 10), 138 of the 690 healthy labelled runs of the
# five final sets (20%) got a live slow-convergence warning in their first ~300 of 1,000 steps,
# all of them the steady-progress kind; the no-progress kind (a loss that never measurably
# moved) warned on none of them and on 189 of the 240 slow runs. So while a run is running,
# steady progress is a note, judged as a warning only once the run has ended.


def while_running(finding: Finding) -> Finding:
    """``finding`` as a run that has not ended yet shows it: slow convergence of the
    steady-progress kind becomes an ``info`` note that says so; others stay as they are."""
    if finding.kind != "slow_convergence" or finding.evidence.get("no_progress"):
        return finding
    if "before_decay_at_step" in finding.evidence:
        return finding  # the stretch before a step decay has ended: judged as it stands
    if severity_rank(finding.severity) <= severity_rank("info"):
        return finding
    share = finding.evidence.get("late_share_of_progress")
    latest = f" (the latest third brought {share:.0%} of the progress so far)" if share else ""
    message = (
        f"Up to step {finding.end_step} the loss is still falling steadily{latest}: early in a "
        "run a good rate does this too, so whether the rate is too small is judged when the run "
        "ends."
    )
    return replace(
        finding, severity="info", message=message, evidence={**finding.evidence, "run_ended": False}
    )


def is_provisional(finding: Finding) -> bool:
    """A note :func:`while_running` made: judged again when the run ends."""
    return finding.evidence.get("run_ended") is False


def not_borne_out(finding: Finding) -> Finding:
    """A divergence reported while the run ran, as its end shows it: the loss came back, so the
    whole run holds no divergence - an ``info`` note of what was reported, not a warning."""
    message = (
        f"Reported as a divergence while the run ran (from step {finding.start_step}), but the "
        "loss came back: the whole run shows no divergence (a climb it recovered from). "
        f"Reported then: {finding.message}"
    )
    evidence = {**finding.evidence, "reported_severity": finding.severity, "borne_out": False}
    return replace(finding, severity="info", message=message, evidence=evidence)


def is_not_borne_out(finding: Finding) -> bool:
    """A report :func:`not_borne_out` took back at the run's end."""
    return finding.evidence.get("borne_out") is False


def supersedes(new: Finding, old: Finding, tol: float = 0.0) -> bool:
    """``new`` is the end-of-run judgment of ``old``: of its provisional note, or of a report
    the whole run did not bear out (same kind, spans within ``tol`` steps of each other)."""
    judged_again = (is_provisional(old) and not is_provisional(new)) or (
        is_not_borne_out(new) and not is_not_borne_out(old)
    )
    return (
        judged_again
        and new.kind == old.kind
        and new.start_step <= old.end_step + tol
        and new.end_step >= old.start_step - tol
    )
