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

The spool must never cost the run: a spool folder that cannot be created (a read-only home)
falls back to the system's temporary folder, and when no folder or no write works (a full
disk), logging goes on from memory alone (:attr:`SpoolWriter.complete` turns False) with one
warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SPOOL_VERSION = 1
ENV_SPOOL_DIR = "LRWATCH_SPOOL_DIR"
MetricRow = tuple  # (key, value, timestamp_ms, step)
log = logging.getLogger("lrwatch")


def default_spool_dir() -> Path:
    """``$LRWATCH_SPOOL_DIR``, else ``$XDG_CACHE_HOME/lrwatch/spool`` (``~/.cache/...``)."""
    explicit = os.environ.get(ENV_SPOOL_DIR)
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "lrwatch" / "spool"


class SpoolWriter:
    """Appends records to one spool file; each :meth:`append` ends with an fsync.

    Attributes:
        path: the spool file (None when no folder could hold one).
        complete: True while every record appended is in the file; False once the spool could
            not be opened or a write failed - the file (if any) then lacks what came after.
        size: bytes written so far: the offset at which the next record starts.
    """

    def __init__(self, directory: str | os.PathLike | None, header: dict) -> None:
        wanted = Path(directory) if directory else default_spool_dir()
        name = f"lrwatch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path: Path | None = None
        self._file = None
        self.complete = True
        self.size = 0
        problems = []
        for folder in (wanted, Path(tempfile.gettempdir()) / "lrwatch-spool"):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{name}.jsonl"
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the run
            except OSError as exc:
                problems.append(f"{folder}: {exc.strerror or exc}")
                continue
            self.path = path
            break
        if self.path is None:
            self.complete = False
            log.warning("lrwatch: no folder can hold the spool (%s); logging from memory only - "
                        "steps not yet sent are lost if the process dies", "; ".join(problems))  # fmt: skip
        elif problems:
            log.warning("lrwatch: cannot use the spool folder (%s); spooling to %s instead (set "
                        "%s to choose)", problems[0], self.path.parent, ENV_SPOOL_DIR)  # fmt: skip
        self.append([{"type": "header", "version": SPOOL_VERSION, **header}])

    @property
    def where(self) -> str:
        """Where unsent steps are kept, for messages."""
        return str(self.path) if self.complete else "memory (the spool file could not be written)"

    def append(self, records: list[dict]) -> None:
        if not records or self._file is None:
            return
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        try:
            self._file.write(text)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.size += len(text)  # bytes: json.dumps escapes every non-ASCII character
        except OSError as exc:
            # A full disk or a file-size limit. Later writes would interleave with a torn line,
            # so the spool stops here; the writer keeps every unsent row in memory instead.
            self.complete = False
            self._close_file()
            log.warning("lrwatch: cannot write the spool %s (%s); logging goes on from memory "
                        "only", self.path, exc.strerror or exc)  # fmt: skip

    def close(self, *, delete: bool) -> None:
        self._close_file()
        if delete and self.path is not None:
            self.path.unlink(missing_ok=True)

    def _close_file(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):  # its buffer cannot be flushed: the same full disk
                handle.close()


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
    # Lines and metric rows left out as damaged (not a record, or a record of the wrong shape).
    damaged: int = 0


def read_lines(
    path: str | os.PathLike, damaged: list[int] | None = None, *, start: int = 0
) -> Iterator[dict]:
    """Every complete record in the file from byte ``start`` on (a record's first byte), in
    order. A torn last line (the process died mid-write) is ignored; a line that is not a JSON
    object in UTF-8 (damage on disk) is skipped, and its number (counted from ``start``)
    appended to ``damaged`` when given. Read as bytes, line by line: one bad byte costs its
    line, not the file."""
    with open(path, "rb") as handle:
        handle.seek(start)
        for number, line in enumerate(handle, 1):
            if not line.endswith(b"\n"):
                return  # torn final write
            try:
                record = json.loads(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError is one
                record = None
            if isinstance(record, dict):
                yield record
            elif damaged is not None:
                damaged.append(number)


def is_metric_row(row: object) -> bool:
    """``[key, value, timestamp_ms, step]`` as the writer spools it (value may be NaN/inf)."""
    return (
        isinstance(row, list)
        and len(row) == 4
        and isinstance(row[0], str)
        and isinstance(row[1], (int, float))
        and all(isinstance(n, int) and not isinstance(n, bool) for n in row[2:])
    )


_RECORD_KINDS = ("header", "run", "params", "tags", "metrics", "end")  # others: a newer writer's


def read_summary(path: str | os.PathLike) -> SpoolContents:
    """Header, run id, params, tags and end status (metrics are streamed separately), and how
    many damaged lines and metric rows the file holds (:attr:`SpoolContents.damaged`)."""
    header: dict | None = None
    contents = SpoolContents(path=Path(path), header={})
    damaged_lines: list[int] = []
    for record in read_lines(path, damaged_lines):
        kind = record.get("type")
        if kind == "header":
            header = record
            contents.run_id = _text_or_none(record.get("run_id"))
        elif kind == "run" and isinstance(record.get("run_id"), str):
            contents.run_id = record["run_id"]
        elif kind in ("params", "tags") and isinstance(record.get(kind), dict):
            getattr(contents, kind).update({str(k): str(v) for k, v in record[kind].items()})
        elif kind == "metrics" and isinstance(record.get("metrics"), list):
            contents.metric_lines += 1
            contents.damaged += sum(not is_metric_row(row) for row in record["metrics"])
        elif kind == "end" and isinstance(record.get("status"), str):
            contents.end_status = record["status"]
        elif kind in _RECORD_KINDS or not isinstance(kind, str):
            contents.damaged += 1  # garbled into valid JSON of the wrong shape
    if header is None:
        raise ValueError(f"{path} is not an lrwatch spool file (no header line)")
    contents.header = header
    contents.damaged += len(damaged_lines)
    return contents


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def iter_metric_chunks(
    path: str | os.PathLike, chunk: int, *, start: int = 0
) -> Iterator[list[MetricRow]]:
    """Metric rows in file order from byte ``start`` on, ``chunk`` at a time (bounded memory for
    any file size)."""
    pending: list[MetricRow] = []
    for record in read_lines(path, start=start):
        if record.get("type") != "metrics" or not isinstance(record.get("metrics"), list):
            continue
        for row in record["metrics"]:
            if not is_metric_row(row):
                continue  # damaged: read_summary counts it
            pending.append(tuple(row))
            if len(pending) >= chunk:
                yield pending
                pending = []
    if pending:
        yield pending
