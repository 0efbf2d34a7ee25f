"""Out-of-distribution check: lrwatch on a small char-level transformer under AdamW.

Every detector threshold was set on small MLP, quadratic and autoencoder tasks
(``labelled_runs.py``). This trains the ``char_lm`` task of :mod:`lrwatch.tasks` (a 2-layer
causal transformer predicting a synthetic text, 1,000 steps) over an LR sweep under four
schedules - constant, warmup_constant, cosine, warmup_cosine (warmup: the first 10%) - and
prints what ``lrwatch analyze`` says about each run beside its final loss. Nothing here was tuned
on; the figures are in the README.

Each run is judged against the best LR of its own schedule in this sweep (lowest mean final
loss over the seeds): ``near best`` within 3x of it, ``too small`` 10x below it or more,
``too high`` 10x above it or more. A warning on a near-best run is a false alarm; a too-small
run without ``slow_convergence`` is a miss.

Usage::

    python benchmarks/transformer_check.py             # 56 runs, ~9 min on 2 cores (cached)
    python benchmarks/transformer_check.py --rebuild   # retrain them
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrwatch.analysis import analyze  # noqa: E402
from lrwatch.analysis.findings import severity_rank  # noqa: E402
from lrwatch.analysis.sweep import final_loss as sweep_final_loss  # noqa: E402

CACHE = Path(__file__).resolve().parent.parent / "artifacts" / "transformer" / "runs.pkl"
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SCHEDULES = ("constant", "warmup_constant", "cosine", "warmup_cosine")
SEEDS = (0, 1)
STEPS = 1000
WARNING = severity_rank("warning")


def train_all() -> list:
    from lrwatch.tasks import TrainConfig, train

    runs = []
    for seed in SEEDS:
        for schedule in SCHEDULES:
            for lr in LRS:
                config = TrainConfig(
                    task="char_lm",
                    optimizer="adamw",
                    lr=lr,
                    weight_decay=0.1,
                    steps=STEPS,
                    batch_size=16,
                    schedule=schedule,
                    warmup_steps=STEPS // 10 if schedule.startswith("warmup") else 0,
                    seed=seed,
                    task_seed=0,
                )
                runs.append(train(config))
                print(f"  trained {runs[-1].name}", file=sys.stderr)
    return runs


def load(rebuild: bool) -> list:
    if CACHE.exists() and not rebuild:
        return pickle.loads(CACHE.read_bytes())
    runs = train_all()
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_bytes(pickle.dumps(runs))
    return runs


def final_loss(run) -> float:
    """The run's final level as the sweep reads it (a trimmed mean of its last ~10%; inf when
    it turned non-finite)."""
    return sweep_final_loss(run.loss.values)[0]


def _group(ratio: float) -> str | None:
    """A run's LR against its schedule's best: near best (within 3x), too small or too high
    (10x or more off), or None in between."""
    if 1 / 3 <= ratio <= 3:
        return "near best"
    if ratio <= 0.1:
        return "too small"
    if ratio >= 10:
        return "too high"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="retrain the runs")
    args = parser.parse_args()
    runs = load(args.rebuild)
    by_point = defaultdict(list)
    for run in runs:
        by_point[run.params["schedule"], float(run.params["lr"])].append(final_loss(run))
    best = {}
    for schedule in SCHEDULES:
        means = {lr: np.mean(by_point[schedule, lr]) for lr in LRS}
        best[schedule] = min(means, key=means.get)
    print(
        "| schedule | LR | seed | final loss | warnings | recommendation |\n|---|---|---|---|---|---|"
    )
    tally = defaultdict(Counter)
    for run in runs:
        schedule, lr = run.params["schedule"], float(run.params["lr"])
        report = analyze(run)
        warned = sorted({f.kind for f in report.findings if severity_rank(f.severity) >= WARNING})
        group = _group(lr / best[schedule])
        if group:
            tally[group]["runs"] += 1
            tally[group]["with a warning"] += bool(warned)
            for kind in warned:
                tally[group][kind] += 1
        print(
            f"| {schedule} | {lr:g} | {run.params['seed']} | {final_loss(run):.3f} | "
            f"{', '.join(warned) or '-'} | {report.recommendation.action} |"
        )
    print("\nbest LR per schedule:", {s: f"{lr:g}" for s, lr in best.items()})
    for group in ("too small", "near best", "too high"):
        print(f"{group}: {dict(tally[group])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
