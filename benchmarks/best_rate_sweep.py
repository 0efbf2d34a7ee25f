"""The best constant rate of each task at 1,000 steps, as ``labelled_runs.py``'s rate tables use.

Usage::

    python benchmarks/best_rate_sweep.py --optimizer adam   # ~1 min on 2 cores

Each rate from 1e-5 to 1 (half-decade grid) trains on two seeds and problem instances no quality
set uses (950-951 on 1350-1351); the final level is the median of the loss's last 20%, averaged
over the two. The best rate has the lowest; the set's other rates are fixed multiples of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from labelled_runs import BEST_LR, STEPS, final_level  # noqa: E402

RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
SWEEP_SEEDS = (950, 951)
TASK_SEED_OFFSET = 400  # problem instances 1350-1351


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="adam", choices=("sgd", "adam", "adamw", "rmsprop"))
    args = parser.parse_args()
    import numpy as np
    import torch

    from lrwatch.tasks import TrainConfig, train

    torch.set_num_threads(1)
    for task in BEST_LR:
        levels = {}
        for lr in RATES:
            runs = [
                train(
                    TrainConfig(
                        task=task,
                        optimizer=args.optimizer,
                        lr=lr,
                        steps=STEPS,
                        seed=seed,
                        task_seed=seed + TASK_SEED_OFFSET,
                    )
                )
                for seed in SWEEP_SEEDS
            ]
            levels[lr] = float(np.mean([final_level(run.loss.values) for run in runs]))
        best = min(levels, key=levels.__getitem__)
        grid = " ".join(f"{lr:g}:{level:.3g}" for lr, level in levels.items())
        print(f"{task}: best {best:g}  ({grid})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
