"""Labelled real training runs for the detector-quality benchmark, with their labels by construction.

Every run is real PyTorch training from :mod:`lrwatch.tasks`. Its labels come from how it was
made (the sweep) and from plain measurements of the run's own loss, never from a detector. The
runs are stored with their construction (``role``) and, for constant-rate runs, the final level of
their step-decayed twin, so the label rules (:func:`labels_for`) can change without retraining:

- ``divergence``: SGD at a rate 10-100x above the task's best rate, plus heavy-ball momentum 0.98
  at a large rate on ``quadratic`` - *when the loss did what the issue calls divergence*
  (:func:`climbed_away`: it turned NaN/inf, or ended at least 2x its best level having given back
  at least half of its progress). Such runs that instead fell to a high noisy floor, or climbed
  and came back, are left out: by the issue's definition they did not diverge.
  ``mlp_classification`` is left out here: at such rates its ReLU network collapses to the
  chance-level loss (log 5) after one spike instead of diverging, a different failure.
- ``slow_convergence``: SGD at a rate 100-3000x below the task's best rate - including runs whose
  loss never measurably moves (the most extreme "steps too small").
- ``oscillation``: heavy-ball momentum 0.98-0.99 on the ill-conditioned ``quadratic``; one that
  also :func:`climbed_away` is labelled ``divergence`` too.
- ``plateau``: a constant rate whose step-decayed twin (same seeds, StepLR) ends clearly lower
  (< 0.8x) - the decay proves the floor was held up by the rate - *and* whose own loss is not
  still clearly improving (:func:`still_improving`). Candidates that fail either test are left
  out (above-best rates) or labelled ``healthy`` (the best rate or a third of it); one that
  :func:`climbed_away` is ``divergence``. Reporting ``oscillation`` on a plateau run counts
  neither way (:func:`also_true`).
- ``healthy``: the task's best rate or a third of it, constant / cosine / warmup-cosine.

Sets, all disjoint: ``tuning`` (seeds 0-2, batch 32, every step logged), ``heldout`` (seeds
100-102), ``fresh`` (seeds 200-202, task_seeds 500-502) and ``tuning_wide`` (seeds 10-15,
task_seeds 40-45, six batch sizes, logged every 1st/2nd/3rd step) are the tuning pool: thresholds
were set on them (``heldout`` and ``fresh`` were held-out sets of earlier detector versions, each
evaluated once as such before joining the pool). ``final`` (seeds 300-305, task_seeds 800-805,
batch sizes of which only 40 is in another set, logged every 1st/2nd/3rd step) was evaluated once, after the last
detector change; ``final2`` (seeds 400-405, task_seeds 900-905, new batch sizes again),
``final3`` (seeds 600-605, task_seeds 1000-1005) and ``final4`` (seeds 700-705, task_seeds
1100-1105), each with new batch sizes, were each built after that and evaluated once with the
same detectors (``final4`` also with a plateau change that made no difference there, and was
dropped). ``final5`` (seeds 800-805, task_seeds 1200-1205) was built after two changes for short
logs were set on the pool's per-epoch views (:class:`EpochView`) and evaluated once, step by step
and per epoch. ``adam`` (seeds 900-905, task_seeds 1300-1305) is the same construction under
Adam, built and evaluated once with no detector change. ``schedules`` (seeds and task_seeds
1500-1505) holds only slow runs under cosine and warmup-cosine and healthy runs, to tune on;
``final7`` (1600-1605), the same construction, was held out for it and evaluated once.
``adam_schedules`` (1700-1705) is that construction under Adam, built and evaluated once with no
detector change. ``final8`` (1800-1805, SGD) and ``adam_final`` (1900-1905, Adam, slow runs under
all three schedules) were held out for the divergence change set on all the sets above (a loss
that never learned anything is no climb) and evaluated once. ``final9`` (2010-2015, SGD) and
``adam_final2`` (2110-2115, Adam) were held out the same way for the plateau change set on all
the sets above (a positive loss whose flat-looking stretch still halved is still improving).
Unit-test fixtures use seeds 7-9 and are in none of them.

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
# The same roles under Adam (set ``adam``): its best rates from a sweep over 1e-5..1 at 1000
# steps (seeds 950-951 on problem instances 1350-1351, in no set), the other rates at the same
# multiples of it as for SGD. Adam has no heavy-ball construction, so no oscillation runs.
ADAM_BEST_LR = {
    "mlp_regression": 0.03,
    "mlp_classification": 0.003,
    "quadratic": 0.01,
    "autoencoder": 0.01,
}
ADAM_DIVERGE_LRS = {
    "mlp_regression": (0.3, 1.0),
    "mlp_classification": (0.03, 0.3),
    "quadratic": (0.3, 1.0),
    "autoencoder": (0.3, 1.0),
}
ADAM_SLOW_LRS = {
    "mlp_regression": (1e-5, 1e-4),
    "mlp_classification": (3e-6, 3e-5),
    "quadratic": (1e-5, 1e-4),
    "autoencoder": (1e-5, 1e-4),
}
ADAM_PLATEAU_LRS = {
    "mlp_regression": (0.1, 0.15),
    "mlp_classification": (0.01, 0.015),
    "quadratic": (0.03, 0.05),
    "autoencoder": (0.03, 0.05),
}
OSCILLATION_CONFIGS = ((0.01, 0.99), (0.03, 0.99), (0.1, 0.98))  # (lr, momentum) on quadratic
FINITE_DIVERGENCE_CONFIGS = ((0.3, 0.98),)  # (lr, momentum) on quadratic
HEALTHY_SCHEDULES = ("constant", "cosine", "warmup_cosine")
# The twin must end below this share of the constant run's final level to label a plateau.
TWIN_MARGIN = 0.8
# "Still clearly improving" (no plateau, by the definition): the median of the run's last
# fifth sits below the median of the fifth before it by more than IMPROVING_SHARE of the run's
# total progress *and* by more than IMPROVING_SE standard errors of such a median (a drop the
# minibatch noise cannot fake). 5% of the progress per fifth of the run is a trend that is still
# paying off - not "no real improvement".
IMPROVING_SHARE = 0.05
IMPROVING_SE = 3.0
# A run made to diverge counts as divergence when its loss ended at least this many times its best
# level (every task's loss is positive): "doubled and stayed up" is far outside what minibatch
# noise does to a median of 100 steps, and well short of a blow-up.
CLIMB_FACTOR = 2.0

SETS = {
    "tuning": {"seeds": (0, 1, 2), "batch_sizes": (32,), "log_every": (1,)},
    "heldout": {"seeds": (100, 101, 102), "batch_sizes": (16, 64), "log_every": (1, 2)},
    "fresh": {
        "seeds": (200, 201, 202),
        "task_seeds": (500, 501, 502),
        "batch_sizes": (24, 48, 96),
        "log_every": (1, 3, 2),
    },
    # More tuning runs, with the batch sizes and logging strides the held-out sets use (the first
    # tuning set logged every step at batch 32 only, and coarse logging was where recall fell).
    "tuning_wide": {
        "seeds": (10, 11, 12, 13, 14, 15),
        "task_seeds": (40, 41, 42, 43, 44, 45),
        "batch_sizes": (16, 24, 40, 64, 96, 32),
        "log_every": (2, 3, 1, 3, 2, 1),
    },
    # The final held-out set: new seeds, new problem instances, batch sizes no earlier set used
    # but 40 (also in tuning_wide).
    # Evaluated once, after the last detector change.
    "final": {
        "seeds": (300, 301, 302, 303, 304, 305),
        "task_seeds": (800, 801, 802, 803, 804, 805),
        "batch_sizes": (20, 56, 88, 40, 72, 28),
        "log_every": (2, 1, 3, 3, 1, 2),
    },
    # A second final held-out set, for the detector changes made after ``final`` was seen (which
    # then joined the tuning pool): new seeds, problem instances and batch sizes again.
    "final2": {
        "seeds": (400, 401, 402, 403, 404, 405),
        "task_seeds": (900, 901, 902, 903, 904, 905),
        "batch_sizes": (36, 52, 80, 44, 68, 30),
        "log_every": (3, 2, 1, 2, 3, 1),
    },
    # A third final held-out set, for the detector changes made after ``final2`` was seen (which
    # then joined the tuning pool, with ``final``): new seeds, problem instances and batch sizes.
    "final3": {
        "seeds": (600, 601, 602, 603, 604, 605),
        "task_seeds": (1000, 1001, 1002, 1003, 1004, 1005),
        "batch_sizes": (60, 26, 84, 42, 100, 76),
        "log_every": (1, 3, 2, 1, 2, 3),
    },
    # A fourth, for detector changes made after ``final3`` was seen: new seeds, problem instances
    # and batch sizes again.
    "final4": {
        "seeds": (700, 701, 702, 703, 704, 705),
        "task_seeds": (1100, 1101, 1102, 1103, 1104, 1105),
        "batch_sizes": (34, 50, 66, 90, 22, 58),
        "log_every": (3, 1, 2, 2, 3, 1),
    },
    # A fifth, built for the per-epoch view (``epoch_view``) after the slow-convergence start
    # level was changed for short logs on the pool's per-epoch views: new seeds, problem
    # instances and batch sizes again. Evaluated once, step by step and per epoch.
    "final5": {
        "seeds": (800, 801, 802, 803, 804, 805),
        "task_seeds": (1200, 1201, 1202, 1203, 1204, 1205),
        "batch_sizes": (38, 54, 70, 46, 62, 78),
        "log_every": (1, 2, 3, 1, 3, 2),
    },
    # A sixth, built for the divergence a loss came back from slowly (a blow-up that cost a
    # fifth of the run or more; 2026-11-24), then evaluated once with and without it: new
    # seeds, problem instances and batch sizes again.
    "final6": {
        "seeds": (1000, 1001, 1002, 1003, 1004, 1005),
        "task_seeds": (1400, 1401, 1402, 1403, 1404, 1405),
        "batch_sizes": (98, 45, 57, 35, 63, 81),
        "log_every": (2, 3, 1, 1, 2, 3),
    },
    # Slow runs under the decaying schedules (``slow_schedules``; every other set's slow runs hold
    # a constant rate), beside healthy runs of every schedule: the tuning set for judging slow
    # convergence against the LR a schedule lowers (2026-11-24). New seeds, problem instances
    # and batch sizes.
    "schedules": {
        "seeds": (1500, 1501, 1502, 1503, 1504, 1505),
        "task_seeds": (1500, 1501, 1502, 1503, 1504, 1505),
        "batch_sizes": (27, 39, 51, 65, 77, 87),
        "log_every": (1, 2, 3, 3, 1, 2),
        "roles": ("slow", "best"),
        "slow_schedules": ("cosine", "warmup_cosine"),
    },
    # The same construction, held out: built beside ``schedules`` and not looked at until the
    # slow-convergence change tuned on it was set, then evaluated once.
    "final7": {
        "seeds": (1600, 1601, 1602, 1603, 1604, 1605),
        "task_seeds": (1600, 1601, 1602, 1603, 1604, 1605),
        "batch_sizes": (29, 43, 55, 67, 83, 95),
        "log_every": (3, 1, 2, 1, 2, 3),
        "roles": ("slow", "best"),
        "slow_schedules": ("cosine", "warmup_cosine"),
    },
    # ``final7``'s construction under Adam (its ADAM_* rates): slow runs under cosine and
    # warmup-cosine beside healthy runs of every schedule, built and evaluated once with no
    # detector change (2026-11-24; ``schedules`` and ``final7`` hold SGD runs only). New seeds,
    # problem instances and batch sizes.
    "adam_schedules": {
        "optimizer": "adam",
        "seeds": (1700, 1701, 1702, 1703, 1704, 1705),
        "task_seeds": (1700, 1701, 1702, 1703, 1704, 1705),
        "batch_sizes": (31, 47, 59, 71, 85, 99),
        "log_every": (2, 3, 1, 2, 1, 3),
        "roles": ("slow", "best"),
        "slow_schedules": ("cosine", "warmup_cosine"),
    },
    # Two held-out sets for the divergence change set on every other set (2026-11-24): a loss
    # that never learned anything, whose end sits within the noise of its start, has not "given
    # back everything". ``final8`` is the SGD construction of ``final`` to ``final6``;
    # ``adam_final`` Adam's, its slow runs under all three schedules. New seeds, problem
    # instances and batch sizes; built beside the change and evaluated once, with and without it.
    "final8": {
        "seeds": (1800, 1801, 1802, 1803, 1804, 1805),
        "task_seeds": (1800, 1801, 1802, 1803, 1804, 1805),
        "batch_sizes": (33, 49, 61, 73, 89, 97),
        "log_every": (1, 3, 2, 2, 1, 3),
    },
    "adam_final": {
        "optimizer": "adam",
        "seeds": (1900, 1901, 1902, 1903, 1904, 1905),
        "task_seeds": (1900, 1901, 1902, 1903, 1904, 1905),
        "batch_sizes": (37, 41, 53, 69, 79, 91),
        "log_every": (3, 2, 1, 1, 3, 2),
        "slow_schedules": ("constant", "cosine", "warmup_cosine"),
    },
    # Two held-out sets for the plateau change set on every other set (2026-11-24): a positive
    # loss whose longest noise-flat stretch still halved is still improving. ``final9`` is
    # ``final8``'s construction, ``adam_final2`` ``adam_final``'s. New seeds, problem instances
    # and batch sizes; built beside the change and evaluated once, with and without it.
    "final9": {
        "seeds": (2010, 2011, 2012, 2013, 2014, 2015),
        "task_seeds": (2010, 2011, 2012, 2013, 2014, 2015),
        "batch_sizes": (17, 21, 25, 75, 101, 105),
        "log_every": (2, 1, 3, 1, 3, 2),
    },
    "adam_final2": {
        "optimizer": "adam",
        "seeds": (2110, 2111, 2112, 2113, 2114, 2115),
        "task_seeds": (2110, 2111, 2112, 2113, 2114, 2115),
        "batch_sizes": (19, 23, 93, 102, 104, 107),
        "log_every": (1, 3, 2, 3, 2, 1),
        "slow_schedules": ("constant", "cosine", "warmup_cosine"),
    },
    # Slow and healthy runs under step decay (StepLR, x0.1 at each third of the run), which no
    # set above holds: a rate too small for its first stretch stalls for good at the first
    # decay. ``step`` is the tuning set of the slow-before-the-decay test (2026-11-25);
    # ``step_final`` (SGD) and ``adam_step`` (Adam) were built beside it and evaluated once,
    # after it was set. New seeds, problem instances and batch sizes.
    "step": {
        "seeds": (2200, 2201, 2202, 2203, 2204, 2205),
        "task_seeds": (2200, 2201, 2202, 2203, 2204, 2205),
        "batch_sizes": (106, 108, 109, 110, 111, 112),
        "log_every": (1, 2, 3, 1, 2, 3),
        "roles": ("slow", "best"),
        "slow_schedules": ("step",),
        "healthy_schedules": ("step",),
    },
    "step_final": {
        "seeds": (2300, 2301, 2302, 2303, 2304, 2305),
        "task_seeds": (2300, 2301, 2302, 2303, 2304, 2305),
        "batch_sizes": (113, 114, 115, 116, 117, 118),
        "log_every": (2, 1, 3, 3, 1, 2),
        "roles": ("slow", "best"),
        "slow_schedules": ("step",),
        "healthy_schedules": ("step",),
    },
    "adam_step": {
        "optimizer": "adam",
        "seeds": (2400, 2401, 2402, 2403, 2404, 2405),
        "task_seeds": (2400, 2401, 2402, 2403, 2404, 2405),
        "batch_sizes": (119, 120, 121, 122, 123, 124),
        "log_every": (3, 2, 1, 2, 3, 1),
        "roles": ("slow", "best"),
        "slow_schedules": ("step",),
        "healthy_schedules": ("step",),
    },
    # Two held-out sets for the annealing-noise test of slow convergence (2026-11-25; set on
    # every set above and the transformer and CNN sweeps): slow runs under cosine and
    # warmup-cosine beside healthy runs of every schedule, as ``final7`` (SGD) and
    # ``adam_schedules`` (Adam) are built. New seeds, problem instances and batch sizes; built
    # beside the change and evaluated once, with and without it; not adopted (README, "tried and
    # not adopted").
    "anneal_final": {
        "seeds": (2500, 2501, 2502, 2503, 2504, 2505),
        "task_seeds": (2500, 2501, 2502, 2503, 2504, 2505),
        "batch_sizes": (125, 126, 127, 128, 129, 130),
        "log_every": (1, 3, 2, 2, 3, 1),
        "roles": ("slow", "best"),
        "slow_schedules": ("cosine", "warmup_cosine"),
    },
    "adam_anneal_final": {
        "optimizer": "adam",
        "seeds": (2600, 2601, 2602, 2603, 2604, 2605),
        "task_seeds": (2600, 2601, 2602, 2603, 2604, 2605),
        "batch_sizes": (131, 132, 133, 134, 135, 136),
        "log_every": (2, 1, 3, 3, 1, 2),
        "roles": ("slow", "best"),
        "slow_schedules": ("cosine", "warmup_cosine"),
    },
    # Adam instead of SGD (the ADAM_* rates), built and evaluated once with no detector change:
    # every threshold was set on SGD runs. New seeds, problem instances and batch sizes.
    "adam": {
        "optimizer": "adam",
        "seeds": (900, 901, 902, 903, 904, 905),
        "task_seeds": (1300, 1301, 1302, 1303, 1304, 1305),
        "batch_sizes": (18, 82, 94, 74, 86, 92),
        "log_every": (2, 1, 3, 3, 1, 2),
    },
}
STEPS = 1000


@dataclass
class LabelledRun:
    role: str  # how it was made: diverge | slow | plateau | best | oscillation | momentum_diverge
    name: str
    steps: object  # numpy arrays (kept generic so this module imports without numpy typing)
    loss: object
    lr: object
    schedule: str = "constant"
    twin_level: float | None = None  # final level of the step-decayed twin (constant runs)

    @property
    def labels(self) -> frozenset[str]:
        return labels_for(self)

    @property
    def acceptable(self) -> frozenset[str]:
        """Kinds that are neither required nor a false alarm for this run (see :func:`also_true`)."""
        return also_true(self)

    @property
    def label(self) -> str:
        """One name for printing: the labels joined with '+', or 'excluded'."""
        return "+".join(sorted(self.labels)) or "excluded"

    @property
    def log_every(self) -> int:
        """Steps between logged points (1, 2 or 3)."""
        return int(self.steps[1] - self.steps[0]) if len(self.steps) > 1 else 1


class LoggedView:
    """A run as a coarser or smoothed log shows it (:class:`EpochView`, :class:`SmoothedView`).

    Its labels are the run's, from its construction and its step-by-step loss, but for
    ``oscillation``: averaging or smoothing takes most of a 7-30-step wave out, so it is neither
    required nor (on a run made to oscillate) a false alarm.
    """

    run: LabelledRun
    steps: object
    loss: object
    lr: object
    name: str

    @property
    def labels(self) -> frozenset[str]:
        return self.run.labels - {"oscillation"}

    @property
    def acceptable(self) -> frozenset[str]:
        return self.run.acceptable | ({"oscillation"} if self.run.role == "oscillation" else set())

    @property
    def label(self) -> str:
        return "+".join(sorted(self.labels)) or "excluded"

    @property
    def log_every(self) -> int:
        """The run's own logging stride (the view is made of every k-th step)."""
        return self.run.log_every


