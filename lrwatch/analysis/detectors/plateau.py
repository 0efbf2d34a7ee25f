"""Plateau: no real improvement for a long stretch while the learning rate stays constant.

"Real" is measured against the run's own step-to-step noise: the loss at the end of the stretch
must sit within a fraction of one noise standard deviation of its start. The stretch is the
longest one that reaches the end of the run (a run still clearly improving has none).

Severity tells a converged run from one stuck at a floor set by its rate: at a constant rate that
is too high, the parameters keep wandering and the loss's level wanders with them, so block
medians spread more than per-step noise explains (``wander`` >= 1.6), or consecutive losses stay
correlated (``persistence``: the lag-1 rank autocorrelation of the detrended stretch) over a
plateau that covers most of the run - decaying the rate helps. A run that simply converged shows
neither (its residual is minibatch noise, close to white) and gets an ``info`` finding.
"""

from __future__ import annotations

import numpy as np

from lrwatch.analysis.detectors._common import block_median_noise, fmt, require_in_range
from lrwatch.analysis.findings import Finding
from lrwatch.analysis.prepare import PreparedRun, robust_median

# Candidate stretch starts: every 5% of the run.
START_GRID = 20
# Blocks inside a stretch for the wander measure: 16 medians give a stable spread.
WANDER_BLOCKS = 16
# Each block's median is taken over at most this many evenly strided points. The thresholds were
# set on runs of up to 1,000 points (blocks of up to 62), and the test stays what it was there
# on longer runs: with all of a long block's points, the median's standard error shrinks with
# the run's length, and the slow curvature of a loss still converging (an exponential tail
# after a linear detrend) read as a wandering floor - a 30,000-step run converging like a
# 1,000-step one got a plateau warning.
WANDER_BLOCK_POINTS = 64
# A plateau is judged on runs of at least this many points (four per wander block). Fewer -
# typically a per-epoch log - and the loss alone cannot tell a floor held up by the rate from
# convergence well enough (README, "Per-epoch logs"): a "keep" recommendation then says so.
MIN_PLATEAU_POINTS = 4 * WANDER_BLOCKS
# Default warning thresholds (their reasons: see detect_plateau's Args).
WANDER_WARNING = 1.6
PERSISTENCE_WARNING = 0.18
# A positive loss that fell below this share of its starting level sits at its minimum: its
# floor is float rounding (float32 resolves ~7 digits), not a rate holding it up, so the plateau
# is convergence (``info``) however its last digits wander.
CONVERGED_TO_ZERO_SHARE = 1e-6
# A positive loss whose longest noise-flat stretch ends below this share of its starting level
# is still clearly improving, however flat it looks next to its noise: it halved. Near zero, a
# classification loss's noise is set by rare hard batches (spikes many times its level), and a
# loss still falling 4-28x was "flat within half a sigma": Adam runs at their best rate got
# plateau warnings. A plateau held up by a rate sits at a level, not at a fraction of where it
# started. (Only a positive loss has a "share": a log-likelihood is judged as before.)
STILL_FALLING_SHARE = 0.5
# Where the plateau is said to begin: the first point, from the stretch's grid start on, where
# the median of this many consecutive losses is within one noise sigma of the plateau's level
# (the median of 5 scatters ~0.56 sigma, so the first window on the floor nearly always passes).
# The grid start is coarse (5% of the run), and a fast first descent inside the stretch's first
# quarter leaves that quarter's median on the floor: a loss that fell from 4.5 to 0.6 by step
# ~25 was said to have "stopped improving at step 0", and its recommendation was to decay the
# rate at step 0. The finding's kind and severity are judged on the grid stretch, as before.
ARRIVAL_WINDOW = 5
# Windows looked at per pass while searching for the arrival: almost always found in the first.
_ARRIVAL_CHUNK = 4096
# The persistence measure reads at most this many consecutive points at the end of the stretch:
# its standard error is then ~1/sqrt(20,000) < 0.01, and a 1M-step run stays fast.
MAX_PERSISTENCE_POINTS = 20_000


