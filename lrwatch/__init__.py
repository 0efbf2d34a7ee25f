"""lrwatch: is my learning rate wrong, and what should it be?

Public API (imported lazily, so ``import lrwatch`` pulls in neither torch, MLflow nor Dash)::

    import lrwatch
    with lrwatch.watch(optimizer, experiment="my-exp") as w:   # the logger (needs torch)
        ...
        w.step(loss)
    report = lrwatch.analyze(lrwatch.load_run("run.csv"))      # offline diagnosis
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Run": "lrwatch.run",
    "Series": "lrwatch.run",
    "Finding": "lrwatch.analysis.findings",
    "Recommendation": "lrwatch.analysis.findings",
    "Report": "lrwatch.analysis.findings",
    "Schedule": "lrwatch.analysis.findings",
    "analyze": "lrwatch.analysis",
    "analyze_sweep": "lrwatch.analysis",
    "load_run": "lrwatch.sources",
    "load_runs": "lrwatch.sources",
    "watch": "lrwatch.tracking",
    "Watcher": "lrwatch.tracking",
    "find_lr": "lrwatch.lr_finder",
    "suggest_lr": "lrwatch.lr_finder",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lrwatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
