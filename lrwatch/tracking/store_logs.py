"""Muting MLflow's SQL-store error log during lrwatch's own store calls (see below)."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

# MLflow's SQL store logs every failed query as an ERROR with its traceback (about 40 lines) and
# then raises it. For the sink's calls the writer catches that exception and reports the outage
# itself, in one line, once; MLflow's copy would repeat at every retry into the training
# script's output. Records are dropped only while a sink call runs in that thread: the user's
# own MLflow calls keep their logs.
_STORE_LOGGER = "mlflow.store.db.utils"
_in_sink_call = threading.local()
_Call = TypeVar("_Call", bound=Callable)


class _DropDuringSinkCalls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or not getattr(_in_sink_call, "active", False)


def quiet_store_errors(method: _Call) -> _Call:
    """Run ``method`` with MLflow's SQL-store error logging muted in this thread (see above)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        outer = getattr(_in_sink_call, "active", False)
        _in_sink_call.active = True
        try:
            return method(*args, **kwargs)
        finally:
            _in_sink_call.active = outer

    return wrapper  # type: ignore[return-value]


def install_store_log_filter() -> None:
    store_logger = logging.getLogger(_STORE_LOGGER)
    if not any(isinstance(f, _DropDuringSinkCalls) for f in store_logger.filters):
        store_logger.addFilter(_DropDuringSinkCalls())
