"""Out-of-distribution check: lrwatch on a small char-level transformer under AdamW.

Every detector threshold was set on small MLP, quadratic and autoencoder tasks
(``labelled_runs.py``). This trains the ``char_lm`` task of :mod:`lrwatch.tasks` (a 2-layer
causal transformer predicting a synthetic text, 1,000 steps) over an LR sweep under four
schedules - constant, warmup_constant, cosine, warmup_cosine (warmup: the first 10%) - and
prints what ``lrwatch analyze`` says about each run beside its final loss, judged against its
schedule's best rate (``ood_sweep.py``). Nothing here was tuned on; the figures are in the
README.

Usage::

    python benchmarks/transformer_check.py             # 56 runs, ~9 min on 2 cores (cached)
    python benchmarks/transformer_check.py --rebuild   # retrain them
    python benchmarks/transformer_check.py --seeds 2 3 # a held-out copy: other seeds
"""

from __future__ import annotations

from ood_sweep import ARTIFACTS, Sweep, from_command_line, load, print_report

SWEEP = Sweep(
    task="char_lm",
    optimizer="adamw",
    lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    schedules=("constant", "warmup_constant", "cosine", "warmup_cosine"),
    seeds=(0, 1),
    steps=1000,
    batch_size=16,
    weight_decay=0.1,
    cache=ARTIFACTS / "transformer" / "runs.pkl",
)


def main() -> int:
    sweep, rebuild = from_command_line(SWEEP, __doc__)
    print_report(load(sweep, rebuild), sweep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
