"""A training script run as a subprocess by the kill tests: prints "step <n> <time>" per step.

python -m tests.tracking.tracking_child URI FLUSH_INTERVAL STEPS [SLEEP_S]
"""

from __future__ import annotations

import sys
import time

import lrwatch
from lrwatch.tasks import TrainConfig
from tests.tracking.tracking_loops import ManualLoop


def main() -> None:
    uri, flush_interval, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    sleep_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.004
    loop = ManualLoop(TrainConfig(task="mlp_regression", lr=0.01, steps=steps))
    w = lrwatch.watch(
        loop.optimizer, tracking_uri=uri, experiment="kill", flush_interval=flush_interval
    )
    print(f"spool {w.spool_path}", flush=True)
    for step in loop.steps(w):
        print(f"step {step} {time.time()}", flush=True)
        time.sleep(sleep_s)  # a slower "model", so a flush interval spans many steps
    w.close()


if __name__ == "__main__":
    main()
