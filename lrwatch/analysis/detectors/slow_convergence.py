"""slow_convergence detector (work in progress)."""

from __future__ import annotations

from lrwatch.analysis.findings import Finding
from lrwatch.analysis.prepare import PreparedRun


def detect_slow_convergence(prepared: PreparedRun) -> list[Finding]:
    return []
