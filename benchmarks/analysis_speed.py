"""Analysis speed through ``lrwatch.analysis.analyze`` (prepare + detectors + schedule + advice).

Usage::

    python benchmarks/analysis_speed.py                 # both cases below
    python benchmarks/analysis_speed.py --runs 200      # a smaller batch

Cases (targets from the design): one 1,000,000-step run "well under a second"; 1,000 runs of
10,000 steps in under 30 s on 2 cores (measured on one core here: runs are independent, so
two worker processes halve it). Loss curves are synthetic but realistic: an exponential descent
with heavy-tailed minibatch noise, some runs blowing up, some oscillating, an LR schedule.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrwatch import keys  # noqa: E402
from lrwatch.analysis import analyze  # noqa: E402
from lrwatch.run import Run, Series  # noqa: E402


def synthetic_run(n: int, seed: int) -> Run:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    loss = 1.0 + 4.0 * np.exp(-t / (0.1 * n)) + 0.2 * rng.standard_t(3, n)
    kind = seed % 4
    if kind == 1:  # blows up in the last fifth
        onset = int(0.8 * n)
        loss[onset:] *= np.exp(np.minimum((t[onset:] - onset) / (0.01 * n), 700))
    elif kind == 2:  # oscillates
        loss += 0.5 * np.cos(2 * np.pi * t / 12)
    lr = np.where(t < n // 2, 0.1, 0.01) if kind == 3 else np.full(n, 0.1)
    steps = np.arange(n)
    return Run(
        id=f"synthetic-{seed}",
        metrics={keys.LOSS: Series(steps, loss), keys.LR: Series(steps, lr)},
    )


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args()
    with np.errstate(all="ignore"):
        big = [synthetic_run(1_000_000, seed) for seed in range(4)]
        batch = [synthetic_run(args.steps, seed) for seed in range(args.runs)]
    analyze(big[0])  # warm-up (imports, caches)
    print("| case | time |\n|---|---|")
    for run in big:
        seconds = best_of(lambda run=run: analyze(run), 3)
        kinds = sorted({f.kind for f in analyze(run).findings})
        print(f"| 1,000,000 steps ({run.id}, finds {kinds or 'nothing'}) | {seconds:.3f} s |")
    t0 = time.perf_counter()
    for run in batch:
        analyze(run)
    total = time.perf_counter() - t0
    print(f"| {args.runs:,} runs x {args.steps:,} steps, one process | {total:.2f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