def detect_plateau(
    prepared: PreparedRun,
    *,
    min_fraction: float = 0.2,
    flat_tolerance: float = 0.5,
    wander_warning: float = WANDER_WARNING,
    persistence_warning: float = PERSISTENCE_WARNING,
    persistence_min_fraction: float = 0.5,
    persistence_strong: float = 0.5,
) -> list[Finding]:
    """Report a plateau that lasts until the end of the run (at most one finding).

    Args:
        min_fraction: the stretch must cover at least this share of the run; shorter pauses are
            normal in non-convex training.
        flat_tolerance: "no real improvement" means the median of the stretch's last quarter lies
            less than this many per-step noise standard deviations from the median of its first
            quarter - half a sigma is invisible next to the step-to-step scatter.
        wander_warning: ``warning`` when the stretch's block medians spread at least this many
            times what per-step noise explains (a floor held up by a too-high rate); ``info``
            otherwise (converged). On the tuning runs every healthy constant-rate run stayed
            below 1.5 (max 1.46) while 11 of the 18 runs a step-decayed twin beat clearly
            reached 1.67 or more; iid noise gives ~1.
        persistence_warning / persistence_min_fraction: ``warning`` also when the stretch covers
            at least ``persistence_min_fraction`` of the run (a floor set by the rate is reached
            early) and its lag-1 rank autocorrelation after a linear detrend is at least
            ``persistence_warning``. White minibatch noise gives 0 +- 1/sqrt(points); on the
            tuning runs healthy constant-rate plateaus covering half the run or more stayed at
            or below 0.15, plateaus a step decay beat reached 0.19-0.93 (0.18 splits them; a
            shorter flat stretch at the end of a slow descent can keep some trend curvature,
            hence the length condition).
        persistence_strong: ... or, at any plateau length, at least this much (healthy tuning
            runs: at most 0.39, also when logged only every 2nd or 3rd step; plateaus a decay
            beat with a short flat stretch: 0.7-0.98).

    Returns:
        ``[]`` or one ``plateau`` finding.
    """
    min_fraction = require_in_range("min_fraction", min_fraction, 0.0, 1.0)
    flat_tolerance = require_in_range("flat_tolerance", flat_tolerance, 0.0, 1e6)
    wander_warning = require_in_range("wander_warning", wander_warning, 0.0, 1e6)
    persistence_warning = require_in_range("persistence_warning", persistence_warning, -1.0, 1.0)
    persistence_min_fraction = require_in_range(
        "persistence_min_fraction", persistence_min_fraction, 0.0, 1.0
    )
    persistence_strong = require_in_range("persistence_strong", persistence_strong, -1.0, 1.0)
    if prepared.first_nonfinite is not None:
        return []
    y, noise = prepared.loss, prepared.noise
    n = y.size
    if n < MIN_PLATEAU_POINTS or noise <= 0:
        return []
    begin = _stretch_start(y, noise, min_fraction, flat_tolerance)
    if begin is None or not _lr_constant(prepared, begin):
        return []
    stretch = y[begin:]
    wander = _wander(stretch, noise)
    persistence = lag1_persistence(stretch)
    fraction = (n - begin) / n
    level = robust_median(stretch)
    held_up = not _at_zero(y, level) and (
        wander >= wander_warning
        or persistence >= persistence_strong
        or (persistence >= persistence_warning and fraction >= persistence_min_fraction)
    )
    severity = "warning" if held_up else "info"
    arrived = begin + _arrival(stretch, level, noise)
    start, end = int(prepared.steps[arrived]), int(prepared.steps[-1])
    what = "a floor the learning rate holds it at" if severity == "warning" else "convergence"
    message = (
        f"The loss stopped improving at step {start} and stayed near {fmt(level)} until step "
        f"{end} {constant_lr(prepared)} ({(n - arrived) / n:.0%} of the run; looks like {what})."
    )
    evidence = {
        "plateau_level": level,
        "fraction_of_run": float((n - arrived) / n),
        "improvement_in_noise_units": _improvement(stretch) / noise,
        "noise": noise,
        "wander": wander,
        "persistence": persistence,
        "lr": None if prepared.lr is None else float(prepared.lr[begin]),
    }
    return [Finding("plateau", start, end, severity, message, evidence)]


def wanders(values: np.ndarray, noise: float) -> bool:
    """True when a stretch's level wanders like a floor held up by a too-high rate.

    Its block medians spread beyond what per-step noise explains, or consecutive losses stay
    correlated (the plateau warning's tests at their defaults). A loss whose parameters barely
    move shows neither: consecutive minibatch losses are then independent draws.
    """
    return (
        _wander(values, noise) >= WANDER_WARNING or lag1_persistence(values) >= PERSISTENCE_WARNING
    )


