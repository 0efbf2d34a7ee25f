"""The four detectors and their registry: one module per detector, one shared contract.

Every detector is a pure function ``detect_x(prepared, *, threshold=...) -> list[Finding]`` over a
:class:`~lrwatch.analysis.prepare.PreparedRun`, with keyword-only, validated thresholds. The
registry :data:`DETECTORS` names them; :func:`run_detectors` runs them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from lrwatch.analysis.detectors._common import fmt
from lrwatch.analysis.detectors.divergence import detect_divergence
from lrwatch.analysis.detectors.oscillation import detect_oscillation
from lrwatch.analysis.detectors.plateau import WANDER_WARNING, constant_lr, detect_plateau
from lrwatch.analysis.detectors.slow_convergence import detect_slow_convergence
from lrwatch.analysis.findings import Finding
from lrwatch.analysis.prepare import PreparedRun

__all__ = [
    "DETECTORS",
    "MIN_STEPS_TO_JUDGE",
    "detect_divergence",
    "detect_oscillation",
    "detect_plateau",
    "detect_slow_convergence",
    "run_detectors",
]

# Fewer logged loss points than this and nothing is judged (analyze() says "too short to judge"):
# below ~30 points the noise level itself cannot be estimated well enough to tell a trend or a
# bounce from minibatch noise.
MIN_STEPS_TO_JUDGE = 30

DETECTORS: dict[str, Callable[[PreparedRun], list[Finding]]] = {
    "divergence": detect_divergence,
    "oscillation": detect_oscillation,
    "plateau": detect_plateau,
    "slow_convergence": detect_slow_convergence,
}


def run_detectors(prepared: PreparedRun) -> list[Finding]:
    """Every detector's findings, sorted by start step.

    A run with fewer than :data:`MIN_STEPS_TO_JUDGE` points is not judged (``[]``), with one
    exception that needs no guess: a loss that turned NaN/inf is reported as divergence at any
    length (a run that blows up at step 7 is often exactly that short).
    """
    # Losses near 1e308 overflow in differences; the detectors treat the resulting inf/NaN
    # as evidence, so numpy's warnings would only be noise on the user's terminal (also from a
    # short run that turned NaN: "1e308, -1e308, nan" printed one).
    with np.errstate(all="ignore"):
        if prepared.n < MIN_STEPS_TO_JUDGE:
            return detect_divergence(prepared) if prepared.first_nonfinite is not None else []
        findings: list[Finding] = []
        for detect in DETECTORS.values():
            findings.extend(detect(prepared))
    # A loss that blew up in its first steps and came back has a floor of its own after that:
    # such a divergence does not make a plateau a note (below).
    kinds = _kinds_that_stand(findings)
    if "oscillation" in kinds:
        # A loss that swings in waves rises and comes back by construction: beside the
        # oscillation, which names the swings and their fix (less momentum), a blow-up the loss
        # came back from later in the run is one of its waves (heavy-ball momentum 0.98-0.99 on
        # the quadratic rose past its start and back on 5 of the labelled sets' runs).
        findings = [f for f in findings if not (f.kind == "divergence" and _came_back_slowly(f))]
        # Counted again: a dropped blow-up that never got back must not turn a plateau into a
        # note that points at a divergence finding no longer there.
        kinds = _kinds_that_stand(findings)
    if "oscillation" in kinds or any(f.evidence.get("came_back") for f in findings):
        # A loss that bounces and still falls is slowed by the bouncing, and one that blew up
        # and came back spent the steps after it re-learning: reading either as "rate too
        # small" would advise the opposite of the fix.
        findings = [f for f in findings if f.kind != "slow_convergence"]
    if any(f.kind == "slow_convergence" for f in findings):
        # Still falling when the run ended (or never measurably moved): a plateau note beside it
        # said "stopped improving ... looks like convergence". Its test - quarter medians of the
        # last stretch within half a noise sigma - is weaker than slow convergence's over the
        # last third, so a slow descent under large noise passed it: the two contradicted.
        findings = [f for f in findings if not (f.kind == "plateau" and f.severity == "info")]
    if kinds & {"oscillation", "divergence"}:
        findings = [
            _plateau_beside(prepared, kinds, f) if f.kind == "plateau" else f for f in findings
        ]
    return sorted(findings, key=lambda f: (f.start_step, f.kind))


def _kinds_that_stand(findings: list[Finding]) -> set[str]:
    """The kinds found, leaving out divergences the loss came back from."""
    return {f.kind for f in findings if not f.evidence.get("came_back")}


def _came_back_slowly(finding: Finding) -> bool:
    """A divergence the loss came back from later in the run, slowly (or was coming back)."""
    return "share_of_run_lost" in finding.evidence


def _plateau_beside(prepared: PreparedRun, kinds: set[str], plateau: Finding) -> Finding:
    """A plateau beside a divergence or an oscillation, which already name the cause and fix.

    A loss that climbed and stayed up is flat at its new level: a note. A wave makes
    consecutive losses correlated, which the plateau detector reads as a level held up by the
    rate (persistence), so beside an oscillation the plateau stays a warning only when its
    block medians wander far beyond the noise - a level held up by the rate in its own right.
    """
    wanders = plateau.evidence.get("wander", 0.0) >= WANDER_WARNING
    if "divergence" not in kinds and wanders:
        return plateau
    # The plateau's own wording ("looks like convergence" / "a floor the rate holds it at")
    # would contradict the finding beside it.
    beside = "divergence" if "divergence" in kinds else "oscillation"
    why = {
        "divergence": "the level it climbed to, not convergence",
        "oscillation": "level on average while it oscillates",
    }[beside]
    message = (
        f"The loss stayed near {fmt(plateau.evidence['plateau_level'])} from step "
        f"{plateau.start_step} to {plateau.end_step} {constant_lr(prepared)}: {why} (the "
        f"{beside} finding names the fix)."
    )
    return replace(plateau, severity="info", message=message)
