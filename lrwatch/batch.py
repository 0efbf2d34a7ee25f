"""Analyse many runs: load + analyse each, in parallel over the CPU cores for many files, and
several at a time from a tracking server.

Each run yields one :class:`RunResult` (its report, or the one-line reason it could not be
analysed), in the order given, so one bad file never stops a sweep of a thousand.

Example::

    from lrwatch.batch import analyze_specs
    for result in analyze_specs(["runs/"]):
        print(result.label, result.report.worst_severity if result.report else result.error)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from lrwatch.analysis.findings import Report
from lrwatch.errors import InputError
from lrwatch.run import Run, Series
from lrwatch.sources import RunRef, SkippedRun, expand, load_ref
from lrwatch.store import resolve_tracking_uri

# Below this many file runs a process pool costs more to start (~0.1-0.3 s) than it saves.
PARALLEL_MIN_RUNS = 16
# Runs handed to a worker at a time: big enough to amortise pickling, small enough to balance.
CHUNK_SIZE = 8

Progress = Callable[[int, int], None]


@dataclass
class RunResult:
    """What became of one run: a report, a skip (no loss, from an experiment) or an error line."""

    ref: RunRef
    run: Run | None = None
    report: Report | None = None
    error: str | None = None
    skipped: str = ""  # why it was skipped (SkippedRun.reason); "" when it was not
    notes: list[str] = field(default_factory=list)  # a skipped run's: the skip's message

    @property
    def label(self) -> str:
        return self.ref.label


def expand_specs(
    specs: Iterable[str], *, tracking_uri: str | None = None
) -> tuple[list[RunRef], list[tuple[str, str]]]:
    """Every run the specs name, and ``(spec, message)`` for each spec that names none."""
    refs, errors = [], []
    for spec in specs:
        try:
            refs += expand(spec, tracking_uri=tracking_uri)
        except InputError as exc:
            errors.append((spec, str(exc)))
    return refs, errors


def analyze_refs(
    refs: Sequence[RunRef],
    *,
    loss_key: str | None = None,
    lr_key: str | None = None,
    keep_series: bool = True,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Iterator[RunResult]:
    """Load and analyse each run, yielding results in order.

    Args:
        refs: runs to analyse (see :func:`expand_specs`).
        loss_key / lr_key: metric keys to use (found among common names if None).
        keep_series: return runs with their series (needed for a sweep analysis); False returns
            metadata only, which keeps a big parallel batch light to pass between processes.
        workers: processes to use for files; default: every available core when there are at
            least :data:`PARALLEL_MIN_RUNS` runs, all of them files. MLflow runs are read in
            threads instead, :data:`~lrwatch.store.SERVER_READ_THREADS` by default when every
            one is on a tracking server, one at a time from other stores (a database read is
            local work).
        progress: called as ``progress(done, total)`` after each run.
    """
    total = len(refs)
    # pyarrow's CSV reader is ~2-3x faster per file; its import (~0.3 s) pays off in a batch.
    csv_engine = "arrow" if total >= PARALLEL_MIN_RUNS else "numpy"
    options = (loss_key, lr_key, keep_series, csv_engine)
    pool_kind, count = parallel_plan(refs, workers)
    if count <= 1:
        results: Iterable[RunResult] = (_analyze_one(ref, options) for ref in refs)
        yield from _with_progress(results, total, progress)
        return
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    executor = ThreadPoolExecutor if pool_kind == "threads" else ProcessPoolExecutor
    with executor(max_workers=count) as pool:  # (threads ignore the chunk size)
        results = pool.map(_analyze_one, refs, [options] * total, chunksize=CHUNK_SIZE)
        yield from _with_progress(results, total, progress)


def analyze_specs(specs: Iterable[str], **kwargs) -> Iterator[RunResult]:
    """:func:`expand_specs` then :func:`analyze_refs`; a bad spec yields an error result."""
    refs, errors = expand_specs(specs, tracking_uri=kwargs.pop("tracking_uri", None))
    for spec, message in errors:
        yield RunResult(RunRef("file", spec, spec), error=message)
    yield from analyze_refs(refs, **kwargs)


def _with_progress(results, total, progress) -> Iterator[RunResult]:
    for done, result in enumerate(results, start=1):
        if progress is not None:
            progress(done, total)
        yield result


def parallel_plan(refs: Sequence[RunRef], workers: int | None) -> tuple[str, int]:
    """How :func:`analyze_refs` spreads ``refs``: ``("processes", n)`` for files (parsing is
    Python work), ``("threads", n)`` for MLflow runs (reading them is the store's work, and
    each process would import MLflow again); ``n`` of 1 reads them one by one."""
    kind = "processes" if any(ref.kind == "file" for ref in refs) else "threads"
    if workers is not None:
        return kind, max(1, min(workers, len(refs)))
    if kind == "threads":
        from lrwatch.sources.mlflow_rest import reads_at_a_time

        uris = [resolve_tracking_uri(ref.tracking_uri) for ref in refs]
        at_once = min((reads_at_a_time(uri) for uri in uris), default=1)  # no refs: none read
        return kind, min(at_once, len(refs))
    if len(refs) < PARALLEL_MIN_RUNS or any(ref.kind != "file" for ref in refs):
        return kind, 1
    return kind, min(available_cores(), len(refs))


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _analyze_one(ref: RunRef, options: tuple) -> RunResult:
    from lrwatch.analysis import analyze
    from lrwatch.sources.files import read_notes

    loss_key, lr_key, keep_series, csv_engine = options
    try:
        run = load_ref(
            ref, loss_key=loss_key, lr_key=lr_key, csv_engine=csv_engine, analysed_only=True
        )
    except SkippedRun as skip:
        return RunResult(ref, skipped=skip.reason, notes=[str(skip)])
    except InputError as exc:
        return RunResult(ref, error=str(exc))
    try:
        report = analyze(run)
    except InputError as exc:
        return RunResult(ref, run=run, error=f"{ref.label}: {exc}")
    kept = run if keep_series else _metadata_only(run)
    return RunResult(ref, run=kept, report=report, notes=read_notes(run))


def _metadata_only(run: Run) -> Run:
    """The run with only the first and last loss points, so step ranges still show."""
    loss, loss_key = run.loss, run.loss_key  # run.loss is None unless loss_key is set
    metrics: dict[str, Series] = {}
    if loss is not None and loss_key is not None and not loss.is_empty:
        ends = [0, len(loss) - 1] if len(loss) > 1 else [0]
        metrics[loss_key] = type(loss)(loss.steps[ends], loss.values[ends])
    return run.with_metrics(metrics)


class ProgressLine:
    """A one-line progress bar on a terminal (``\\r`` redraws); silent when not a TTY."""

    def __init__(self, stream=None, *, label: str = "analysing", width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.width = width
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_drawn = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 1:
            return
        filled = self.width * done // total
        if filled == self._last_drawn and done != total:
            return  # redraw only when the bar moves: thousands of runs, few writes
        self._last_drawn = filled
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} runs")
        if done == total:
            self.stream.write("\r" + " " * (self.width + len(self.label) + 30) + "\r")
        self.stream.flush()
