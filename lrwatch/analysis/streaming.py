"""Online (incremental) analysis for the live logger. (Stub until the analysis core lands.)

Contract: the logger's background thread feeds new points; ``update`` returns only findings not
reported before (same kind and start step), so each is tagged and logged once.
"""

from __future__ import annotations

import numpy as np

from lrwatch.analysis.findings import Finding


class OnlineAnalyzer:
    def __init__(self, *, min_new_points: int = 50) -> None:
        self.min_new_points = min_new_points

    def update(self, steps: np.ndarray, losses: np.ndarray, lrs: np.ndarray) -> list[Finding]:
        """Append points (arrays of equal length); return findings that are new since last call."""
        return []

    @property
    def findings(self) -> list[Finding]:
        """Every finding reported so far."""
        return []
