"""Upload a leftover spool file into MLflow, exactly once (what ``lrwatch import`` runs).

Safe to run twice, or on a spool whose run already holds part of the data: rows are resent only
when newer than the latest ``(step, timestamp)`` the store holds for their key (see
:mod:`lrwatch.tracking.writer` for why that is exact).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lrwatch.errors import InputError
from lrwatch.sources.specs import mlflow_errors
from lrwatch.store import display_uri
from lrwatch.tracking.sink import MlflowSink
from lrwatch.tracking.spool import iter_metric_chunks, read_summary
from lrwatch.tracking.writer import filter_landed

# Rows held in memory at once while streaming a spool of any size.
CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class ImportResult:
    run_id: str
    tracking_uri: str
    sent: int
    already_there: int
    created_run: bool
    damaged: int = 0  # lines and metric rows left out: not a record (damage on disk)


def import_spool(
    path: str | Path, tracking_uri: str | None = None, experiment: str | None = None
) -> ImportResult:
    """Send what ``path`` holds that the store lacks; create the run if it never was.

    ``experiment`` replaces the experiment recorded in the spool when the run must be created
    (e.g. the store refused the recorded name); a run that exists already stays where it is.

    Raises:
        InputError: the file is missing or is not an lrwatch spool.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such spool file: {path}")
    try:
        summary = read_summary(path)
    except ValueError as exc:
        raise InputError(f"{path} is not an lrwatch spool file") from exc
    header = summary.header
    uri = tracking_uri or header.get("tracking_uri")
    from lrwatch.store import resolve_tracking_uri

    uri = resolve_tracking_uri(uri)
    # A server that is down or refuses the login is one line naming the fix, not MLflow's text.
    with mlflow_errors(uri):
        sink = MlflowSink(uri)
        if experiment is not None:
            header = {**header, "experiment": experiment}
        run_id = _existing_run(sink, summary.run_id)
    created = run_id is None
    if run_id is None:
        # The new run is recorded in the spool, so that importing the same file again finds it:
        # a spool that cannot take that line is refused before a run is created (each import
        # of it would leave another empty run behind).
        with _open_to_record_the_run(path) as spool:
            with mlflow_errors(uri):
                run_id = _create_run(sink, header)
            spool.write(json.dumps({"type": "run", "run_id": run_id}) + "\n")
    with mlflow_errors(uri):
        if summary.params:
            sink.log_params(run_id, summary.params)
        if summary.tags:
            sink.set_tags(run_id, summary.tags)
        landed = sink.latest_landed(run_id)
        sent = already_there = 0
        for chunk in iter_metric_chunks(path, CHUNK_ROWS):
            rows = filter_landed(chunk, landed)
            already_there += len(chunk) - len(rows)
            if rows:  # the store may refuse a metric name: it says so, and those are not "sent"
                sent += sink.log_metrics(run_id, rows)
        # A run lrwatch joined (mlflow.start_run() or run_id=) is the user's to end; spools written
        # before the header said so (no "owns_run") were always lrwatch's own runs or unknown: end.
        if header.get("owns_run", True):
            _end_if_running(sink, run_id, summary.end_status or "KILLED")
    return ImportResult(run_id, uri, sent, already_there, created, summary.damaged)


def _existing_run(sink: MlflowSink, run_id: str | None) -> str | None:
    """``run_id`` when the store holds that run, None when it must be created."""
    if run_id is None:
        return None
    try:
        active = sink.run_is_active(run_id)
    except Exception as exc:  # noqa: BLE001 - only "no such run" means create one
        if getattr(exc, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None
    if not active:
        raise InputError(
            f"run {run_id} was deleted in {display_uri(sink.tracking_uri)}: restore it "
            f"(mlflow runs restore --run-id {run_id}), then import again"
        )
    return run_id


def _open_to_record_the_run(path: Path) -> TextIO:
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot write to {path} ({exc.strerror or exc}): the run an import creates is "
            f"recorded there, so that importing it again finds that run; import a writable copy"
        ) from None


def _create_run(sink: MlflowSink, header: dict) -> str:
    from lrwatch import __version__, keys

    tags = {keys.TAG_VERSION: __version__}
    return sink.create_run(header.get("experiment"), header.get("run_name"), tags)


def _end_if_running(sink: MlflowSink, run_id: str, status: str) -> None:
    if sink.client.get_run(run_id).info.status == "RUNNING":
        sink.end_run(run_id, status)
