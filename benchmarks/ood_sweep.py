"""An LR sweep on a task no detector threshold was set on, and what lrwatch says about each run.

Shared by the out-of-distribution checks (``transformer_check.py``, ``cnn_check.py``). Each run
is judged against the best LR of its own schedule in the sweep (lowest mean final loss over the
seeds): ``near best`` within 3x of it, ``too small`` 10x below it or more, ``too high`` 10x above
it or more. A warning on a near-best run is a false alarm; a too-small run without
``slow_convergence`` is a miss.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrwatch.analysis import analyze  # noqa: E402
from lrwatch.analysis.findings import severity_rank  # noqa: E402
from lrwatch.analysis.sweep import final_loss as sweep_final_loss  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
WARNING = severity_rank("warning")


@dataclass(frozen=True)
class Sweep:
    """Every (seed, schedule, LR) of one task and optimizer; warmup is the first 10% of steps."""

    task: str
    optimizer: str
    lrs: tuple[float, ...]
    schedules: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    cache: Path
    momentum: float = 0.0
    weight_decay: float = 0.0

    def configs(self) -> list:
        from lrwatch.tasks import TrainConfig

        return [
            TrainConfig(
                task=self.task,
                optimizer=self.optimizer,
                lr=lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                steps=self.steps,
                batch_size=self.batch_size,
                schedule=schedule,
                warmup_steps=self.steps // 10 if schedule.startswith("warmup") else 0,
                seed=seed,
                task_seed=0,
            )
            for seed in self.seeds
            for schedule in self.schedules
            for lr in self.lrs
        ]


def from_command_line(sweep: Sweep, doc: str) -> tuple[Sweep, bool]:
    """The sweep a check's command line asks for, and whether to retrain it: ``--seeds`` trains
    other seeds (a held-out copy of the sweep, cached beside the first)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="retrain the runs")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help=f"train these seeds (default: {sweep.seeds})"
    )
    args = parser.parse_args()
    if args.seeds:
        name = "runs-seeds-" + "-".join(map(str, args.seeds)) + ".pkl"
        sweep = replace(sweep, seeds=tuple(args.seeds), cache=sweep.cache.with_name(name))
    return sweep, args.rebuild


def load(sweep: Sweep, rebuild: bool) -> list:
    """The sweep's runs, trained once and cached under ``artifacts/``."""
    if sweep.cache.exists() and not rebuild:
        return pickle.loads(sweep.cache.read_bytes())
    from lrwatch.tasks import train

    runs = []
    for config in sweep.configs():
        runs.append(train(config))
        print(f"  trained {runs[-1].name}", file=sys.stderr)
    sweep.cache.parent.mkdir(parents=True, exist_ok=True)
    sweep.cache.write_bytes(pickle.dumps(runs))
    return runs


def final_loss(run) -> float:
    """The run's final level as the sweep reads it (a trimmed mean of its last ~10%; inf when
    it turned non-finite)."""
    return sweep_final_loss(run.loss.values)[0]


def best_rates(runs: list, sweep: Sweep) -> dict[str, float]:
    """Per schedule, the LR with the lowest mean final loss over the seeds."""
    by_point = defaultdict(list)
    for run in runs:
        by_point[run.params["schedule"], float(run.params["lr"])].append(final_loss(run))
    best = {}
    for schedule in sweep.schedules:
        means = {lr: np.mean(by_point[schedule, lr]) for lr in sweep.lrs}
        best[schedule] = min(means, key=means.get)
    return best


def group(ratio: float) -> str | None:
    """A run's LR against its schedule's best: near best (within 3x), too small or too high
    (10x or more off), or None in between."""
    if 1 / 3 <= ratio <= 3:
        return "near best"
    if ratio <= 0.1:
        return "too small"
    if ratio >= 10:
        return "too high"
    return None


def warned_kinds(report) -> list[str]:
    return sorted({f.kind for f in report.findings if severity_rank(f.severity) >= WARNING})


def print_report(runs: list, sweep: Sweep) -> dict:
    """Print each run's final loss, warnings and recommendation, then the tally per group.
    Returns the analysis report of each run, by run id."""
    best = best_rates(runs, sweep)
    print(
        "| schedule | LR | seed | final loss | warnings | recommendation |\n|---|---|---|---|---|---|"
    )
    tally = defaultdict(Counter)
    reports = {}
    for run in runs:
        schedule, lr = run.params["schedule"], float(run.params["lr"])
        reports[run.id] = report = analyze(run)
        warned = warned_kinds(report)
        kind = group(lr / best[schedule])
        if kind:
            tally[kind]["runs"] += 1
            tally[kind]["with a warning"] += bool(warned)
            for finding in warned:
                tally[kind][finding] += 1
        print(
            f"| {schedule} | {lr:g} | {run.params['seed']} | {final_loss(run):.3f} | "
            f"{', '.join(warned) or '-'} | {report.recommendation.action} |"
        )
    print("\nbest LR per schedule:", {s: f"{lr:g}" for s, lr in best.items()})
    for kind in ("too small", "near best", "too high"):
        print(f"{kind}: {dict(tally[kind])}")
    return reports
