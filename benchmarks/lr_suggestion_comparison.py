"""Which LR-suggestion rule should be the default? Measured on real training, not on curves.

For each task x optimizer x seed: run a real range test (``find_lr_on_task``), take every rule's
suggested LR, train a real run of fixed length with it, and compare its final loss with the best
final loss of a full LR sweep (log-spaced rates) on the same task, optimizer and seed.

Reported per rule: the median and worst ratio final_loss(suggested) / final_loss(sweep best),
how often it is within 2x, and the median |log10(lr / lr_best)|.

    python benchmarks/lr_suggestion_comparison.py            # about 2-4 minutes on one core
    python benchmarks/lr_suggestion_comparison.py --quick    # one seed, fewer sweep points
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from lrwatch.analysis.range_test import DEFAULT_METHOD, METHODS
from lrwatch.lr_finder import DEFAULT_NUM_STEPS, find_lr_on_task
from lrwatch.tasks import TrainConfig, train

TASKS = ("mlp_regression", "mlp_classification", "autoencoder", "quadratic")
OPTIMIZERS = (("sgd", 0.9), ("adam", 0.0))
# Final loss = mean training loss over the last 10% of steps (minibatch noise averages out).
TAIL_FRACTION = 0.1


def final_loss(run) -> float:
    """Mean loss over the run's last 10% of steps; inf when it diverged or stopped short."""
    values = run.loss.values
    steps = int(run.params["steps"])
    if values.size < steps or not np.all(np.isfinite(values)):
        return math.inf
    return float(values[-max(int(steps * TAIL_FRACTION), 1) :].mean())


def evaluate(config: TrainConfig, sweep_lrs, range_steps: int) -> dict:
    """Sweep-best and each rule's suggested LR and final loss for one configuration."""
    sweep = [(lr, final_loss(train(config.with_(lr=float(lr))))) for lr in sweep_lrs]
    best_lr, best_loss = min(sweep, key=lambda pair: pair[1])
    result = find_lr_on_task(config, num_steps=range_steps)
    rows = {}
    for method in METHODS:
        lr = result.suggest(method).lr
        loss = final_loss(train(config.with_(lr=lr)))
        rows[method] = {"lr": lr, "loss": loss, "ratio": loss / best_loss}
    return {"best_lr": best_lr, "best_loss": best_loss, "rules": rows}


def summarise(results: list[dict]) -> list[tuple]:
    table = []
    for method in METHODS:
        ratios = np.array([r["rules"][method]["ratio"] for r in results])
        distance = np.array(
            [abs(math.log10(r["rules"][method]["lr"] / r["best_lr"])) for r in results]
        )
        table.append(
            (
                method,
                float(np.median(ratios)),
                float(np.max(ratios)),
                int(np.sum(ratios <= 2.0)),
                len(ratios),
                float(np.median(distance)),
            )
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 8 sweep points")
    parser.add_argument("--steps", type=int, default=500, help="training steps per run")
    parser.add_argument(
        "--range-steps", type=int, default=DEFAULT_NUM_STEPS, help="range-test steps"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = (0,) if args.quick else (0, 1)
    # 12 rates, ~2.6x apart, covering where every task/optimizer pair trains best and diverges.
    sweep_lrs = np.geomspace(1e-4, 3.0, 8 if args.quick else 12)
    started = time.perf_counter()
    results = []
    print(f"{'task':<20}{'opt':<6}{'seed':>5}{'best lr':>10}{'best loss':>11}  ", end="")
    print("".join(f"{m + ' lr/ratio':>22}" for m in METHODS))
    for task in TASKS:
        for optimizer, momentum in OPTIMIZERS:
            for seed in seeds:
                config = TrainConfig(
                    task=task, optimizer=optimizer, momentum=momentum, steps=args.steps, seed=seed
                )
                r = evaluate(config, sweep_lrs, args.range_steps)
                results.append(r)
                cells = "".join(
                    f"{r['rules'][m]['lr']:>12.2g}/{r['rules'][m]['ratio']:<9.3g}" for m in METHODS
                )
                print(
                    f"{task:<20}{optimizer:<6}{seed:>5}{r['best_lr']:>10.2g}"
                    f"{r['best_loss']:>11.4g}  {cells}",
                    flush=True,
                )
    print()
    print("rule        median ratio   worst ratio   within 2x   median |log10(lr/lr_best)|")
    for method, median, worst, ok, n, dist in summarise(results):
        mark = "  (default)" if method == DEFAULT_METHOD else ""
        print(f"{method:<12}{median:>12.3g}{worst:>14.3g}{ok:>8}/{n:<4}{dist:>14.2f}{mark}")
    print(f"\n{len(results)} configurations, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
