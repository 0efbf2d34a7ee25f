"""The training-loop logger: loss and LR of every param group into MLflow, live diagnosis.

``lrwatch.watch(optimizer, ...)`` returns a :class:`Watcher`; ``w.step(loss)`` after each
optimizer step. See :func:`lrwatch.tracking.api.watch` for every option.
"""

from __future__ import annotations

from lrwatch.tracking.api import watch
from lrwatch.tracking.live import DivergenceError
from lrwatch.tracking.watcher import Watcher

__all__ = ["DivergenceError", "Watcher", "watch"]
