"""An incremental in-process cache of metric histories, MLflow staying the source of truth.

Each (tracking URI, run id, key) maps to a cleaned :class:`~lrwatch.run.Series`. The first read
fetches the whole history (direct SQL on SQL stores, see :mod:`lrwatch.sources.mlflow_store`);
:meth:`SeriesCache.refresh` fetches only the points after the last cached step and appends them,
which is what keeps a live 1M-step run cheap to redraw. Entries are evicted least recently used
once the cache holds more than ``max_points`` points.

Appending after the last step misses one thing: a job resumed from a checkpoint logs again the
steps after it, so values *before* the cached last step change. The logger marks such a resume
(tag ``lrwatch.resumed``) and callers pass it on: as the run's ``generation`` (series cached
under another one are dropped, in memory and on disk, and read again whole), and ``reread=True``
while the resumed job is still logging steps the earlier attempt had logged (each read is then
a whole read, and nothing goes to disk).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

import numpy as np

from dashboard.data.disk_cache import DiskCache
from lrwatch.run import Series

# 20M points (steps int64 + values float64 = 320 MB) fits twenty 1M-step runs' loss and LR.
DEFAULT_MAX_POINTS = 20_000_000

Reader = Callable[..., dict[str, Series]]
CacheKey = tuple[str, str, str]


def _default_reader(tracking_uri: str, run_id: str, keys, *, after_step=None):
    from dashboard.data.read_helper import shared_helper

    return shared_helper().read(tracking_uri, run_id, keys, after_step=after_step)


class SeriesCache:
    """LRU of cleaned series per (tracking URI, run id, metric key), refreshed incrementally.

    Args:
        max_points: evict least recently used series beyond this many points in total.
        reader: ``reader(uri, run_id, keys, *, after_step=None) -> {key: Series}``; the default
            is :func:`lrwatch.sources.mlflow_store.read_histories`, shared with the helper process
            of :mod:`dashboard.data.read_helper` once the app has started it.
        disk: an on-disk copy of long series (see :mod:`dashboard.data.disk_cache`), or None.
    """

    def __init__(
        self,
        max_points: int = DEFAULT_MAX_POINTS,
        reader: Reader | None = None,
        disk: DiskCache | None = None,
    ) -> None:
        self.max_points = max_points
        self._reader = reader or _default_reader
        self.disk = disk
        self._saved_points: dict[CacheKey, int] = {}
        self._generations: dict[tuple[str, str], str] = {}
        self._rereading: set[tuple[str, str]] = set()  # runs read whole: no disk copy
        self._entries: OrderedDict[CacheKey, Series] = OrderedDict()
        self._lock = threading.Lock()
        # One fetch at a time per run: two callbacks asking for the same cold run (a page load
        # fires several) wait for one read instead of both reading 1M rows.
        self._run_locks: dict[tuple[str, str], threading.Lock] = {}
        self.points_fetched = 0  # points read from the store so far (tests and benchmarks)

    def get(
        self,
        tracking_uri: str,
        run_id: str,
        keys: Iterable[str],
        *,
        generation: str = "",
        reread: bool = False,
    ) -> dict[str, Series]:
        """The series of ``keys`` (cached, else read whole). Keys with no points are left out.
        ``generation`` / ``reread``: see the module docstring."""
        return self._locked(self._get, tracking_uri, run_id, keys, generation, reread)

    def refresh(
        self,
        tracking_uri: str,
        run_id: str,
        keys: Iterable[str],
        *,
        generation: str = "",
        reread: bool = False,
    ) -> dict[str, Series]:
        """Fetch only points after each key's last cached step, append, and return all series."""
        return self._locked(self._refresh, tracking_uri, run_id, keys, generation, reread)

    def _locked(self, fetch, tracking_uri, run_id, keys, generation, reread) -> dict[str, Series]:
        """``fetch(uri, run_id, keys)`` under the run's lock, after entering its generation."""
        with self._run_lock(tracking_uri, run_id):
            self._enter_generation(tracking_uri, run_id, generation, reread)
            return fetch(tracking_uri, run_id, list(dict.fromkeys(keys)))

    def _enter_generation(
        self, tracking_uri: str, run_id: str, generation: str, reread: bool
    ) -> None:
        """Drop the run's series when they must be read whole again (see the module docstring)."""
        run = (tracking_uri, run_id)
        with self._lock:
            known = self._generations.get(run)
            self._generations[run] = generation
            # The first read after the rewrite ended is whole too: it may hold steps rewritten
            # since the last whole read.
            was_rereading = run in self._rereading
            if reread:
                self._rereading.add(run)
            else:
                self._rereading.discard(run)
            if not (reread or was_rereading) and known in (None, generation):
                return
            stale = [k for k in self._entries if k[:2] == run]
            for cache_key in stale:
                del self._entries[cache_key]
                self._saved_points.pop(cache_key, None)
        if self.disk is not None and known not in (None, generation):
            for cache_key in stale:
                self.disk.delete(*cache_key, generation=known)

    def _generation(self, tracking_uri: str, run_id: str) -> str:
        with self._lock:
            return self._generations.get((tracking_uri, run_id), "")

    def _run_lock(self, tracking_uri: str, run_id: str) -> threading.Lock:
        with self._lock:
            return self._run_locks.setdefault((tracking_uri, run_id), threading.Lock())

    def _get(self, tracking_uri: str, run_id: str, keys: list[str]) -> dict[str, Series]:
        found, missing = self._lookup(tracking_uri, run_id, keys)
        if missing and self.disk is not None and (tracking_uri, run_id) not in self._rereading:
            return self._from_disk(self.disk, tracking_uri, run_id, keys, missing)
        if missing:
            fetched = self._reader(tracking_uri, run_id, missing)
            for key in missing:
                series = fetched.get(key) or _empty()
                self._store((tracking_uri, run_id, key), series, fetched=len(series))
                found[key] = series
        return {k: found[k] for k in keys if len(found[k])}

    def _refresh(self, tracking_uri: str, run_id: str, keys: list[str]) -> dict[str, Series]:
        found, missing = self._lookup(tracking_uri, run_id, keys)
        cached = [k for k in keys if k not in missing]
        fetched = dict(self._reader(tracking_uri, run_id, missing)) if missing else {}
        if cached:
            # One query from the smallest last step: keys logged together share it in practice.
            last_steps = [int(found[k].steps[-1]) for k in cached if len(found[k])]
            after = min(last_steps) if len(last_steps) == len(cached) else None
            fetched.update(self._reader(tracking_uri, run_id, cached, after_step=after))
        for key in keys:
            new = fetched.get(key) or _empty()
            old = found.get(key) if key not in missing else None
            series = new if old is None else _append(old, new)
            self._store((tracking_uri, run_id, key), series, fetched=len(new))
            self._save((tracking_uri, run_id, key), series)
            found[key] = series
        return {k: found[k] for k in keys if len(found[k])}

    def _save(self, cache_key: CacheKey, series: Series) -> None:
        # A live run grows every refresh: rewrite its disk copy only after 10% more points.
        if self.disk is None or len(series) < 1.1 * self._saved_points.get(cache_key, 0) + 1:
            return
        if cache_key[:2] in self._rereading:
            return  # still being rewritten: a copy would keep values the resumed job replaces
        self.disk.save(*cache_key, series, generation=self._generation(*cache_key[:2]))
        self._saved_points[cache_key] = len(series)

    def _from_disk(
        self, disk: DiskCache, tracking_uri: str, run_id: str, keys: list[str], missing: list[str]
    ) -> dict[str, Series]:
        """Load what the disk copy has into memory, then refresh: only new points are read."""
        generation = self._generation(tracking_uri, run_id)
        for key in missing:
            saved = disk.load(tracking_uri, run_id, key, generation=generation)
            if saved is not None:
                self._store((tracking_uri, run_id, key), saved, fetched=0)
                self._saved_points[(tracking_uri, run_id, key)] = len(saved)
        return self._refresh(tracking_uri, run_id, keys)

    @property
    def total_points(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._entries.values())

    def _lookup(self, tracking_uri, run_id, keys) -> tuple[dict[str, Series], list[str]]:
        found, missing = {}, []
        with self._lock:
            for key in keys:
                entry = self._entries.get((tracking_uri, run_id, key))
                if entry is None:
                    missing.append(key)
                else:
                    self._entries.move_to_end((tracking_uri, run_id, key))
                    found[key] = entry
        return found, missing

    def _store(self, cache_key: CacheKey, series: Series, *, fetched: int) -> None:
        with self._lock:
            self._entries[cache_key] = series
            self._entries.move_to_end(cache_key)
            self.points_fetched += fetched
            total = sum(len(s) for s in self._entries.values())
            while total > self.max_points and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                total -= len(evicted)


def _append(old: Series, new: Series) -> Series:
    """``old`` followed by the points of ``new`` after its last step (both cleaned)."""
    if not len(new):
        return old
    if len(old):
        new_part = new.steps > old.steps[-1]
        new = Series(new.steps[new_part], new.values[new_part])
    return Series(np.concatenate([old.steps, new.steps]), np.concatenate([old.values, new.values]))


def _empty() -> Series:
    return Series(np.empty(0, np.int64), np.empty(0))
