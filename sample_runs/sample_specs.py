"""What the bundled sample runs are: each run's training config, what it shows, its diagnosis.

Read by ``make_samples.py``, which trains and records them. Change a run here, re-run the
script, and commit the files and ``manifest.json`` it writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lrwatch.tasks import TrainConfig

EXPERIMENT = "lrwatch-samples"
FORMAT_VERSION = 1
SWEEP = "autoencoder-adam-sweep"
# Sweep rates: half-decade steps from far too low to far too high for Adam on the autoencoder.
SWEEP_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
# Runs whose loss stays finite and bounded: calling any of them divergent is a regression.
NOT_DIVERGENT = ("divergence",)
# A sweep rate is "good" when its final loss is within this factor of the best one.
GOOD_MARGIN = 1.25


@dataclass(frozen=True)
class Sample:
    """One sample run: how to train it and what it should teach."""

    name: str
    config: TrainConfig
    shows: str
    # Finding kinds the analysis must report (None: not asserted, e.g. most sweep members).
    expected_findings: tuple[str, ...] | None
    # Finding kinds it must not report.
    must_not_find: tuple[str, ...] = ()
    # The schedule kind the analysis should recognise, where unambiguous.
    expected_schedule: str | None = None
    expected_warmup: bool | None = None
    sweep: str | None = None


def _sweep_samples() -> list[Sample]:
    samples = []
    for lr in SWEEP_LRS:
        config = TrainConfig(task="autoencoder", optimizer="adam", lr=lr, steps=400, seed=0)
        lowest = lr == SWEEP_LRS[0]
        samples.append(
            Sample(
                name=f"sweep-adam-lr{lr:g}",
                config=config,
                shows=(
                    f"One of {len(SWEEP_LRS)} runs of the same autoencoder with Adam at LR "
                    f"{lr:g}; together they trace the LR-sensitivity curve (final loss against "
                    "LR) with its best rate in the middle."
                    + (
                        " This lowest rate is ~30x below the best: it converges slowly."
                        if lowest
                        else ""
                    )
                ),
                expected_findings=("slow_convergence",) if lowest else None,
                must_not_find=NOT_DIVERGENT,
                expected_schedule="constant",
                sweep=SWEEP,
            )
        )
    return samples


SAMPLES: list[Sample] = [
    Sample(
        "healthy",
        TrainConfig(task="autoencoder", optimizer="adam", lr=3e-3, steps=600, seed=1),
        "A healthy run: Adam at a good rate; the loss falls fast, then keeps creeping down and "
        "levels off near the noise floor. Nothing to fix.",
        expected_findings=(),
        must_not_find=NOT_DIVERGENT,
        expected_schedule="constant",
    ),
    Sample(
        "diverging-lr-too-high",
        TrainConfig(task="autoencoder", optimizer="sgd", lr=2.0, steps=400, seed=0),
        "Divergence: plain SGD at LR 2.0, about 20x the autoencoder's best SGD rate. The loss "
        "wobbles upward for ~35 steps, then climbs exponentially for ~30 more until it overflows "
        "to inf/NaN; training stops 10 steps later.",
        expected_findings=("divergence",),
        expected_schedule="constant",
    ),
    Sample(
        "diverging-after-warmup",
        TrainConfig(
            task="mlp_classification",
            optimizer="sgd",
            lr=1.5,
            steps=400,
            schedule="warmup_constant",
            warmup_steps=100,
            seed=0,
        ),
        "Divergence right after the warmup peak: linear warmup to a peak LR of 1.5 over 100 "
        "steps (this classifier trains fine at a constant 1.0). Training goes well while the LR "
        "is low, then the loss explodes ~30 steps after the peak: lower the peak.",
        expected_findings=("divergence",),
        expected_schedule="constant",
        expected_warmup=True,
    ),
    Sample(
        "oscillating-momentum",
        TrainConfig(task="quadratic", optimizer="sgd", lr=0.03, momentum=0.99, steps=600, seed=0),
        "Oscillation: heavy-ball SGD with momentum 0.99 (LR 0.03) on an ill-conditioned "
        "least-squares problem. The momentum rings: the loss swings in waves of ~16 steps "
        "across an order of magnitude for most of the run (the detrended log-loss correlates "
        "at -0.5 with itself 8 steps later) and ends ~100x above what this problem reaches "
        "with less momentum.",
        expected_findings=("oscillation",),
        expected_schedule="constant",
    ),
    Sample(
        "plateau-constant-lr",
        TrainConfig(task="autoencoder", optimizer="sgd", lr=0.3, steps=600, seed=0),
        "Plateau: SGD at a constant LR 0.3 drops fast, then sits at ~0.55 from step ~30 on: "
        "gradient noise at this rate keeps it from going lower. Compare its twin "
        "plateau-step-decay.",
        expected_findings=("plateau",),
        must_not_find=NOT_DIVERGENT,
        expected_schedule="constant",
    ),
    Sample(
        "plateau-step-decay",
        TrainConfig(task="autoencoder", optimizer="sgd", lr=0.3, steps=600, schedule="step"),
        "The plateau's twin: identical until step 200, where a step decay (x0.1 at steps 200 "
        "and 400) lets the loss drop to ~0.35, well below the constant-LR run's ~0.55.",
        expected_findings=None,
        must_not_find=NOT_DIVERGENT,
        expected_schedule="step",
    ),
    Sample(
        "slow-lr-too-low",
        TrainConfig(task="mlp_regression", optimizer="sgd", lr=1e-3, steps=600, seed=0),
        "Slow convergence: SGD at LR 0.001, ~30x below this regression task's best rate. The "
        "loss is still falling steadily when the run ends, far above where a larger rate gets.",
        expected_findings=("slow_convergence",),
        must_not_find=NOT_DIVERGENT,
        expected_schedule="constant",
    ),
    Sample(
        "cosine-with-warmup",
        TrainConfig(
            task="autoencoder",
            optimizer="adam",
            lr=1e-2,
            steps=600,
            schedule="warmup_cosine",
            warmup_steps=60,
            seed=0,
        ),
        "A good schedule: 60 steps of linear warmup to 0.01, then cosine decay to zero. It ends "
        "~2.5x lower than Adam at a constant 0.01 (see the sweep).",
        expected_findings=(),
        must_not_find=NOT_DIVERGENT,
        expected_schedule="cosine",
        expected_warmup=True,
    ),
    *_sweep_samples(),
]

# The LR range test runs on the sweep's task, so its suggestion can be read against the sweep.
RANGE_TEST_NAME = "lr-range-test"
RANGE_TEST_CONFIG = TrainConfig(task="autoencoder", optimizer="adam", lr=1e-3, seed=0)
RANGE_TEST_ARGS = {"start_lr": 1e-6, "end_lr": 10.0, "num_steps": 150}
