"""The on-disk spool: an append-only JSON Lines journal of everything the logger wrote.

Every flush the background writer appends one line per kind of record and fsyncs, *before* it
talks to MLflow. So a dead server costs disk, not data, and a process killed with SIGKILL loses at
most the steps of its last flush interval. ``lrwatch import SPOOL`` replays a leftover file.

Lines (one JSON object each; Python's json keeps NaN/Infinity, which are evidence)::

    {"type": "header", "version": 1, "tracking_uri": ..., "run_id": ..., "experiment": ...,
     "run_name": ..., "created_ms": ..., "owns_run": true}   # false: joined the user's run
    {"type": "run", "run_id": "..."}                  # the run was created after the header
    {"type": "params", "params": {"optimizer": "SGD", ...}}
    {"type": "tags", "tags": {"lrwatch.findings": "[...]"}}
    {"type": "metrics", "metrics": [[key, value, timestamp_ms, step], ...]}
    {"type": "end", "status": "FINISHED"}             # the run ended (status to set on import)

A torn last line (the process died mid-write) is ignored on reading.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SPOOL_VERSION = 1
ENV_SPOOL_DIR = "LRWATCH_SPOOL_DIR"
MetricRow = tuple  # (key, value, timestamp_ms, step)


def default_spool_dir() -> Path:
    """``$LRWATCH_SPOOL_DIR``, else ``$XDG_CACHE_HOME/lrwatch/spool`` (``~/.cache/...``)."""
    explicit = os.environ.get(ENV_SPOOL_DIR)
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "lrwatch" / "spool"


class SpoolWriter:
    """Appends records to one spool file; each :meth:`append` ends with an fsync."""

    def __init__(self, directory: str | os.PathLike | None, header: dict) -> None:
        directory = Path(directory) if directory else default_spool_dir()
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = directory / f"lrwatch-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the run
        self.append([{"type": "header", "version": SPOOL_VERSION, **header}])

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self, *, delete: bool) -> None:
        if not self._file.closed:
            self._file.close()
        if delete:
            self.path.unlink(missing_ok=True)


@dataclass
class SpoolContents:
    """A spool file read back: where it was going and what it holds."""

    path: Path
    header: dict
    run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    end_status: str | None = None
    metric_lines: int = 0


def read_lines(path: str | os.PathLike) -> Iterator[dict]:
    """Every complete record in the file, in order; a torn or garbled line is skipped."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return  # torn final write
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def read_summary(path: str | os.PathLike) -> SpoolContents:
    """Header, run id, params, tags and end status (metrics are streamed separately)."""
    header: dict | None = None
    contents = SpoolContents(path=Path(path), header={})
    for record in read_lines(path):
        kind = record.get("type")
        if kind == "header":
            header = record
            contents.run_id = record.get("run_id")
        elif kind == "run":
            contents.run_id = record.get("run_id")
        elif kind == "params":
            contents.params.update(record.get("params", {}))
        elif kind == "tags":
            contents.tags.update(record.get("tags", {}))
        elif kind == "metrics":
            contents.metric_lines += 1
        elif kind == "end":
            contents.end_status = record.get("status")
    if header is None:
        raise ValueError(f"{path} is not an lrwatch spool file (no header line)")
    contents.header = header
    return contents


def iter_metric_chunks(path: str | os.PathLike, chunk: int) -> Iterator[list[MetricRow]]:
    """Metric rows in file order, ``chunk`` at a time (bounded memory for any file size)."""
    pending: list[MetricRow] = []
    for record in read_lines(path):
        if record.get("type") != "metrics":
            continue
        for row in record.get("metrics", []):
            pending.append(tuple(row))
            if len(pending) >= chunk:
                yield pending
                pending = []
    if pending:
        yield pending
