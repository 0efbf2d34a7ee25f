"""Live diagnosis: feed the streaming analyzer, turn its new findings into tags and actions.

Runs in the writer's background thread. Each new finding is logged once through Python logging,
written to the run as tags (``lrwatch.findings`` holds the JSON list of every finding so far,
``lrwatch.worst_severity`` the worst one, ``lrwatch.schedule`` the recognised schedule when the
analyzer offers one), and a divergence triggers ``on_divergence``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import numpy as np

from lrwatch import keys
from lrwatch.analysis.findings import (
    Finding,
    is_not_borne_out,
    is_provisional,
    severity_rank,
    supersedes,
)
from lrwatch.tracking.sink import MAX_TAG_VALUE

log = logging.getLogger("lrwatch")


class DivergenceError(RuntimeError):
    """Raised by ``Watcher.step`` after a divergence was found, when ``on_divergence="stop"``.

    Attributes:
        finding: the divergence :class:`~lrwatch.analysis.findings.Finding`.
    """

    def __init__(self, finding: Finding) -> None:
        super().__init__(
            f"lrwatch stopped training: {finding.message} "
            f"(divergence from step {finding.start_step}; on_divergence='stop')"
        )
        self.finding = finding


def findings_tag(findings: list[Finding]) -> str:
    """JSON list of findings that fits MLflow's tag limit: the most severe ones are kept."""
    ranked = sorted(findings, key=lambda f: (-severity_rank(f.severity), f.start_step))
    dicts = [f.to_dict() for f in ranked]
    while dicts:
        text = json.dumps(dicts)
        if len(text) <= MAX_TAG_VALUE:
            return text
        dicts.pop()  # the least severe, latest goes first
    return "[]"


class LiveDiagnosis:
    """Wraps :class:`lrwatch.analysis.streaming.OnlineAnalyzer` for one run.

    ``on_divergence``: ``"warn"`` (log only), ``"stop"`` (``stop_requested`` is set; the watcher
    raises :class:`DivergenceError` at the next step) or a callable taking the finding.
    """

    def __init__(self, on_divergence: str | Callable[[Finding], object] = "warn") -> None:
        from lrwatch.analysis.streaming import OnlineAnalyzer

        if not (callable(on_divergence) or on_divergence in ("warn", "stop")):
            raise ValueError("on_divergence must be 'warn', 'stop' or a callable(finding)")
        self.analyzer = OnlineAnalyzer()
        self.on_divergence = on_divergence
        self.findings: list[Finding] = []
        self.stop_requested: Finding | None = None
        self._last_schedule: str | None = None

    def feed(self, points: list[tuple[int, float, float]]) -> dict[str, str]:
        """Feed ``(step, loss, lr)`` points; return tags to write (empty when nothing changed)."""
        if not points:
            return {}
        arr = np.asarray(points, dtype=np.float64)
        return self._record(self.analyzer.update(arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2]))

    def _record(self, new: list[Finding]) -> dict[str, str]:
        tags: dict[str, str] = {}
        for finding in new:
            # A warning judged at the run's end replaces the note the same event had while the
            # run ran (slow convergence: see lrwatch.analysis.findings.while_running); so does
            # the note taking back a divergence the whole run did not bear out.
            self.findings = [g for g in self.findings if not supersedes(finding, g)]
            self.findings.append(finding)
            # An info finding (a plateau that looks like convergence) is a note, not a warning.
            level = logging.INFO if finding.severity == "info" else logging.WARNING
            log.log(level, "lrwatch: %s: %s", finding.kind, finding.message)
            # A loss its first steps blew up that has come back is training again: reported,
            # but no reason to stop the run. Nor is a report taken back at the run's end.
            came_back = finding.evidence.get("came_back") or is_not_borne_out(finding)
            if finding.kind == "divergence" and not came_back:
                self._act(finding)
        if new:
            tags.update(self._findings_tags())
        schedule = self._schedule_text()
        if schedule and schedule != self._last_schedule:
            self._last_schedule = tags[keys.TAG_SCHEDULE] = schedule
        return tags

    def finish(self) -> dict[str, str]:
        """At the run's end: report every candidate finding (the analyzer's final evaluation),
        drop the provisional notes the whole run did not bear out, and turn a divergence it did
        not bear out into a note (see :meth:`OnlineAnalyzer.finalize`)."""
        finalize = getattr(self.analyzer, "finalize", None)
        if finalize is None:
            return {}
        tags = self._record(finalize())
        settled = [f for f in self.findings if not is_provisional(f)]
        if len(settled) < len(self.findings):
            self.findings = settled
            tags.update(self._findings_tags())
        return tags

    def _findings_tags(self) -> dict[str, str]:
        """The findings tag and the worst severity (``none`` when no finding is left)."""
        worst = max(self.findings, key=lambda f: severity_rank(f.severity), default=None)
        return {
            keys.TAG_FINDINGS: findings_tag(self.findings),
            keys.TAG_WORST: worst.severity if worst else "none",
        }

    def _schedule_text(self) -> str | None:
        # The analyzer may recognise the schedule as it goes; the contract leaves it optional.
        schedule = getattr(self.analyzer, "schedule", None)
        if callable(schedule):
            schedule = schedule()
        if schedule is None or getattr(schedule, "kind", "missing") in ("missing", "unknown"):
            return None
        describe = getattr(schedule, "describe", None)
        return describe() if callable(describe) else str(schedule)

    def _act(self, finding: Finding) -> None:
        if self.on_divergence == "stop":
            self.stop_requested = self.stop_requested or finding
        elif callable(self.on_divergence):
            try:
                self.on_divergence(finding)
            except Exception as exc:  # noqa: BLE001 - a user callback must not kill the writer
                log.warning("lrwatch: on_divergence callback failed: %r", exc)
