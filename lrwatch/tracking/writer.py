"""The background writer: queue -> spool file (fsync) -> live analysis -> MLflow, every flush.

One daemon thread. Each cycle it drains what the training thread queued, appends it to the spool
and fsyncs (durable before anything else), feeds the live analysis, then sends to MLflow for at
most about one flush interval, so the queue never holds more than that (plus one HTTP timeout).

Exactly once. Every metric keeps the timestamp taken at ``w.step`` time, so a resent row is
identical to the first. MLflow's SQL stores drop identical ``(key, step, timestamp, value)`` rows
(``SqlAlchemyStore._log_metrics`` catches the primary-key clash and skips rows already present;
checked in MLflow 3.17). Other stores do not, so after any failed request - which may have landed
before the connection died - the writer first asks the store for the latest ``(step, timestamp)``
of each key and resends only rows with a later step *or* a later timestamp. Rows of one key go out
in step order with non-decreasing timestamps and a ``log_batch`` request lands whole, so what
landed is a prefix, and a row at or before the latest in both step and time has landed. Either
alone is not enough: a resumed run logs steps below the last one an earlier attempt logged (later
in time), and a clock set back logs later steps at earlier times; both are sent. ``lrwatch import``
uses the same rule on a leftover spool.

Memory stays bounded: unsent rows wait in memory up to ``MAX_OUTBOX_ROWS``; beyond that they are
dropped from memory and replayed later from the spool file.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from lrwatch import keys
from lrwatch.store import (
    LOGIN_ERRORS,
    display_uri,
    file_store_refusal,
    hide_passwords,
    login_refusal,
    network_reason,
)
from lrwatch.tracking.params import text
from lrwatch.tracking.records import RowBuilder, drain
from lrwatch.tracking.sink import MAX_METRICS_PER_REQUEST, MlflowSink, is_permanent, split
from lrwatch.tracking.spool import SpoolWriter, iter_metric_chunks

log = logging.getLogger("lrwatch")

ENV_STRICT = "LRWATCH_STRICT"
# ~30 MB of Python tuples; a longer outage is replayed from the spool file instead.
MAX_OUTBOX_ROWS = 200_000
# Retry delays after a failed request: start small (a restart takes seconds), cap at 30 s so a
# server back after a long outage is noticed within half a minute.
BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 30.0

# One request to send: ("metrics", a chunk of rows), or ("params" | "tags", a string map).
OutboxItem = (
    tuple[Literal["metrics"], list[tuple]] | tuple[Literal["params", "tags"], dict[str, str]]
)


def strict() -> bool:
    return os.environ.get(ENV_STRICT, "") not in ("", "0", "false", "False")


def filter_landed(rows: list[tuple], landed: dict[str, tuple[int, int]]) -> list[tuple]:
    """Rows the store may not hold yet: a later step or a later time than the latest row of
    their key (see module docstring)."""
    if not landed:
        return list(rows)
    newer = []
    for row in rows:  # (key, value, timestamp, step)
        step, timestamp = landed.get(row[0], (-1, -1))  # a key the store lacks: every row
        if row[3] > step or row[2] > timestamp:
            newer.append(row)
    return newer


class Writer:
    """Owns the spool, the MLflow sink and the live analysis of one watched run."""

    def __init__(
        self,
        queue: deque,
        sink: MlflowSink,
        spool: SpoolWriter,
        *,
        run_id: str | None,
        create_run: Callable[[], str],
        flush_interval: float,
        live=None,
        outage_reported: bool = False,
    ) -> None:
        self.queue = queue
        self.sink = sink
        self.spool = spool
        self.run_id = run_id
        self._create_run = create_run
        self.flush_interval = flush_interval
        self.live = live
        self.rows = RowBuilder()
        self._params_added: set[str] = set()  # param keys spooled or queued so far
        self.outbox: deque[OutboxItem] = deque()
        self._outbox_rows = 0
        self._replay_spool = False  # rows were dropped from memory: resend from the spool file
        # The spool offset of the oldest metrics record whose rows are not all delivered: where
        # a replay starts. Each replay read the whole file: a loop logging faster than the store
        # takes overflows again after every catch-up, and the growing spool was parsed whole
        # each time (at 61 MB, 3 s of the writer thread's GIL, 3-6 times in 50 s).
        self._unsent_from = 0
        self._overflow_warned = False
        self._uncertain = False  # a request failed: it may have landed, check before resending
        self._retry_at = 0.0
        self._backoff = BACKOFF_START_S
        # Failed attempts in a row; one when the caller already warned that the store is down
        # (the first failure's warning would say it again).
        self._failures = 1 if outage_reported else 0
        # The store refused to create the run for good (a name it rejects, no permission):
        # nothing is sent any more, every step stays in the spool for `lrwatch import`.
        self._refused: BaseException | None = None
        self.error: BaseException | None = None  # first unexpected error (raised under strict)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # one cycle at a time (thread vs. close/signal flush)
        self._thread = threading.Thread(target=self._loop, name="lrwatch-writer", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def add(self, kind: Literal["params", "tags"], payload: dict[str, str]) -> None:
        """Spool and queue params or tags."""
        if kind == "params":
            self._params_added.update(payload)
        self.spool.append([{"type": kind, kind: payload}])
        if self._refused is None:
            self.outbox.append((kind, payload))

    def refuse(self, exc: BaseException) -> None:
        """Stop sending: the store refused to create the run, and retrying would not change that.

        Without this the writer would retry for the whole run and ``close()`` would spend its
        timeout. The spool keeps everything; the warning names the command that uploads it once
        the cause is fixed (``--experiment`` for a name the store rejects).
        """
        self._stop_sending(exc, "refused to create the run", "fix the cause, then upload it with")

    def _stop_sending(self, exc: BaseException, what: str, fix: str) -> None:
        """One warning for the whole run; ``fix`` leads up to the ``lrwatch import`` command."""
        self._refused = exc
        self.outbox.clear()
        self._outbox_rows = 0
        self._replay_spool = False
        if self.spool.complete:
            log.warning("lrwatch: the tracking store %s (%s); every step stays in %s - %s: "
                        "lrwatch import %s",
                        what, self._describe(exc), self.spool.path, fix, self.spool.path)  # fmt: skip
        else:
            log.warning("lrwatch: the tracking store %s (%s), and the spool file could not be "
                        "written: the steps it does not hold are lost", what, self._describe(exc))  # fmt: skip
        if self.error is None:
            self.error = exc

    def close(self, *, status: str | None, timeout_s: float) -> bool:
        """Flush everything, try to deliver for up to ``timeout_s``; True when all landed."""
        deadline = time.monotonic() + timeout_s
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=max(timeout_s, 0.1))
        with self._lock:
            self._cycle(deadline=deadline, final=True)
            self._finish_live()
            self._retry_at = 0.0
            self._send(deadline)
            while self.pending() and time.monotonic() < deadline:
                time.sleep(min(self._backoff, max(deadline - time.monotonic(), 0)))
                self._retry_at = 0.0
                self._send(deadline)
            delivered = self._refused is None and not self.pending()
            if status is not None:
                self.spool.append([{"type": "end", "status": status}])
                if delivered:
                    run_id = self.run_id
                    assert run_id is not None  # not pending, so the run exists
                    delivered = self._guard(lambda: self.sink.end_run(run_id, status))
        return delivered

    @property
    def refused(self) -> bool:
        """The store refused the run (to create it, or it was deleted); see :meth:`refuse`."""
        return self._refused is not None

    def pending(self) -> bool:
        """Something is still to be sent (never, once the store refused the run)."""
        if self._refused is not None:
            return False
        return bool(self.outbox) or self._replay_spool or self.run_id is None

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._lock:
                self._cycle(deadline=time.monotonic() + self.flush_interval)

    def _cycle(self, *, deadline: float, final: bool = False) -> None:
        try:
            items = drain(self.queue)
            rows, points = self.rows.build(items) if items else ([], [])
            if self.rows.first_lrs:
                self._add_base_lrs_of_new_groups()
            if rows:
                offset = self.spool.size
                self.spool.append([{"type": "metrics", "metrics": rows}])
                self._enqueue_rows(rows, offset)
            if self.live is not None and points:
                tags = self.live.feed(points)
                if tags:
                    self.add("tags", tags)
        except Exception as exc:  # noqa: BLE001 - the training loop must never see this
            self._unexpected(exc)
        if not final:
            self._send(deadline)

    def _add_base_lrs_of_new_groups(self) -> None:
        """A ``base_lr`` param for each param group first seen after :func:`lrwatch.watch`
        recorded the optimizers (``optimizer.add_param_group`` mid-run): its first LR."""
        first = {keys.base_lr_key(g, o): lr for (g, o), lr in self.rows.first_lrs.items()}
        self.rows.first_lrs.clear()
        new = {key: text(lr) for key, lr in first.items() if key not in self._params_added}
        if new:
            self.add("params", new)

    def _finish_live(self) -> None:
        try:
            tags = self.live.finish() if self.live is not None else {}
            if tags:
                self.add("tags", tags)
        except Exception as exc:  # noqa: BLE001
            self._unexpected(exc)

    def _enqueue_rows(self, rows: list[tuple], spool_offset: int) -> None:
        """Queue ``rows``, which the spool holds from byte ``spool_offset`` on."""
        if self._refused is not None or (self._replay_spool and self.spool.complete):
            return  # already on disk; the replay (or `lrwatch import`) will send it
        if self._outbox_rows == 0:  # everything queued before was delivered
            self._unsent_from = spool_offset
        # One outbox item per request, so sending can stop at the cycle's deadline between them.
        for chunk in split(rows, MAX_METRICS_PER_REQUEST):
            self.outbox.append(("metrics", chunk))
        self._outbox_rows += len(rows)
        # Without a complete spool file the rows have no other home: memory grows instead.
        if self._outbox_rows > MAX_OUTBOX_ROWS and self.spool.complete:
            # Either the store is down, or it takes values slower than the loop logs them (a
            # fast loop with many param groups): the wording must not blame the wrong one.
            why = "unreachable for long" if self._failures else "slower than the training loop"
            # Once: a loop faster than the store overflows again after every catch-up.
            level = logging.DEBUG if self._overflow_warned else logging.WARNING
            self._overflow_warned = True
            log.log(level, "lrwatch: tracking store %s: over %d values wait; they are sent from "
                    "the spool file on disk instead of memory", why, MAX_OUTBOX_ROWS)  # fmt: skip
            self.outbox = deque(item for item in self.outbox if item[0] != "metrics")
            self._outbox_rows = 0
            self._replay_spool = True

    # -- sending -----------------------------------------------------------------------------
    def _send(self, deadline: float) -> None:
        if self._refused is not None or time.monotonic() < self._retry_at:
            return
        try:
            if self.run_id is None:
                try:
                    self.run_id = self._create_run()
                except Exception as exc:
                    if not is_permanent(exc):
                        raise
                    self.refuse(exc)
                    return
                self.spool.append([{"type": "run", "run_id": self.run_id}])
            run_id = self.run_id
            landed = None
            if self._uncertain:
                landed = self.sink.latest_landed(run_id)
                self._uncertain = False
            if self._replay_spool:
                self._replay(
                    run_id, landed if landed is not None else self.sink.latest_landed(run_id)
                )
            while self.outbox and time.monotonic() < deadline:
                self._send_one(run_id, landed)
            if self._failures:
                log.warning("lrwatch: tracking store reachable again; sending the backlog")
            self._failures = 0
            self._backoff = BACKOFF_START_S
        except Exception as exc:  # noqa: BLE001 - transient: back off and retry
            self._uncertain = self.run_id is not None
            self._retry_at = time.monotonic() + self._backoff
            # One warning per outage; the retries after it only at debug level.
            level = logging.WARNING if self._failures == 0 else logging.DEBUG
            log.log(level, "lrwatch: tracking store unavailable (%s); buffering to %s and "
                    "retrying", self._describe(exc), self.spool.where)  # fmt: skip
            self._failures += 1
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _send_one(self, run_id: str, landed: dict[str, tuple[int, int]] | None) -> None:
        item = self.outbox[0]  # tested by item[0] (not unpacked): mypy then knows item[1]'s type
        try:
            if item[0] == "metrics":
                rows = filter_landed(item[1], landed) if landed else item[1]
                self.sink.log_metrics(run_id, rows)
            elif item[0] == "params":
                self.sink.log_params(run_id, item[1])
            else:
                self.sink.set_tags(run_id, item[1])
        except Exception as exc:
            if not is_permanent(exc):
                raise
            refusal = _whole_run_refusal(getattr(exc, "error_code", None), run_id)
            if refusal is not None:
                self._stop_sending(exc, *refusal)
                return
            self._unexpected(exc, f"the tracking store refused {item[0]}; dropped")
        if item[0] == "metrics":  # delivered or refused for good: no longer waiting either way
            self._outbox_rows -= len(item[1])
        self.outbox.popleft()

    def _replay(self, run_id: str, landed: dict[str, tuple[int, int]]) -> None:
        """Resend every spooled row the store lacks (after the in-memory outbox overflowed),
        reading the spool from the oldest record not known to be delivered."""
        assert self.spool.path is not None  # the outbox only overflows into an open spool file
        for chunk in iter_metric_chunks(self.spool.path, chunk=10_000, start=self._unsent_from):
            rows = filter_landed(chunk, landed)
            if rows:
                self.sink.log_metrics(run_id, rows)
        self._replay_spool = False

    # -- errors ------------------------------------------------------------------------------
    def _guard(self, action: Callable[[], object]) -> bool:
        try:
            action()
            return True
        except Exception as exc:  # noqa: BLE001
            log.warning("lrwatch: %s", self._describe(exc))
            return False

    def _unexpected(self, exc: BaseException, what: str = "logger error") -> None:
        log.warning("lrwatch: %s: %s", what, self._describe(exc))
        if self.error is None:
            self.error = exc

    def _describe(self, exc: BaseException) -> str:
        """``exc`` in one line, a login refusal worded for the store's URI (which may hold it)."""
        return short_error(exc, self.sink.tracking_uri)


