"""Labelled real training runs for the detector-quality benchmark, with their labels by construction.

Every run is real PyTorch training from :mod:`lrwatch.tasks`. Its label comes from how it was made
(the sweep), never from a detector:

- ``divergence``: SGD at a rate 10-100x above the task's best rate (it blows up);
  plus heavy-ball momentum 0.98 at a large rate on ``quadratic`` (climbs without NaN).
  ``mlp_classification`` is left out here: at such rates its ReLU network collapses to the
  chance-level loss (log 5) after one spike instead of diverging, a different failure.
- ``slow_convergence``: SGD at a rate 30-300x below the task's best rate.
- ``oscillation``: heavy-ball momentum 0.98-0.99 on the ill-conditioned ``quadratic``.
- ``plateau``: a constant rate a few times above the best that does not diverge, *kept only
  when* its step-decayed twin (same seeds, StepLR) ends clearly lower (< 0.8x) - the decay
  proves the floor was held up by the rate. Twins that do not beat it leave the run out.
- ``healthy``: the task's best rate or a third of it, constant / cosine / warmup-cosine. The
  twin rule above applies to the constant-rate ones too: one its step-decayed twin clearly
  beats is labelled ``plateau`` instead, so one rule decides plateau everywhere.

Two disjoint sets: ``tuning`` (seeds 0-2, batch 32, every step logged) used to set thresholds,
and ``heldout`` (seeds 100-102, batch 16/64, logged every step or every 2nd step), evaluated
only at the end. Unit-test fixtures use seeds 7-9 and are in neither set.

Runs are cached as ``artifacts/quality/<set>.pkl`` (gitignored) so the benchmark re-runs fast.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parent.parent / "artifacts" / "quality"

# The best constant SGD rate of each task at 1000 steps (from a sweep over 1e-4..3, final loss).
BEST_LR = {
    "mlp_regression": 0.03,
    "mlp_classification": 0.3,
    "quadratic": 0.3,
    "autoencoder": 0.1,
}
DIVERGE_LRS = {
    "mlp_regression": (0.3, 1.0),
    "mlp_classification": (),
    "quadratic": (3.0, 10.0),
    "autoencoder": (3.0, 10.0),
}
SLOW_LRS = {
    "mlp_regression": (1e-4, 3e-4),
    "mlp_classification": (3e-4, 1e-3),
    "quadratic": (1e-4, 1e-3),
    "autoencoder": (3e-4, 1e-3),
}
PLATEAU_LRS = {
    "mlp_regression": (0.1, 0.15),
    "mlp_classification": (1.0, 1.5),
    "quadratic": (0.6, 1.0),
    "autoencoder": (0.3, 1.0),
}
OSCILLATION_CONFIGS = ((0.01, 0.99), (0.03, 0.99), (0.1, 0.98))  # (lr, momentum) on quadratic
FINITE_DIVERGENCE_CONFIGS = ((0.3, 0.98),)  # (lr, momentum) on quadratic
HEALTHY_SCHEDULES = ("constant", "cosine", "warmup_cosine")
# The twin must end below this share of the constant run's final level to label a plateau.
TWIN_MARGIN = 0.8

SETS = {
    "tuning": {"seeds": (0, 1, 2), "batch_sizes": (32,), "log_every": (1,)},
    "heldout": {"seeds": (100, 101, 102), "batch_sizes": (16, 64), "log_every": (1, 2)},
}
STEPS = 1000


@dataclass
class LabelledRun:
    label: str  # divergence | oscillation | plateau | slow_convergence | healthy
    name: str
    steps: object  # numpy arrays (kept generic so this module imports without numpy typing)
    loss: object
    lr: object


def _final_level(run) -> float:
    import numpy as np

    y = run.loss.values
    return float(np.median(y[int(0.8 * y.size) :])) if np.isfinite(y).all() else float("inf")


def _twin_beats(const, twin) -> bool:
    return _final_level(twin) < TWIN_MARGIN * _final_level(const)


def build(set_name: str) -> list[LabelledRun]:
    """Train every run of one set (a few minutes) and return them with their labels."""
    import torch

    from lrwatch.tasks import TrainConfig, train

    torch.set_num_threads(1)
    spec = SETS[set_name]
    out: list[LabelledRun] = []

    def add(label: str, run) -> None:
        out.append(LabelledRun(label, run.name, run.loss.steps, run.loss.values, run.lr.values))

    for i, seed in enumerate(spec["seeds"]):
        batch = spec["batch_sizes"][i % len(spec["batch_sizes"])]
        every = spec["log_every"][i % len(spec["log_every"])]
        base = TrainConfig(
            steps=STEPS, seed=seed, task_seed=seed, batch_size=batch, log_every=every
        )
        for task, best in BEST_LR.items():
            cfg = base.with_(task=task)
            for lr in DIVERGE_LRS[task]:
                add("divergence", train(cfg.with_(lr=lr)))
            for lr in SLOW_LRS[task]:
                add("slow_convergence", train(cfg.with_(lr=lr)))
            for lr in PLATEAU_LRS[task]:
                const = train(cfg.with_(lr=lr))
                if _twin_beats(const, train(cfg.with_(lr=lr, schedule="step"))):
                    add("plateau", const)
            for lr in (best, best / 3):
                for schedule in HEALTHY_SCHEDULES:
                    run = train(cfg.with_(lr=lr, schedule=schedule))
                    if schedule == "constant":
                        twin = train(cfg.with_(lr=lr, schedule="step"))
                        add("plateau" if _twin_beats(run, twin) else "healthy", run)
                    else:
                        add("healthy", run)
        quad = base.with_(task="quadratic")
        for lr, momentum in OSCILLATION_CONFIGS:
            add("oscillation", train(quad.with_(lr=lr, momentum=momentum)))
        for lr, momentum in FINITE_DIVERGENCE_CONFIGS:
            add("divergence", train(quad.with_(lr=lr, momentum=momentum)))
    return out


def load(set_name: str, *, rebuild: bool = False) -> list[LabelledRun]:
    """The runs of one set, from the cache when present."""
    path = CACHE_DIR / f"{set_name}.pkl"
    if path.exists() and not rebuild:
        with path.open("rb") as fh:
            return pickle.load(fh)
    runs = build(set_name)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(runs, fh)
    return runs
