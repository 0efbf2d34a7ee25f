"""Diagnosis for the dashboard: cached reports, live findings merged in, table badges.

A run's :class:`~lrwatch.analysis.findings.Report` is cached by (run, last step, points): a
finished run is analysed once, a running one again only when new points arrived. The runs table
never analyses synchronously: :class:`ReportCache` analyses requested runs on one background
thread (the table refreshes while any are pending), so opening an experiment of 1,000 runs
renders at once and fills its badges in as they come.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence

from lrwatch.analysis.findings import Finding, Report, severity_rank
from lrwatch.run import Run
from lrwatch.sources.mlflow_rest import reads_at_a_time

CacheKey = tuple[str, str]  # (tracking URI, run id)


def merge_findings(analysed: Sequence[Finding], logged: Sequence[Finding]) -> list[Finding]:
    """Offline findings plus live ones from tags that no offline finding of that kind overlaps."""
    merged = list(analysed)
    for finding in logged:
        overlaps = any(
            f.kind == finding.kind
            and f.start_step <= finding.end_step
            and finding.start_step <= f.end_step
            for f in analysed
        )
        if not overlaps:
            merged.append(finding)
    return sorted(merged, key=lambda f: (f.start_step, -severity_rank(f.severity)))


def worst(findings: Iterable[Finding]) -> Finding | None:
    """The most severe finding (the earliest among equals), or None."""
    ranked = sorted(findings, key=lambda f: (-severity_rank(f.severity), f.start_step))
    return ranked[0] if ranked else None


def badge_text(findings: Sequence[Finding] | None, report: Report | None = None) -> str:
    """The table's diagnosis cell: ``critical: divergence (+1)``, ``ok``, ``too short to judge``
    (the analysis judged nothing), or ``analysing...`` (``findings`` is None: not analysed yet).
    """
    if findings is None:
        return "analysing..."
    top = worst(findings)
    if top is None and report is not None and report.recommendation.action == "none":
        return "not judged: " + _first_words(report.recommendation.message)
    if top is None:
        return "ok"
    more = f" (+{len(findings) - 1})" if len(findings) > 1 else ""
    return f"{top.severity}: {top.kind.replace('_', ' ')}{more}"


def _first_words(message: str, limit: int = 40) -> str:
    text = message.split(":")[0].split(".")[0].strip().lower()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _version(run: Run) -> tuple[int, int, bool]:
    """What a report depends on besides the run's id: its loss points, and whether it still runs
    (a running run's slow progress is a note, judged when it ends)."""
    loss = run.loss
    running = run.status == "running"
    if loss is None or not len(loss):
        return (0, -1, running)
    return (len(loss), int(loss.steps[-1]), running)


class ReportCache:
    """Reports per run, computed on demand or in the background: on one thread, or on
    :data:`~lrwatch.store.SERVER_READ_THREADS` for runs of a tracking server (reading a run is
    mostly the server's time there).

    Args:
        analyze: ``Run -> Report`` (default :func:`lrwatch.analysis.analyze`).
    """

    def __init__(self, analyze: Callable[[Run], Report] | None = None) -> None:
        self._analyze = analyze
        self._reports: dict[CacheKey, tuple[tuple[int, int, bool], Report]] = {}
        self._failed: dict[CacheKey, str] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._pending: set[CacheKey] = set()
        self._workers = 0  # background threads running

    def report(self, tracking_uri: str, run: Run) -> Report:
        """The report for ``run``, recomputed only when its loss gained points."""
        key = (tracking_uri, run.id)
        with self._lock:
            hit = self._reports.get(key)
        if hit is not None and hit[0] == _version(run):
            return hit[1]
        report = self._run_analysis(run)
        with self._lock:
            self._reports[key] = (_version(run), report)
        return report

    def cached(self, tracking_uri: str, run_id: str) -> Report | None:
        with self._lock:
            hit = self._reports.get((tracking_uri, run_id))
        return hit[1] if hit else None

    def failed(self, tracking_uri: str, run_id: str) -> str | None:
        with self._lock:
            return self._failed.get((tracking_uri, run_id))

    def request(self, tracking_uri: str, run_ids: Iterable[str], load: Callable[[str], Run]) -> int:
        """Queue runs without a report for background analysis; returns how many are pending."""
        with self._lock:
            for run_id in run_ids:
                key = (tracking_uri, run_id)
                if key in self._reports or key in self._pending or key in self._failed:
                    continue
                self._pending.add(key)
                self._queue.put((key, load))
            while self._workers < min(reads_at_a_time(tracking_uri), len(self._pending)):
                self._workers += 1
                # A daemon: it never keeps the dashboard process alive.
                name = f"lrwatch-reports-{self._workers}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            return len(self._pending)

    def pending(self, tracking_uri: str) -> int:
        with self._lock:
            return sum(1 for key in self._pending if key[0] == tracking_uri)

    def _work(self) -> None:
        while True:
            try:
                key, load = self._queue.get(timeout=1.0)
            except queue.Empty:
                with self._lock:  # put() happens under this lock too: no item is stranded
                    if self._queue.empty():
                        self._workers -= 1
                        return
                continue
            try:
                self.report(key[0], load(key[1]))
            except Exception as exc:  # noqa: BLE001 - one bad run must not stop the others
                with self._lock:
                    self._failed[key] = " ".join(str(exc).split())[:200]
            finally:
                with self._lock:
                    self._pending.discard(key)

    def _run_analysis(self, run: Run) -> Report:
        if self._analyze is None:
            from lrwatch.analysis import analyze

            self._analyze = analyze
        return self._analyze(run)