def _at_zero(y: np.ndarray, level: float) -> bool:
    """A positive loss whose plateau is under CONVERGED_TO_ZERO_SHARE of its starting level."""
    start = robust_median(y[: max(3, y.size // 50)])
    return bool(y.min() > 0) and level < CONVERGED_TO_ZERO_SHARE * start


def _quarter_levels(stretch: np.ndarray) -> tuple[float, float]:
    """Medians of the stretch's first and last quarters."""
    quarter = max(stretch.size // 4, 1)
    return robust_median(stretch[:quarter]), robust_median(stretch[-quarter:])


def _improvement(stretch: np.ndarray) -> float:
    head, tail = _quarter_levels(stretch)
    return head - tail


def constant_lr(prepared: PreparedRun) -> str:
    """How a message states the plateau's condition: a run that logged no LR is read as one at
    a constant rate (the common case), and the message says it did not know."""
    if prepared.lr is None:
        return "with no LR logged, read as a constant rate"
    return "at a constant learning rate"


def _stretch_start(y, noise, min_fraction, flat_tolerance) -> int | None:
    """Earliest grid start whose stretch to the end is long enough and shows no improvement:
    within ``flat_tolerance`` noise sigmas. None when there is none, or when that stretch of a
    positive loss still halved (see STILL_FALLING_SHARE).

    Long enough: ``min_fraction`` of the run, and one point per wander block at least (in a run
    of 64-79 points, 20% is fewer: the wander measure had empty blocks and numpy printed "Mean
    of empty slice" on the user's terminal)."""
    n = y.size
    positive = bool(y.min() > 0)
    for k in range(START_GRID):
        begin = k * n // START_GRID
        if n - begin < max(min_fraction * n, WANDER_BLOCKS):
            return None
        # Flat both ways: a stretch that climbs is not a plateau (divergence judges climbs).
        head, tail = _quarter_levels(y[begin:])
        if abs(head - tail) < flat_tolerance * noise:
            # The longest stretch flat within the noise, yet halved: still clearly improving.
            return None if positive and tail < STILL_FALLING_SHARE * head else begin
    return None


def _arrival(stretch: np.ndarray, level: float, noise: float) -> int:
    """Index in ``stretch`` where the loss has come down to its plateau (see ARRIVAL_WINDOW);
    searched in its first quarter, the part whose median the stretch's test read."""
    head = stretch[: max(stretch.size // 4, ARRIVAL_WINDOW)]
    if head.size < ARRIVAL_WINDOW:
        return 0
    windows = np.lib.stride_tricks.sliding_window_view(head, ARRIVAL_WINDOW)
    for first in range(0, len(windows), _ARRIVAL_CHUNK):
        medians = np.median(windows[first : first + _ARRIVAL_CHUNK], axis=1)
        on_floor = np.flatnonzero(medians <= level + noise)
        if on_floor.size:
            return first + int(on_floor[0])
    return 0


def _lr_constant(prepared: PreparedRun, begin: int) -> bool:
    if prepared.lr is None:
        return True  # unknown: judged on the loss alone, the evidence says lr None
    lr = prepared.lr[begin:]
    ref = float(np.max(np.abs(lr))) if lr.size else 0.0
    return ref == 0 or float(lr.max() - lr.min()) <= 1e-3 * ref


def _wander(stretch: np.ndarray, noise: float) -> float:
    """Spread of detrended block medians over the spread per-step noise alone would give."""
    size = stretch.size // WANDER_BLOCKS
    body = stretch[: size * WANDER_BLOCKS].reshape(WANDER_BLOCKS, size)
    sampled = body[:, :: -(-size // WANDER_BLOCK_POINTS)]  # at most WANDER_BLOCK_POINTS each
    medians = np.median(sampled, axis=1)
    t = np.arange(WANDER_BLOCKS, dtype=np.float64)
    residual = medians - np.polyval(np.polyfit(t, medians, 1), t)
    spread = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    expected = block_median_noise(noise, sampled.shape[1])
    return float(spread / expected) if expected > 0 else 0.0


def lag1_persistence(stretch: np.ndarray) -> float:
    """Lag-1 autocorrelation of the ranks of the linearly detrended stretch (its last points).

    Ranks make a few spikes weightless; 0 for white noise, towards 1 for a wandering level.
    """
    y = stretch[-MAX_PERSISTENCE_POINTS:]
    if y.size < 8:
        return 0.0
    t = np.linspace(-1.0, 1.0, y.size)
    residual = y - np.polyval(np.polyfit(t, y, 1), t)
    ranks = residual.argsort().argsort().astype(np.float64)
    ranks -= ranks.mean()
    denom = float(np.dot(ranks, ranks))
    return float(np.dot(ranks[:-1], ranks[1:]) / denom) if denom > 0 else 0.0
