"""`lrwatch analyze` on runs of a local SQLite store (MLflow's default), as a whole process.

Builds a fresh SQLite store with ``--runs`` runs of ``--steps`` steps in one experiment (a sweep:
one constant rate each, a decaying loss with noise, logged through ``MlflowClient.log_batch``),
then times, median of ``--repeats``:

- ``lrwatch analyze RUN_ID`` (one run, text report);
- ``lrwatch analyze experiment:sweep --format json`` (every run, and the sweep section).

Runs and experiments of a SQLite store are read from its tables, without importing MLflow
(``lrwatch.sources.mlflow_sql``); before, MLflow's import and its ORM's ``get_run`` were most
of both times.

``--server`` also times ``experiment:sweep`` through a real ``mlflow server`` over the same
store, with 1 worker and with its default 4, read one run at a time (``--workers 1``, what
lrwatch did before) and ``SERVER_READ_THREADS`` runs at a time (now), side by side. Usage::

    python benchmarks/mlflow_analyze.py [--runs 200] [--steps 2000] [--repeats 5] [--server]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# `mlflow server`'s default number of uvicorn workers, and the one the README suggests.
SERVER_WORKERS = (1, 4)


def build_sweep(uri: str, runs: int, steps: int) -> list[str]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(uri)
    experiment_id = client.create_experiment("sweep")
    rng = np.random.default_rng(0)
    run_ids = []
    for r in range(runs):
        run_id = client.create_run(experiment_id, run_name=f"r{r}").info.run_id
        lr = float(10 ** rng.uniform(-4, 0))
        client.log_param(run_id, "lr", str(lr))
        loss = 2 * np.exp(-np.arange(steps) * lr / 50) + 0.1 + 0.05 * rng.standard_normal(steps)
        for start in range(0, steps, 500):  # 1,000 metrics a request: MLflow's limit
            chunk = range(start, min(steps, start + 500))
            metrics = [Metric("train/loss", float(loss[i]), 1_000 + i, i) for i in chunk]
            metrics += [Metric("lr", lr, 1_000 + i, i) for i in chunk]
            client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id)
        run_ids.append(run_id)
    return run_ids


def whole_process_s(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "lrwatch.cli", "analyze", *args],
            capture_output=True, text=True,
        )  # fmt: skip
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"mlflow_analyze: lrwatch analyze failed: {done.stderr.strip()}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server", action="store_true", help="also time it through a server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lrwatch-bench-") as folder:
        uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        run_ids = build_sweep(uri, args.runs, args.steps)
        one = whole_process_s([run_ids[0], "--tracking-uri", uri], args.repeats)
        sweep = ["experiment:sweep", "--tracking-uri", uri, "--format", "json"]
        every = whole_process_s(sweep, args.repeats)
        served = time_through_servers(uri, args.repeats) if args.server else {}
    print("| lrwatch analyze, whole process, SQLite store | median |")
    print("|---|---:|")
    print(f"| one run ({args.steps:,} steps) by its id | {one:.2f} s |")
    print(f"| experiment:sweep, {args.runs} runs, --format json | {every:.2f} s |")
    if served:
        from lrwatch.store import SERVER_READ_THREADS

        print(f"\n| experiment:sweep through `mlflow server` | one run at a time (before) "
              f"| {SERVER_READ_THREADS} at a time (now) |")  # fmt: skip
        print("|---|---:|---:|")
        for workers in SERVER_WORKERS:
            print(f"| --workers {workers} | {served[workers, 'one']:.1f} s "
                  f"| {served[workers, 'threads']:.1f} s |")  # fmt: skip


def time_through_servers(store_uri: str, repeats: int) -> dict[tuple[int, str], float]:
    """Seconds for ``experiment:sweep`` read through a server of each worker count, one run at
    a time and several at a time, in alternating rounds."""
    from benchmarks.dashboard_load import local_mlflow_server

    served = {}
    for workers in SERVER_WORKERS:
        with local_mlflow_server(store_uri, workers=workers) as server_uri:
            sweep = ["experiment:sweep", "--tracking-uri", server_uri, "--format", "json"]
            rounds: dict[str, list[float]] = {"one": [], "threads": []}
            for _ in range(repeats):
                rounds["one"].append(whole_process_s([*sweep, "--workers", "1"], 1))
                rounds["threads"].append(whole_process_s(sweep, 1))
        for way, times in rounds.items():
            served[workers, way] = statistics.median(times)
    return served


if __name__ == "__main__":
    main()
