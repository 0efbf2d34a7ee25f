"""A second process that reads metric histories while the dashboard's own thread reads too.

Reading a long history out of MLflow's SQL store is Python work: the driver builds a tuple per
row while holding the GIL, so two threads read the loss and the LR of a 1,000,000-step run no
faster than one (1.05 s against 1.03 s, measured on 2 cores). Two processes do: 0.54 s. The
dashboard therefore keeps one helper process, and a cold read of several metrics reads the first
one here and hands the others to the helper.

The helper runs this module's :func:`_serve`: requests and answers are pickled over its stdin and
stdout, and it exits when its stdin closes, so it never outlives the dashboard. A helper that is
not ready, busy with another read, or broken only costs speed: the keys are then read in this
process, and errors reach the page exactly as before.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from lrwatch.run import Series
from lrwatch.sources.mlflow_sql import is_sql_store
from lrwatch.sources.mlflow_store import read_histories

_READY = b"lrwatch-read-helper-ready\n"  # the helper's first line, once its imports are done


class ReadHelper:
    """One helper process and the reader that uses it (``SeriesCache``'s ``reader``).

    Not started on creation: :meth:`start` launches the process (the dashboard does at start-up),
    and until it is ready :meth:`read` reads everything in this process.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()  # one request at a time: answers come back in order
        self.handed_over = 0  # keys read by the helper so far (tests and benchmarks)

    def start(self) -> None:
        """Launch the helper process unless it runs already; returns at once."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            self._ready.clear()
            # The helper must import this package however the dashboard found it (installed,
            # or a source checkout put on sys.path by a script).
            root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from dashboard.data.read_helper import _serve; _serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": path},
            )
            process = self._process
        threading.Thread(target=self._await_ready, args=(process,), daemon=True).start()

    def stop(self) -> None:
        """Close the helper's stdin (it exits) and wait for it."""
        with self._lock:
            process, self._process = self._process, None
            self._ready.clear()
        if process is None:
            return
        stdin, stdout = _pipes(process)
        with contextlib.suppress(OSError):  # a helper that died leaves a broken pipe
            stdin.close()
        try:
            process.wait(timeout=10)  # it finishes the read at hand first
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stdout.close()

    def wait_until_ready(self, timeout_s: float) -> bool:
        """True once the helper takes requests (started and its imports done)."""
        return self._ready.wait(timeout_s)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def read(
        self, tracking_uri: str, run_id: str, keys: Iterable[str], *, after_step: int | None = None
    ) -> dict[str, Series]:
        """:func:`~lrwatch.sources.mlflow_store.read_histories`, the work shared with the helper.

        Only a whole read (no ``after_step``: refreshes fetch few points) of two or more keys of
        a SQL store is shared; anything else, and any failure of the helper, reads here.
        """
        keys = list(dict.fromkeys(keys))
        shareable = after_step is None and len(keys) > 1 and is_sql_store(tracking_uri)
        if not (shareable and self._ready.is_set() and self._lock.acquire(blocking=False)):
            return read_histories(tracking_uri, run_id, keys, after_step=after_step)
        try:
            asked = self._ask(tracking_uri, run_id, keys[1:])
            try:
                found = read_histories(tracking_uri, run_id, keys[:1])
            finally:
                answer = self._answer() if asked else None  # read even when ours failed
            if answer is not None:
                self.handed_over += len(keys) - 1
        finally:
            self._lock.release()
        if answer is None:
            answer = read_histories(tracking_uri, run_id, keys[1:])
        return {**found, **answer}

    def _await_ready(self, process: subprocess.Popen[bytes]) -> None:
        try:
            ready = _pipes(process)[1].readline() == _READY
        except (OSError, ValueError):
            ready = False
        if ready and process is self._process:
            self._ready.set()

    def _ask(self, tracking_uri: str, run_id: str, keys: list[str]) -> bool:
        process = self._process
        if process is None:  # stop() ran between read()'s readiness check and its taking the lock
            self._ready.clear()
            return False
        try:
            stdin = _pipes(process)[0]
            pickle.dump((tracking_uri, run_id, keys), stdin)
            stdin.flush()
            return True
        except (OSError, ValueError, AttributeError):
            self._ready.clear()  # broken: read here from now on
            return False

    def _answer(self) -> dict[str, Series] | None:
        process = self._process
        assert process is not None  # _ask() succeeded under the lock stop() needs
        try:
            answer = pickle.load(_pipes(process)[1])
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, AttributeError):
            self._ready.clear()
            return None
        if answer is None:  # the helper's read failed: this process reads and reports why
            return None
        return {key: Series(steps, values) for key, (steps, values) in answer.items()}


def _pipes(process: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    """The helper's stdin and stdout (it is started with both piped, so neither is None)."""
    assert process.stdin is not None and process.stdout is not None
    return process.stdin, process.stdout


_SHARED = ReadHelper()


def shared_helper() -> ReadHelper:
    """The process's one helper: the series cache reads through it, the app starts it."""
    return _SHARED


def _serve() -> None:
    """The helper's loop: (tracking URI, run id, keys) in, ``{key: (steps, values)}`` or None out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C stops the dashboard; we follow on EOF
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not end up among the answers
    answers.write(_READY)
    answers.flush()
    while True:
        try:
            tracking_uri, run_id, keys = pickle.load(requests)
        except EOFError:
            return  # the dashboard closed our stdin: it stopped
        try:
            found = read_histories(tracking_uri, run_id, keys)
            answer = {key: (series.steps, series.values) for key, series in found.items()}
        except Exception:  # noqa: BLE001 - the dashboard reads again itself and reports the error
            answer = None
        pickle.dump(answer, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()
