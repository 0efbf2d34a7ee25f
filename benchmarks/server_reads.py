"""Reading runs through a tracking server: MLflow's client beside lrwatch's REST reads.

A team's shared ``mlflow server`` is read over HTTP. For runs of 10k and 100k steps (loss + LR,
the dashboard benchmark's runs, built into a SQLite store that a real ``mlflow server --workers
1`` on 127.0.0.1 serves), side by side in one process, median of ``--repeats`` interleaved
rounds:

- **whole read** of loss and LR: ``MlflowClient.get_metric_history`` (what lrwatch used to call)
  against ``read_histories`` (the same REST pages parsed as plain JSON);
- **live refresh** with the last 100 points new: before, the client read both metrics whole
  again (it has no other read); now ``read_histories(after_step=...)`` reads the new steps from
  the sampled-history endpoint;
- the dashboard after a restart, its disk copy of the run in place (``DashboardData.load``: the
  copy, then a read of what is newer), and its live refresh then (no new points).

Both reads are checked to return the same points. Usage::

    python benchmarks/server_reads.py [--store PATH] [--sizes 10000,100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from benchmarks.dashboard_load import build_store, local_mlflow_server  # noqa: E402

KEYS = ["train/loss", "lr"]
NEW_POINTS = 100


def client_read(uri: str, run_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    out = {}
    for key in KEYS:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        out[key] = (np.array([m.step for m in history]), np.array([m.value for m in history]))
    return out


def lrwatch_read(uri: str, run_id: str, after_step: int | None = None):
    from lrwatch.sources.mlflow_store import read_histories

    return {
        key: (series.steps, series.values)
        for key, series in read_histories(uri, run_id, KEYS, after_step=after_step).items()
    }


def _same(a: dict, b: dict, after_step: int | None = None) -> bool:
    for key in KEYS:
        steps, values = b[key]
        keep = steps > (after_step if after_step is not None else -(2**62))
        if not (
            np.array_equal(a[key][0], steps[keep])
            and np.array_equal(a[key][1], values[keep], equal_nan=True)
        ):
            return False
    return True


def _clock(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(uri: str, run_id: str, n: int, repeats: int) -> dict[str, float]:
    from dashboard.data import DashboardData, SeriesCache
    from dashboard.data.disk_cache import DiskCache

    times: dict[str, list[float]] = {name: [] for name in ("client", "whole", "tail")}
    times.update(restart=[], refresh=[])
    after = n - 1 - NEW_POINTS
    for _ in range(repeats):
        seconds, before = _clock(lambda: client_read(uri, run_id))
        times["client"].append(seconds)
        seconds, whole = _clock(lambda: lrwatch_read(uri, run_id))
        times["whole"].append(seconds)
        seconds, tail = _clock(lambda: lrwatch_read(uri, run_id, after))
        times["tail"].append(seconds)
        if not (_same(whole, before) and _same(tail, before, after)):
            raise SystemExit(f"server_reads: the reads of the {n}-step run differ")
        folder = tempfile.mkdtemp(prefix="lrwatch-bench-cache-")
        try:
            DashboardData(uri, cache=SeriesCache(disk=DiskCache(folder))).load(run_id)
            restarted = DashboardData(uri, cache=SeriesCache(disk=DiskCache(folder)))
            times["restart"].append(_clock(lambda d=restarted: d.load(run_id))[0])
            refresh = _clock(lambda d=restarted: d.load(run_id, refresh=True))[0]
            times["refresh"].append(refresh)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", default=str(ROOT / "artifacts" / "bench-dashboard" / "mlflow.db")
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    store_uri = f"sqlite:///{Path(args.store).resolve()}"
    sizes = [int(s) for s in args.sizes.split(",")]
    run_ids = build_store(store_uri, sizes)

    with local_mlflow_server(store_uri) as uri:
        lrwatch_read(uri, run_ids[sizes[0]], 0)  # imports and the first connection, not timed
        results = {n: measure(uri, run_ids[n], n, args.repeats) for n in sizes}

    print("| steps | whole read: MLflow's client (before: also every refresh) | whole read: "
          f"lrwatch | refresh, {NEW_POINTS} new points: lrwatch | dashboard after a restart "
          "(disk copy) | dashboard refresh |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        print(f"| {n:,} | {r['client']:.2f} s | {r['whole']:.2f} s | {r['tail'] * 1000:.0f} ms "
              f"| {r['restart'] * 1000:.0f} ms | {r['refresh'] * 1000:.0f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
