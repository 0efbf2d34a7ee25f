"""A training script that forks a helper process which ends normally while training goes on.

python -m tests.tracking.forking_script URI

The child leaves the ``with lrwatch.watch(...)`` block through ``sys.exit`` and then runs the
interpreter's atexit hooks: both used to close the parent's watcher - ending its MLflow run
mid-training and deleting its spool file. Prints ``child-exited <run status> <spool exists>``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow

import lrwatch
from lrwatch.tasks import TrainConfig
from tests.tracking.tracking_loops import ManualLoop


def main() -> None:
    uri = sys.argv[1]
    loop = ManualLoop(TrainConfig(task="mlp_regression", lr=0.01, steps=200))
    watched = lrwatch.watch(
        loop.optimizer, tracking_uri=uri, experiment="fork", flush_interval=0.05, analyze=False
    )
    with watched as w:
        for step in loop.steps(w):
            if step == 100:
                pid = os.fork()
                if pid == 0:
                    sys.exit(0)
                os.waitpid(pid, 0)
                status = mlflow.MlflowClient(uri).get_run(w.run_id).info.status
                print(f"child-exited {status} {Path(w.spool_path).exists()}", flush=True)


if __name__ == "__main__":
    main()
