"""How fast is `lrwatch analyze` on files: one 10k-step CSV as a whole process, and a batch.

1. Whole process, median of N: ``python -m lrwatch.cli analyze run.csv`` (text and JSON) beside
   ``python -c "import lrwatch"`` (the floor: interpreter start + package import).
2. A batch of many runs x 10,000 steps, one CSV each, through :mod:`lrwatch.batch` on 1 process
   and on every core; and the same folder through the real command (with the sweep section).

The runs are REAL: a few seeded ``lrwatch.tasks`` trainings of 10,000 steps at rates from too
low to diverging; each batch file is one of them with its own seeded 2% multiplicative noise, so
no two files are equal and the analysis sees real curve shapes.

    python benchmarks/cli_startup.py                   # 1,000 runs; a few minutes with setup
    python benchmarks/cli_startup.py --runs 100 --repeats 5
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = 10_000
# Rates for mlp_regression/SGD: creeping, healthy, diverging (stops ~50 steps in).
BASE_RATES = (0.002, 0.05, 0.2)


def real_base_runs():
    import torch

    from lrwatch.tasks import TrainConfig, train

    torch.set_num_threads(1)  # tiny models: threads only contend on a shared 2-core machine
    return [
        train(TrainConfig(task="mlp_regression", lr=lr, steps=STEPS, seed=0)) for lr in BASE_RATES
    ]


def write_csv(path: Path, steps: np.ndarray, loss: np.ndarray, lr: np.ndarray) -> None:
    table = np.column_stack([steps, loss, lr])
    np.savetxt(path, table, delimiter=",", header="step,train/loss,lr", comments="", fmt="%.10g")


def make_batch(folder: Path, base_runs, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        base = base_runs[i % len(base_runs)]
        rng = np.random.default_rng(i)
        noise = 1 + 0.02 * rng.standard_normal(len(base.loss))
        path = folder / f"run{i:04d}.csv"
        write_csv(path, base.loss.steps, base.loss.values * noise, base.lr.values)
        paths.append(path)
    return paths


def median_seconds(commands: list[list[str]], repeats: int) -> list[float]:
    """Median wall time of each command; rounds interleave them so a busy moment hits all alike."""
    for command in commands:  # warm-up: file cache, .pyc files
        subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(repeats):
        for i, command in enumerate(commands):
            start = time.perf_counter()
            subprocess.run(
                command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_batch(paths: list[Path], workers: int) -> tuple[float, float]:
    """Wall and CPU seconds to analyse every file (CPU shows the work when cores are shared)."""
    from lrwatch.batch import analyze_refs
    from lrwatch.sources import RunRef

    refs = [RunRef("file", str(p), str(p)) for p in paths]
    cpu_start, start = cpu_seconds(), time.perf_counter()
    results = list(analyze_refs(refs, keep_series=False, workers=workers))
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    bad = [r.error for r in results if r.error]
    assert not bad, bad[:3]
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    from lrwatch.batch import available_cores

    cores = available_cores()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = real_base_runs()
        single = folder / "single.csv"
        write_csv(single, base[1].loss.steps, base[1].loss.values, base[1].lr.values)
        py = sys.executable
        labels_and_commands = [
            ("python -c 'import lrwatch' (floor)", [py, "-c", "import lrwatch"]),
            ("lrwatch analyze 10k-step CSV", [py, "-m", "lrwatch.cli", "analyze", str(single)]),
            (
                "lrwatch analyze 10k-step CSV --format json",
                [py, "-m", "lrwatch.cli", "analyze", str(single), "--format", "json"],
            ),
        ]
        medians = median_seconds([c for _, c in labels_and_commands], args.repeats)
        rows = [(label, m) for (label, _), m in zip(labels_and_commands, medians)]
        print(f"Whole process, median of {args.repeats} ({cores} cores available)")
        for label, seconds in rows:
            print(f"  {label:<46} {seconds * 1000:8.0f} ms")

        batch_dir = folder / "batch"
        batch_dir.mkdir()
        paths = make_batch(batch_dir, base, args.runs)
        print(f"\nBatch: {args.runs} runs x {STEPS} steps (CSV files)")
        for workers in sorted({1, cores}):
            seconds, cpu = time_batch(paths, workers)
            per_run = seconds / args.runs * 1000
            label = f"lrwatch.batch, {workers} process(es)"
            print(f"  {label:<46} {seconds:7.1f} s  ({per_run:.1f} ms/run; CPU {cpu:.1f} s)")
        start = time.perf_counter()
        # Files carry no params: --sweep says they are one, as the table's row measures.
        folder = [str(batch_dir), "--format", "json", "--sweep"]
        command = [py, "-m", "lrwatch.cli", "analyze", *folder]
        subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        print(f"  {'lrwatch analyze FOLDER --format json --sweep':<46} {seconds:7.1f} s")


if __name__ == "__main__":
    main()