class EpochView(LoggedView):
    """The mean training loss of each of ``epochs`` equal stretches of the run (what Keras,
    Lightning's ``on_epoch=True`` and most loops log), with the rate in force at the end of
    each and the global step it ends at."""

    def __init__(self, run: LabelledRun, epochs: int) -> None:
        import numpy as np

        loss, lr = np.asarray(run.loss, dtype=float), np.asarray(run.lr, dtype=float)
        parts = np.array_split(np.arange(loss.size), min(epochs, loss.size))
        self.run, self.name = run, f"{run.name}@{epochs}ep"
        self.steps = np.array([run.steps[p[-1]] for p in parts], dtype=float)
        self.loss = np.array([loss[p].mean() for p in parts])  # NaN stays NaN: evidence
        self.lr = np.array([lr[p[-1]] for p in parts])


class SmoothedView(LoggedView):
    """The loss as a running average logs it: an exponential moving average with factor
    ``beta``, debiased as fastai's ``smooth_loss`` is (beta 0.98 there), at every logged step.
    The first NaN/inf and what follows stay as logged (an average of them is NaN too)."""

    def __init__(self, run: LabelledRun, beta: float) -> None:
        import numpy as np

        loss = np.asarray(run.loss, dtype=float)
        finite = int(np.argmin(np.isfinite(loss))) if not np.isfinite(loss).all() else loss.size
        smoothed, average = loss.copy(), 0.0
        for i in range(finite):
            average = beta * average + (1 - beta) * loss[i]
            smoothed[i] = average / (1 - beta ** (i + 1))
        self.run, self.name = run, f"{run.name}@ema{beta:g}"
        self.steps, self.loss, self.lr = run.steps, smoothed, run.lr


