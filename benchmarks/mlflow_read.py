"""Reading one metric's history from an MLflow SQL store: direct SQL vs MlflowClient.

Logs a run with N points of ``train/loss`` (REAL values: a seeded ``lrwatch.tasks`` training
run, tiled to N points) through ``MlflowClient.log_batch`` into a fresh SQLite store (or the
store ``--tracking-uri`` names, e.g. an empty PostgreSQL database), then times
``lrwatch.sources.mlflow_store.read_history`` (read-only SELECT into numpy) against
``MlflowClient.get_metric_history`` and checks both return the same points. Median of 3 reads.

    python benchmarks/mlflow_read.py                    # 10k, 100k and 1M points; a few minutes
    python benchmarks/mlflow_read.py --points 10000 100000
    python benchmarks/mlflow_read.py --tracking-uri postgresql://user@host/empty_db
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def log_points(client, experiment_id: str, values: np.ndarray) -> str:
    from mlflow.entities import Metric

    run_id = client.create_run(experiment_id).info.run_id
    for start in range(0, values.size, 1000):  # MLflow's per-request limit
        chunk = values[start : start + 1000]
        metrics = [
            Metric("train/loss", float(v), 1_000 + start + i, start + i)
            for i, v in enumerate(chunk)
        ]
        client.log_batch(run_id, metrics=metrics)
    return run_id


def median_time(fn, repeats: int = 3):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--tracking-uri", help="a SQL store to use (default: a fresh SQLite one)")
    args = parser.parse_args()
    from mlflow import MlflowClient

    from lrwatch.sources.mlflow_store import read_history
    from lrwatch.tasks import TrainConfig, train

    real = train(TrainConfig(task="mlp_regression", lr=0.05, steps=2_000, seed=0)).loss.values
    with tempfile.TemporaryDirectory() as tmp:
        uri = args.tracking_uri or f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        experiment_id = client.create_experiment(f"read-benchmark-{time.time_ns()}")
        print(f"{'points':>10} {'direct SQL':>12} {'MlflowClient':>14} {'speed-up':>9}")
        for n in args.points:
            run_id = log_points(client, experiment_id, np.resize(real, n))
            fast_s, fast = median_time(lambda: read_history(uri, run_id, "train/loss"))  # noqa: B023
            slow_s, history = median_time(
                lambda: client.get_metric_history(run_id, "train/loss"),  # noqa: B023
                repeats=1 if n >= 1_000_000 else 3,
            )
            same = np.array_equal(fast.values, [m.value for m in history]) and len(fast) == n
            print(
                f"{n:>10,} {fast_s:>10.3f} s {slow_s:>12.2f} s {slow_s / fast_s:>8.0f}x"
                + ("" if same else "  MISMATCH")
            )


if __name__ == "__main__":
    main()
