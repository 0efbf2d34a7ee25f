"""The dashboard's domain object: one tracking store, its series cache and its reports.

Callbacks ask :class:`DashboardData` for what a page shows (run summaries with badges, one run
with its report, several runs for comparison) and hand the result to a pure figure builder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dashboard.data import tracking
from dashboard.data.cache import SeriesCache
from dashboard.data.disk_cache import DiskCache, default_cache_dir
from dashboard.data.reports import ReportCache, badge_text, merge_findings
from dashboard.data.tracking import DataError, RunSummary
from lrwatch import keys
from lrwatch.analysis.findings import Finding, Report
from lrwatch.run import Run, Series, UnreadSeries
from lrwatch.sources.epoch_steps import epoch_steps_note
from lrwatch.sources.files import add_read_note
from lrwatch.sources.loss_parts import add_summed_loss
from lrwatch.sources.mlflow_rest import reads_at_a_time
from lrwatch.sources.mlflow_sql import first_step_count
from lrwatch.sources.mlflow_store import analysed_keys
from lrwatch.sources.range_tests import mark_range_test

# Metrics offered as extra charts when a run logged them (besides loss and LR).
EXTRA_CANDIDATES = ("val/loss", "val_loss", "valid_loss", "validation_loss", keys.GRAD_NORM)
# The compare view overlays at most this many runs (a legend beyond that is unreadable).
MAX_COMPARE_RUNS = 30


@dataclass(frozen=True)
class LoadedRun:
    """One run as the run view shows it: series, its report, and findings incl. live ones."""

    summary: RunSummary
    run: Run
    report: Report | None
    findings: tuple[Finding, ...]
    analysis_error: str | None = None

    @property
    def is_running(self) -> bool:
        return self.summary.status == "running"


class DashboardData:
    """Everything the dashboard reads from one tracking store.

    Args:
        tracking_uri: the MLflow tracking URI (SQL stores are read directly, fast).
        cache: series cache to use (default: a fresh in-process LRU).
        reports: report cache to use (default: a fresh one analysing with lrwatch.analysis).
    """

    def __init__(
        self,
        tracking_uri: str,
        cache: SeriesCache | None = None,
        reports: ReportCache | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        if cache is None:
            root = default_cache_dir()
            cache = SeriesCache(disk=DiskCache(root) if root else None)
        self.cache = cache
        self.reports = reports or ReportCache()

    # --- runs view -----------------------------------------------------------------------------

    def experiments(self) -> list[tuple[str, str]]:
        return tracking.list_experiments(self.tracking_uri)

    def runs(self, experiment_id: str) -> list[RunSummary]:
        return tracking.list_runs(self.tracking_uri, experiment_id)

    def has_runs(self, experiment_id: str) -> bool:
        return tracking.has_runs(self.tracking_uri, experiment_id)

    def badges(self, summaries: Sequence[RunSummary]) -> dict[str, str]:
        """Diagnosis badge per run id; runs without a report are queued for background analysis."""
        badges, unanalysed = {}, []
        for summary in summaries:
            findings = self._known_findings(summary)
            if findings is None:
                unanalysed.append(summary.id)
            report = self.reports.cached(self.tracking_uri, summary.id)
            badges[summary.id] = badge_text(findings, report)
        if unanalysed:
            by_id = {summary.id: summary for summary in summaries}
            load = lambda run_id: self._load_for_analysis(by_id[run_id])  # noqa: E731
            self.reports.request(self.tracking_uri, unanalysed, load)
        return badges

    def pending_analyses(self) -> int:
        return self.reports.pending(self.tracking_uri)

    def _known_findings(self, summary: RunSummary) -> list[Finding] | None:
        logged = tracking.tag_findings(summary.tags)
        report = self.reports.cached(self.tracking_uri, summary.id)
        if report is not None:
            return _diagnosis(summary, report, logged)
        if self.reports.failed(self.tracking_uri, summary.id) is not None:
            return logged
        if summary.loss_key is None:
            return logged  # nothing to analyse
        return None

    def _load_for_analysis(self, summary: RunSummary) -> Run:
        from lrwatch.sources.mlflow_store import read_histories

        # Straight from the store, not through the cache: a table of 1,000 runs would evict
        # the series of the runs a person is looking at.
        def read(names: Sequence[str]) -> dict[str, Series]:
            return read_histories(self.tracking_uri, summary.id, names)

        return _as_run(summary, read(_analysed_keys(summary)), read)

    # --- run view ------------------------------------------------------------------------------

    def load(
        self, run_id: str, *, extra_keys: Sequence[str] = (), refresh: bool = False
    ) -> LoadedRun:
        """Run ``run_id`` with loss, LR and ``extra_keys``, its report and merged findings.

        ``refresh`` fetches only points logged since the last call (live runs).
        Raises :class:`DataError` for an unknown run or an unreadable store.
        """
        summary = tracking.get_summary(self.tracking_uri, run_id)
        candidates = [*_analysed_keys(summary), *extra_keys]
        wanted = [k for k in dict.fromkeys(candidates) if k in summary.metric_keys]
        read = self.cache.refresh if refresh else self.cache.get
        # A job resumed from a checkpoint logs again steps the cache may hold (see SeriesCache).
        resume = _resume(summary)

        def read_more(names: Sequence[str]) -> dict[str, Series]:
            return self.cache.get(self.tracking_uri, run_id, names, **resume)

        with tracking.mlflow_errors(self.tracking_uri, f"metrics of run {run_id}"):
            series = read(self.tracking_uri, run_id, wanted, **resume)
            cached_loss = series.get(summary.loss_key) if summary.loss_key else None
            if not refresh and _behind(cached_loss, summary.last_step):
                # Cached before the run logged more (e.g. it finished while nobody watched it):
                # fetch the points after the cached ones.
                series = self.cache.refresh(self.tracking_uri, run_id, wanted, **resume)
            run = _as_run(summary, series, read_more)
            _note_epoch_steps(self.tracking_uri, summary, run)
        report, error = None, None
        if run.loss is not None:
            try:
                report = self.reports.report(self.tracking_uri, run)
            except Exception as exc:  # noqa: BLE001 - the charts still help without a diagnosis
                error = " ".join(str(exc).split())[:200] or type(exc).__name__
        findings = _diagnosis(summary, report, tracking.tag_findings(summary.tags))
        return LoadedRun(summary, run, report, tuple(findings), error)

    def extra_metric_keys(self, summary: RunSummary) -> list[str]:
        """Metrics worth an extra chart: held-out losses, grad norm, other LR groups."""
        lr_key = keys.find_lr_key(summary.metric_keys)
        extras = [k for k in EXTRA_CANDIDATES if k in summary.metric_keys]
        extras += [k for k in summary.metric_keys if keys.is_lr_key(k) and k != lr_key]
        return extras

    # --- compare view --------------------------------------------------------------------------

    def load_many(self, run_ids: Sequence[str]) -> list[LoadedRun]:
        """Several runs for the compare view (unknown ids raise :class:`DataError`)."""
        if not run_ids:
            raise DataError("no runs to compare: pick runs in the table first")
        if len(run_ids) > MAX_COMPARE_RUNS:
            raise DataError(f"compare at most {MAX_COMPARE_RUNS} runs, not {len(run_ids)}")
        unique = list(dict.fromkeys(run_ids))
        at_once = min(reads_at_a_time(self.tracking_uri), len(unique))
        if at_once == 1:
            return [self.load(run_id) for run_id in unique]
        # A tracking server's time is most of a read: several at a time, as `lrwatch analyze`
        # reads them (the caches lock per run).
        with ThreadPoolExecutor(max_workers=at_once) as pool:
            return list(pool.map(self.load, unique))


def _diagnosis(summary: RunSummary, report: Report | None, logged: list[Finding]) -> list[Finding]:
    """The findings a run is shown with. While it runs: the analysis of what it logged so far
    plus the logger's live findings (tags), which may have seen what the points read so far do
    not show yet. Once it has ended, the analysis of the whole run alone, as `lrwatch analyze`
    gives it: a live alert the whole run does not bear out (a plateau seen mid-run that the
    loss then left) is no longer its diagnosis."""
    if report is None:
        return list(logged)
    if summary.status == "running":
        return merge_findings(report.findings, logged)
    return list(report.findings)


def _resume(summary: RunSummary) -> dict:
    """The cache's ``generation`` and ``reread`` for a run a resumed job is logging again."""
    marker = summary.tags.get(keys.TAG_RESUMED)
    if not marker:
        return {"generation": "", "reread": False}
    try:
        earlier_last_step = int(json.loads(marker)["earlier_last_step"])
    except (ValueError, TypeError, KeyError):
        return {"generation": marker, "reread": False}  # not ours: only a new generation
    # Until the resumed job logs past the earlier attempt's last step, steps the cache holds
    # are still being replaced (the job logs in step order, so beyond it all have been).
    rewriting = summary.last_step is None or summary.last_step <= earlier_last_step
    return {"generation": marker, "reread": rewriting}