def epoch_view(runs: list[LabelledRun], epochs: int) -> list[LoggedView]:
    """The runs as per-epoch logs of ``epochs`` points (those left with a label)."""
    return [view for view in (EpochView(run, epochs) for run in runs) if view.labels]


def smoothed_view(runs: list[LabelledRun], beta: float) -> list[LoggedView]:
    """The runs as logs of an exponential moving average of the loss (those with a label)."""
    return [view for view in (SmoothedView(run, beta) for run in runs) if view.labels]


def final_level(values) -> float:
    """Median of the last 20% of a loss (inf when it turned non-finite)."""
    import numpy as np

    y = np.asarray(values, dtype=float)
    return float(np.median(y[int(0.8 * y.size) :])) if np.isfinite(y).all() else float("inf")


def still_improving(values) -> bool:
    """The loss's last fifth is still clearly below the fifth before it (see IMPROVING_SHARE)."""
    import numpy as np

    y = np.asarray(values, dtype=float)
    if not np.isfinite(y).all():
        return False
    fifth = y.size // 5
    start = float(np.median(y[: max(3, y.size // 50)]))
    prev, last = float(np.median(y[-2 * fifth : -fifth])), float(np.median(y[-fifth:]))
    progress, drop = start - last, prev - last
    d = np.diff(y)
    noise = 1.4826 / np.sqrt(2.0) * float(np.median(np.abs(d - np.median(d))))
    standard_error = 1.2533 * noise / np.sqrt(fifth)  # of a median of `fifth` noisy points
    return (
        progress > 0 and drop > IMPROVING_SHARE * progress and drop > IMPROVING_SE * standard_error
    )


def climbed_away(values) -> bool:
    """The issue's divergence, measured plainly: the loss turned non-finite, or it rose away from
    its best and had not come back when the run ended - the median of its last 10% is at least
    CLIMB_FACTOR times its best level (the lowest median of 20 equal blocks) *and* gave back at
    least half of the progress from the start (median of the first 2%) to that best."""
    import numpy as np

    y = np.asarray(values, dtype=float)
    if not np.isfinite(y).all():
        return True
    size = y.size // 20
    best = float(np.min(np.median(y[: 20 * size].reshape(20, size), axis=1)))
    start = float(np.median(y[: max(3, y.size // 50)]))
    end = float(np.median(y[-max(3, y.size // 10) :]))
    return end >= CLIMB_FACTOR * best and end - best >= 0.5 * max(start - best, 0.0)


def _twin_beats(run: LabelledRun) -> bool:
    return run.twin_level is not None and run.twin_level < TWIN_MARGIN * final_level(run.loss)


def labels_for(run: LabelledRun) -> frozenset[str]:
    """The run's labels from its construction and plain measurements of its own loss."""
    if run.role in ("diverge", "momentum_diverge"):
        return frozenset({"divergence"}) if climbed_away(run.loss) else frozenset()
    if run.role == "slow":
        return frozenset({"slow_convergence"})
    if run.role == "oscillation":
        extra = {"divergence"} if climbed_away(run.loss) else set()
        return frozenset({"oscillation", *extra})
    if climbed_away(run.loss):  # a constant rate above the best that blew up or climbed
        return frozenset({"divergence"})
    is_plateau = _twin_beats(run) and not still_improving(run.loss)
    if run.role == "plateau":
        return frozenset({"plateau"}) if is_plateau else frozenset()
    return frozenset({"plateau" if is_plateau else "healthy"})  # role "best"


def also_true(run: LabelledRun) -> frozenset[str]:
    """Kinds a run's construction neither asserts nor rules out: reporting them is no false alarm.

    A ``plateau`` run sits at a floor held up by a rate that is too high. Steps that large can
    also make the loss swing in waves (the issue's oscillation: "bouncing ... because steps are
    too large"): the autoencoder and the quadratic at such rates often show regular spikes every
    ~30 steps. Nothing in how the run was made says whether a given one does, so an oscillation
    report on it is not counted either way; the strict score, which counts it as a false alarm,
    is printed beside the lenient one.
    """
    return frozenset({"oscillation"}) if "plateau" in run.labels else frozenset()


def build(set_name: str) -> list[LabelledRun]:
    """Train every run of one set (a few minutes) and return them with their construction."""
    import torch

    from lrwatch.tasks import TrainConfig, train

    torch.set_num_threads(1)
    spec = SETS[set_name]
    optimizer = spec.get("optimizer", "sgd")
    best_lr, diverge_lrs, slow_lrs, plateau_lrs = (
        (ADAM_BEST_LR, ADAM_DIVERGE_LRS, ADAM_SLOW_LRS, ADAM_PLATEAU_LRS)
        if optimizer == "adam"
        else (BEST_LR, DIVERGE_LRS, SLOW_LRS, PLATEAU_LRS)
    )
    roles = spec.get("roles", ("diverge", "slow", "plateau", "best", "oscillation"))
    slow_schedules = spec.get("slow_schedules", ("constant",))
    healthy_schedules = spec.get("healthy_schedules", HEALTHY_SCHEDULES)
    out: list[LabelledRun] = []

    def add(role: str, cfg, twin: bool = False) -> None:
        run = train(cfg)
        twin_level = None
        if twin:
            twin_level = final_level(train(cfg.with_(schedule="step")).loss.values)
        out.append(
            LabelledRun(
                role,
                run.name,
                run.loss.steps,
                run.loss.values,
                run.lr.values,
                cfg.schedule,
                twin_level,
            )
        )

    for i, seed in enumerate(spec["seeds"]):
        batch = spec["batch_sizes"][i % len(spec["batch_sizes"])]
        every = spec["log_every"][i % len(spec["log_every"])]
        task_seed = spec.get("task_seeds", spec["seeds"])[i]
        base = TrainConfig(
            optimizer=optimizer,
            steps=STEPS,
            seed=seed,
            task_seed=task_seed,
            batch_size=batch,
            log_every=every,
        )
        for task, best in best_lr.items():
            cfg = base.with_(task=task)
            for lr in diverge_lrs[task] if "diverge" in roles else ():
                add("diverge", cfg.with_(lr=lr))
            for lr in slow_lrs[task] if "slow" in roles else ():
                for schedule in slow_schedules:
                    add("slow", cfg.with_(lr=lr, schedule=schedule))
            for lr in plateau_lrs[task] if "plateau" in roles else ():
                add("plateau", cfg.with_(lr=lr), twin=True)
            for lr in (best, best / 3) if "best" in roles else ():
                for schedule in healthy_schedules:
                    add("best", cfg.with_(lr=lr, schedule=schedule), twin=schedule == "constant")
        if optimizer != "sgd" or "oscillation" not in roles:
            continue
        quad = base.with_(task="quadratic")
        for lr, momentum in OSCILLATION_CONFIGS:
            add("oscillation", quad.with_(lr=lr, momentum=momentum))
        for lr, momentum in FINITE_DIVERGENCE_CONFIGS:
            add("momentum_diverge", quad.with_(lr=lr, momentum=momentum))
    return out


def load(set_name: str, *, rebuild: bool = False) -> list[LabelledRun]:
    """The runs of one set, from the cache when present (excluded runs left out)."""
    path = CACHE_DIR / f"{set_name}.pkl"
    if path.exists() and not rebuild:
        with path.open("rb") as fh:
            runs = pickle.load(fh)
    else:
        runs = build(set_name)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(runs, fh)
    return [run for run in runs if run.labels]
