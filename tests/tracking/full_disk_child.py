"""A training script whose files may not grow past LIMIT_BYTES (RLIMIT_FSIZE): a spool write
past it fails with EFBIG, as one on a full disk fails with ENOSPC. Prints "closed <delivered>".

python -m tests.tracking.full_disk_child URI STEPS LIMIT_BYTES
"""

from __future__ import annotations

import resource
import signal
import sys
import time

import lrwatch
from lrwatch.tasks import TrainConfig
from tests.tracking.tracking_loops import ManualLoop


def main() -> None:
    uri, steps, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    loop = ManualLoop(TrainConfig(task="mlp_regression", lr=0.01, steps=steps))
    # Ignored, the signal lets the write fail with an error instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    w = lrwatch.watch(loop.optimizer, tracking_uri=uri, experiment="full", flush_interval=0.05)
    for _ in loop.steps(w):
        time.sleep(0.002)
    print(f"closed {w.close(timeout_s=60)}", flush=True)


if __name__ == "__main__":
    main()
