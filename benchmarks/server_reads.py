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

Both reads are checked to return the same points. Then ``lrwatch analyze``'s read of a run that
logs ``--extra-metrics`` more metrics each step (per-layer gradient norms, say) over 10k steps:
``read_run`` of every series (what it read before) against ``analysed_only=True`` (the loss and
the LR), through the server and straight from the SQLite file. Usage::

    python benchmarks/server_reads.py [--store PATH] [--sizes 10000,100000] [--repeats 3]
        [--extra-metrics 20]
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


def build_many_metrics_run(uri: str, steps: int, extra: int) -> str:
    """A finished run logging loss, LR and ``extra`` more metrics at each step (built once)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from benchmarks.dashboard_load import EXPERIMENT, synthetic_run

    client = MlflowClient(uri)
    name = f"bench-{steps}-plus-{extra}-metrics"
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    for run in client.search_runs([experiment_id], f"attributes.run_name = '{name}'"):
        return run.info.run_id
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    _, loss, lr = synthetic_run(steps)
    others = np.random.default_rng(1).random((extra, steps))
    stamp = int(time.time() * 1000)
    per_batch = 1000 // (extra + 2)  # one log_batch takes at most 1000 metrics
    for start in range(0, steps, per_batch):
        chunk = range(start, min(steps, start + per_batch))
        metrics = [Metric("train/loss", float(loss[i]), stamp + i, i) for i in chunk]
        metrics += [Metric("lr", float(lr[i]), stamp + i, i) for i in chunk]
        for k in range(extra):
            metrics += [
                Metric(f"grad_norm/layer{k}", float(others[k, i]), stamp + i, i) for i in chunk
            ]
        client.log_batch(run_id, metrics=metrics)
    client.set_terminated(run_id)
    return run_id


def measure_analyse_read(uris: dict[str, str], run_id: str, repeats: int) -> dict[tuple, float]:
    """Median seconds of read_run, every series vs the analysed ones, per store."""
    from lrwatch.sources.mlflow_store import read_run

    times: dict[tuple, list[float]] = {}
    for _ in range(repeats):
        for where, uri in uris.items():
            every = _clock(lambda uri=uri: read_run(uri, run_id))
            analysed = _clock(lambda uri=uri: read_run(uri, run_id, analysed_only=True))
            if not _same(_as_points(analysed[1]), _as_points(every[1])):
                raise SystemExit("server_reads: the analysed series differ from a whole read")
            times.setdefault((where, "every"), []).append(every[0])
            times.setdefault((where, "analysed"), []).append(analysed[0])
    return {key: statistics.median(values) for key, values in times.items()}


def _as_points(run) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {key: (run.metrics[key].steps, run.metrics[key].values) for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", default=str(ROOT / "artifacts" / "bench-dashboard" / "mlflow.db")
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--extra-metrics", type=int, default=20)
    args = parser.parse_args()
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    store_uri = f"sqlite:///{Path(args.store).resolve()}"
    sizes = [int(s) for s in args.sizes.split(",")]
    run_ids = build_store(store_uri, sizes)
    many_id = build_many_metrics_run(store_uri, 10_000, args.extra_metrics)

    with local_mlflow_server(store_uri) as uri:
        lrwatch_read(uri, run_ids[sizes[0]], 0)  # imports and the first connection, not timed
        results = {n: measure(uri, run_ids[n], n, args.repeats) for n in sizes}
        stores = {"tracking server": uri, "SQLite file": store_uri}
        analyse = measure_analyse_read(stores, many_id, args.repeats)

    print("| steps | whole read: MLflow's client (before: also every refresh) | whole read: "
          f"lrwatch | refresh, {NEW_POINTS} new points: lrwatch | dashboard after a restart "
          "(disk copy) | dashboard refresh |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        print(f"| {n:,} | {r['client']:.2f} s | {r['whole']:.2f} s | {r['tail'] * 1000:.0f} ms "
              f"| {r['restart'] * 1000:.0f} ms | {r['refresh'] * 1000:.0f} ms |")  # fmt: skip

    print(f"\n| read_run of a 10,000-step run with {args.extra_metrics} more metrics a step | "
          "every series (before) | the loss and the LR (lrwatch analyze) |")  # fmt: skip
    print("|---|---:|---:|")
    for where in stores:
        print(f"| {where} | {analyse[(where, 'every')]:.2f} s "
              f"| {analyse[(where, 'analysed')]:.2f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
