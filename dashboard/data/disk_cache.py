"""An on-disk copy of long metric histories, so a 1M-step run opens fast after its first view.

Reading 1M points out of MLflow's SQLite store costs 1-2 s per metric (row-by-row SQL), however
it is done; loading the same points from a local ``.npz`` file takes ~20 ms. The in-process
:class:`~dashboard.data.cache.SeriesCache` therefore keeps series of at least
:data:`MIN_POINTS_ON_DISK` points under ``~/.cache/lrwatch/dashboard`` and, on the next start,
loads them from there and fetches only the points logged after their last step. MLflow stays the
source of truth: a copy is only ever extended with what the store returns, and deleting the
folder is always safe.

A copy belongs to one *generation* of its run (see :mod:`dashboard.data.cache`): a job resumed
from a checkpoint rewrites steps before the copy's last one, and the copy of the generation
before it is neither read nor kept. Other back-fills (a point logged later at an earlier step
by hand) are not seen until the copy is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from pathlib import Path
from zipfile import BadZipFile

import numpy as np

from lrwatch.run import Series

# Shorter series read from the store in well under 0.1 s: not worth a file.
MIN_POINTS_ON_DISK = 50_000
ENV_CACHE_DIR = "LRWATCH_CACHE_DIR"  # a folder, or "off" to disable the disk copy


def default_cache_dir() -> Path | None:
    """``$LRWATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/lrwatch/dashboard`` or ``~/.cache/...``."""
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured:
        return None if configured.lower() in ("off", "0", "none") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrwatch" / "dashboard"


class DiskCache:
    """Series files under ``root``, one per (tracking URI, run id, key)."""

    def __init__(self, root: Path, min_points: int = MIN_POINTS_ON_DISK) -> None:
        self.root = Path(root)
        self.min_points = min_points

    def path(self, tracking_uri: str, run_id: str, key: str, generation: str = "") -> Path:
        name = f"{tracking_uri}\n{run_id}\n{key}" + (f"\n{generation}" if generation else "")
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        return self.root / digest[:2] / f"{digest}.npz"

    def load(
        self, tracking_uri: str, run_id: str, key: str, *, generation: str = ""
    ) -> Series | None:
        path = self.path(tracking_uri, run_id, key, generation)
        try:
            with np.load(path) as saved:
                return Series(saved["steps"], saved["values"])
        # Missing or damaged (a crash can leave a renamed file empty; numpy raises EOFError,
        # zipfile's BadZipFile or NotImplementedError, zlib.error for such files): read from
        # the store instead.
        except (
            OSError,
            KeyError,
            ValueError,
            EOFError,
            BadZipFile,
            NotImplementedError,
            zlib.error,
        ):
            return None

    def save(
        self, tracking_uri: str, run_id: str, key: str, series: Series, *, generation: str = ""
    ) -> None:
        if len(series) < self.min_points:
            return
        path = self.path(tracking_uri, run_id, key, generation)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(partial, steps=series.steps, values=series.values)
            os.replace(partial, path)  # atomic: a reader never sees half a file
        except OSError:
            pass  # a read-only home or a full disk only costs speed

    def delete(self, tracking_uri: str, run_id: str, key: str, *, generation: str = "") -> None:
        # One left behind (a read-only folder) is never read again: safe to delete by hand.
        with contextlib.suppress(OSError):
            self.path(tracking_uri, run_id, key, generation).unlink(missing_ok=True)
