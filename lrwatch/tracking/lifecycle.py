"""Flushing on the way out: normal interpreter exit (atexit) and SIGTERM.

Open watchers are kept in a registry. At exit each is closed as FINISHED. On SIGTERM each is
closed as KILLED, then the previous SIGTERM handler runs (chained): a Python handler is called, the
default action is re-raised so the process still dies with SIGTERM, an ignored signal stays ignored.
SIGKILL cannot be caught: the spool, written every flush, is what survives it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref

log = logging.getLogger("lrwatch")

_open: weakref.WeakSet = weakref.WeakSet()
_installed = False
_previous_sigterm = None
# A signal handler must not hang a dying process on a dead server: deliver what it can quickly.
SIGNAL_CLOSE_TIMEOUT_S = 5.0


def register(watcher) -> None:
    """Track ``watcher`` so exit and SIGTERM flush it; install the hooks on first use."""
    global _installed
    _open.add(watcher)
    if _installed:
        return
    _installed = True
    atexit.register(_close_at_exit)
    if threading.current_thread() is threading.main_thread():
        _install_sigterm()


def forget(watcher) -> None:
    _open.discard(watcher)


def open_watchers() -> list:
    """The watchers made and not yet closed (a forked child's inherited copies among them)."""
    return list(_open)


def _close_at_exit() -> None:
    # After an uncaught exception the interpreter sets sys.last_type before atexit runs.
    _close_all("FAILED" if getattr(sys, "last_type", None) else "FINISHED", 10.0)


def _close_all(status: str, timeout_s: float) -> None:
    for watcher in list(_open):
        try:
            watcher.close(status, timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - exiting anyway
            log.warning("lrwatch: flush at exit failed: %r", exc)


def _install_sigterm() -> None:
    global _previous_sigterm
    try:
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread / embedded interpreter
        _previous_sigterm = None


def _on_sigterm(signum, frame) -> None:
    _close_all("KILLED", SIGNAL_CLOSE_TIMEOUT_S)
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or unknown): die the way the process would have without us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