def _behind(cached, last_step: int | None) -> bool:
    """True when the store holds steps after the cached series' last one.

    A loss logged with no step holds step 0 alone, however many points it has (read, they are
    numbered in logging order: see lrwatch.sources.mlflow_store.number_in_logging_order): its
    last step says nothing, so such a cached series is always read on from its last point.
    """
    if cached is None or not len(cached) or last_step is None:
        return False
    cached_last = int(cached.steps[-1])
    return cached_last < last_step or (last_step == 0 and cached_last > 0)


def _note_epoch_steps(tracking_uri: str, summary: RunSummary, run: Run) -> None:
    """Say so, as `lrwatch analyze` does, when the loss's step starts again every epoch and was
    read across epochs: its last step read lies past the store's last step, and its first step
    was logged more than once (a live run's newest points alone pass the first test only)."""
    key, last_step = summary.loss_key, summary.last_step
    loss = run.metrics.get(key) if key else None
    if key is None or loss is None or not len(loss) or last_step is None:
        return
    if int(loss.steps[-1]) <= last_step:
        return
    epochs = first_step_count(tracking_uri, summary.id, key)
    if epochs is not None and epochs > 1:
        add_read_note(run, epoch_steps_note(key, epochs))


def _analysed_keys(summary: RunSummary) -> list[str]:
    """The series `lrwatch analyze` reads first: the loss (or its parts, summed into it by
    :func:`_as_run`) and group 0's LR; the LR alone while a run has no loss yet."""
    analysed = analysed_keys(summary.metric_keys, None, None)
    return analysed or [k for k in (keys.find_lr_key(summary.metric_keys),) if k]


def _as_run(
    summary: RunSummary,
    series: dict,
    read: Callable[[Sequence[str]], dict[str, Series]] | None = None,
) -> Run:
    """The run to draw and analyse; its other metrics left unread, for ``read`` to fetch when the
    analysis asks (other param groups' LRs, for a recommendation that scales them)."""
    others = tuple(k for k in summary.metric_keys if k not in series)
    run = Run(
        id=summary.id,
        name=summary.name,
        source=summary.id,
        params=dict(summary.params),
        tags=dict(summary.tags),
        metrics=dict(series),
        status=summary.status,
        start_time_ms=summary.start_time_ms,
        experiment_id=summary.experiment_id,
        unread=UnreadSeries(others, read) if read else None,
    )
    add_summed_loss(run)  # Ultralytics logs only the parts of its loss, as the CLI reads it
    mark_range_test(run)  # an untagged range test, as the CLI reads it
    return run