def _whole_run_refusal(code: str | None, run_id: str) -> tuple[str, str] | None:
    """For a store's refusal that every later request of the run would meet too (else one
    warning per flush): what the store did, and what leads up to the ``lrwatch import`` command
    (see :meth:`Writer._stop_sending`). None for a refusal of one request's content."""
    if code in LOGIN_ERRORS:
        # The login stopped working mid-run: a password changed, a token expired, access revoked.
        return "stopped taking this run's data", "fix the login, then upload it with"
    if code == "RESOURCE_DOES_NOT_EXIST":
        # The run was removed for good (deleted, then `mlflow gc`): an import makes a new run.
        return "no longer has this run", "upload it to a new run with"
    if code == "INVALID_STATE":
        # The run is no longer active: deleted while training ran.
        restore = f"restore the run (mlflow runs restore --run-id {run_id}), then upload it with"
        return "no longer takes data for this run", restore
    return None


# SQLAlchemy ends its errors with a link to its error-code page: not news in a one-line warning.
_SQLALCHEMY_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


def short_error(exc: BaseException, uri: str | None = None) -> str:
    """``exc`` in one line for a warning; ``uri``, the store's, words a login it carries."""
    text = _SQLALCHEMY_BACKGROUND.sub("", " ".join(str(exc).split()))
    refusal = file_store_refusal(text)
    if refusal:
        return f"the store {refusal}"
    refusal = login_refusal(exc, uri)
    if refusal:
        return f"the server {refusal}"
    reason = network_reason(text)
    if reason:
        return f"cannot reach {display_uri(uri)}: {reason}" if uri else reason
    text = hide_passwords(text) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
