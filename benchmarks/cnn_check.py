"""Out-of-distribution check: lrwatch on a small convolutional network with batch norm, trained
the classic way - SGD, momentum 0.9, weight decay 5e-4, a constant rate, step decay, cosine or
warmup-cosine.

Every detector threshold was set on small MLP, quadratic and autoencoder tasks
(``labelled_runs.py``); none has batch norm, whose scale-invariant weights change how a rate
acts. This trains the ``cnn_images`` task of :mod:`lrwatch.tasks` (1,000 steps of 64 images,
~8 epochs) over an LR sweep and prints what ``lrwatch analyze`` says about each run, judged
against its schedule's best rate (``ood_sweep.py``). The constant-rate runs are also labelled the
way the quality sets label them (``labelled_runs.py``): a *plateau* when their step-decayed twin
(same rate and seed) ends clearly lower and the run is no longer clearly improving. Nothing here
was tuned on; the figures are in the README.

Usage::

    python benchmarks/cnn_check.py             # 64 runs, ~8 min on 2 cores (cached)
    python benchmarks/cnn_check.py --rebuild   # retrain them
    python benchmarks/cnn_check.py --seeds 2 3 # a held-out copy: other seeds
"""

from __future__ import annotations

from collections import Counter

from labelled_runs import TWIN_MARGIN, climbed_away, final_level, still_improving
from ood_sweep import ARTIFACTS, Sweep, from_command_line, load, print_report

SWEEP = Sweep(
    task="cnn_images",
    optimizer="sgd",
    lrs=(1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0),
    schedules=("constant", "step", "cosine", "warmup_cosine"),
    seeds=(0, 1),
    steps=1000,
    batch_size=64,
    momentum=0.9,
    weight_decay=5e-4,
    cache=ARTIFACTS / "cnn" / "runs.pkl",
)


def plateau_label(run, twin) -> str:
    """A constant-rate run's label from its step-decayed twin, as the quality sets give it."""
    if climbed_away(run.loss.values):
        return "divergence"
    twin_beats = final_level(twin.loss.values) < TWIN_MARGIN * final_level(run.loss.values)
    return "plateau" if twin_beats and not still_improving(run.loss.values) else "no plateau"


def print_plateaus(runs: list, reports: dict) -> None:
    """Each constant-rate run beside its step twin: its label and what lrwatch said."""
    by_point = {(r.params["schedule"], r.params["lr"], r.params["seed"]): r for r in runs}
    print("\n| LR | seed | final loss | step twin | label | plateau finding | recommendation |")
    print("|---|---|---|---|---|---|---|")
    tally = Counter()
    for run in runs:
        if run.params["schedule"] != "constant":
            continue
        twin = by_point["step", run.params["lr"], run.params["seed"]]
        label = plateau_label(run, twin)
        report = reports[run.id]
        plateau = max(
            (f.severity for f in report.findings if f.kind == "plateau"),
            key=["info", "warning", "critical"].index,
            default="-",
        )
        tally[label, plateau] += 1
        print(
            f"| {run.params['lr']} | {run.params['seed']} | {final_level(run.loss.values):.3f} "
            f"| {final_level(twin.loss.values):.3f} | {label} | {plateau} "
            f"| {report.recommendation.action} |"
        )
    print("\n(label, plateau finding): runs", dict(tally))


def main() -> int:
    sweep, rebuild = from_command_line(SWEEP, __doc__)
    runs = load(sweep, rebuild)
    print_plateaus(runs, print_report(runs, sweep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
