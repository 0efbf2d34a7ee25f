"""Cleaning shared by every detector: one sorted loss series, the aligned LR, and noise scales.

:func:`prepare` turns a :class:`~lrwatch.run.Run` into a :class:`PreparedRun` once; detectors,
schedule recognition and recommendations all read that object and never touch the raw run.

Everything here is scale- and shift-free by construction: detectors compare the loss with its own
step-to-step noise (``noise``) and with its own overall drop, never with absolute loss values, so
a loss scaled by a positive constant or shifted (negative log-likelihoods) is judged the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lrwatch.errors import InputError
from lrwatch.run import Run, Series

# 1.4826 * MAD estimates a Gaussian standard deviation; first differences of white noise have
# sqrt(2) times the noise's spread, hence the division.
_MAD_TO_SIGMA = 1.4826
_DIFF_TO_NOISE = 1.4826 / np.sqrt(2.0)

# Medians of long stretches are taken over an evenly strided subset of at most this many points:
# the median of 20,000 noisy points is already within ~1% of a noise sigma of the full one, and
# it keeps a 1,000,000-step run far under a second.
MAX_MEDIAN_POINTS = 20_000

# Long runs are summarised as at most this many blocks (robust medians per block). 400 keeps
# enough shape for a 4-block-wide event while making every detector O(n) then O(400).
MAX_BLOCKS = 400
# ... of at least this many points each, so a block's median is a level, not one point: the
# lowest single point of n noisy ones sits 2-3 noise units below the level around it, and in a
# per-epoch log of a rate far too small one lucky epoch read as the best level the loss then
# "climbed away" from (divergence).
MIN_BLOCK_POINTS = 3


@dataclass(frozen=True)
class Blocks:
    """The finite, pre-blow-up part of the loss cut into equal runs of consecutive points.

    Attributes:
        start / end: the first and last logged step of each block.
        median: robust level of the loss in each block.
        mad_sigma: robust spread (1.4826 * MAD) of the loss in each block around its median.
        size: points per block (the last block may be longer; it absorbs the remainder).
    """

    start: np.ndarray
    end: np.ndarray
    median: np.ndarray
    mad_sigma: np.ndarray
    size: int

    def __len__(self) -> int:
        return int(self.median.size)


@dataclass(frozen=True)
class PreparedRun:
    """A run cleaned once for every detector.

    Attributes:
        steps: int64, sorted, unique - the loss's logged steps.
        loss: float64, same length; NaN/inf kept (they are evidence).
        lr: float64 aligned to ``steps`` (the last LR logged at or before each step; the first LR
            logged for steps before it), or ``None`` when no LR was logged.
        lr_steps / lr_values: the cleaned LR series itself (finite values only), for schedule
            recognition; ``None`` when no LR was logged.
        first_nonfinite: index into ``steps`` of the first NaN/inf loss, or ``None``.
        run_id: the run's id, for messages.
    """

    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray | None
    lr_steps: np.ndarray | None
    lr_values: np.ndarray | None
    first_nonfinite: int | None
    run_id: str = ""

    def __len__(self) -> int:
        return int(self.steps.size)

    @property
    def n(self) -> int:
        return int(self.steps.size)

    @cached_property
    def finite_end(self) -> int:
        """Index one past the last point of the finite prefix (before the first NaN/inf)."""
        return self.n if self.first_nonfinite is None else int(self.first_nonfinite)

    @cached_property
    def finite_loss(self) -> np.ndarray:
        """The loss before its first non-finite value (a view; may be empty)."""
        return self.loss[: self.finite_end]

    @cached_property
    def noise(self) -> float:
        """Robust step-to-step noise of the loss (same units as the loss), 0.0 if unknowable.

        Estimated from the median absolute deviation of first differences, so a trend or a few
        spikes do not inflate it; computed on the finite prefix.
        """
        return robust_diff_noise(self.finite_loss)

    @cached_property
    def blocks(self) -> Blocks:
        """The finite prefix summarised as at most :data:`MAX_BLOCKS` robust blocks of at least
        :data:`MIN_BLOCK_POINTS` points (a shorter prefix is one block)."""
        n = self.finite_loss.size
        most = min(MAX_BLOCKS, max(1, n // MIN_BLOCK_POINTS))
        return make_blocks(self.steps[: self.finite_end], self.finite_loss, most)

    @property
    def lr_is_constant(self) -> bool:
        """True when no LR was logged or it never changed by more than 1 part in 1000."""
        if self.lr is None or self.lr.size == 0:
            return self.lr is None
        finite = self.lr[np.isfinite(self.lr)]
        if finite.size == 0:
            return True
        ref = np.max(np.abs(finite))
        return bool(ref == 0 or (finite.max() - finite.min()) <= 1e-3 * ref)


def prepare(run: Run) -> PreparedRun:
    """Clean ``run`` for analysis.

    Sorts the loss by step, keeps the last value of a repeated step, restores MLflow's stored
    infinities, and aligns the LR to the loss's steps.

    Raises:
        InputError: the run has no loss series.

    Example::

        prepared = prepare(run)
        prepared.steps, prepared.loss, prepared.noise
    """
    loss_series = run.loss
    if loss_series is None:
        raise InputError(f"run {run.display_name()!r} has no loss series")
    return prepare_arrays(
        loss_series.steps,
        loss_series.values,
        None if run.lr is None else run.lr.steps,
        None if run.lr is None else run.lr.values,
        run_id=run.id,
    )


def prepare_arrays(steps, loss, lr_steps=None, lr_values=None, *, run_id: str = "") -> PreparedRun:
    """:func:`prepare` from raw arrays (for streaming analysis, which has no :class:`Run`)."""
    steps_c, loss_c = _cleaned(steps, loss)
    nonfinite = np.flatnonzero(~np.isfinite(loss_c))
    first_nonfinite = int(nonfinite[0]) if nonfinite.size else None

    lr_aligned = lr_s = lr_v = None
    if lr_steps is not None and lr_values is not None:
        lr_s, lr_v = _cleaned(lr_steps, lr_values)
        keep = np.isfinite(lr_v)
        if not keep.all():
            lr_s, lr_v = lr_s[keep], lr_v[keep]
        if lr_s.size:
            idx = np.searchsorted(lr_s, steps_c, side="right") - 1
            lr_aligned = lr_v[np.clip(idx, 0, lr_s.size - 1)]
        else:
            lr_s = lr_v = None
    return PreparedRun(
        steps=steps_c,
        loss=loss_c,
        lr=lr_aligned,
        lr_steps=lr_s,
        lr_values=lr_v,
        first_nonfinite=first_nonfinite,
        run_id=run_id,
    )


def _cleaned(steps, values) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Series.cleaned`, skipping the sort when the steps already increase strictly."""
    series = Series(np.asarray(steps), np.asarray(values))
    s = series.steps
    if s.size < 2 or bool(np.all(s[1:] > s[:-1])):
        from lrwatch.run import restore_infinities

        return s, restore_infinities(series.values)
    cleaned = series.cleaned()
    return cleaned.steps, cleaned.values


def strided(values: np.ndarray, max_points: int = MAX_MEDIAN_POINTS) -> np.ndarray:
    """``values`` thinned to at most ``max_points`` evenly spaced points (a view)."""
    stride = -(-values.size // max_points) if values.size > max_points else 1
    return values[::stride]


def robust_median(values: np.ndarray) -> float:
    """Median of ``values`` (of a strided subset for very long stretches; see above)."""
    with np.errstate(all="ignore"):  # the mean of two values near 1e308 overflows to inf
        return float(np.median(strided(values)))


def robust_diff_noise(values: np.ndarray) -> float:
    """Noise standard deviation estimated from the MAD of first differences (0.0 if < 3 points).

    Long series use an evenly spread subset of consecutive pairs.
    """
    if values.size < 3:
        return 0.0
    with np.errstate(all="ignore"):  # differences of values near 1e308 overflow to inf
        if values.size > 2 * MAX_MEDIAN_POINTS:
            first = np.linspace(0, values.size - 2, MAX_MEDIAN_POINTS).astype(np.int64)
            d = values[first + 1] - values[first]
        else:
            d = np.diff(values)
        mad = np.median(np.abs(d - np.median(d)))
    return float(_DIFF_TO_NOISE * mad)


def make_blocks(steps: np.ndarray, values: np.ndarray, max_blocks: int) -> Blocks:
    """Cut ``values`` into at most ``max_blocks`` equal blocks (>= 1 point each), vectorised."""
    with np.errstate(all="ignore"):  # medians of values near 1e308 overflow to inf
        return _make_blocks(steps, values, max_blocks)


def _make_blocks(steps: np.ndarray, values: np.ndarray, max_blocks: int) -> Blocks:
    n = values.size
    if n == 0:
        empty = np.empty(0)
        return Blocks(empty.astype(np.int64), empty.astype(np.int64), empty, empty, 0)
    size = max(1, int(np.ceil(n / max_blocks)))
    count = n // size
    if count == 0:
        count, size = 1, n
    body = values[: count * size].reshape(count, size)
    # Long blocks: an evenly strided subset of each block (same robustness, a fraction of the cost).
    per_block = max(1, MAX_MEDIAN_POINTS * 5 // max(count, 1))
    if size > per_block:
        body = body[:, :: -(-size // per_block)]
    median = np.median(body, axis=1)
    mad_sigma = _MAD_TO_SIGMA * np.median(np.abs(body - median[:, None]), axis=1)
    if count * size < n:  # fold the remainder into the last block
        tail = strided(values[(count - 1) * size :])
        median[-1] = np.median(tail)
        mad_sigma[-1] = _MAD_TO_SIGMA * np.median(np.abs(tail - median[-1]))
    start = steps[np.arange(count) * size]
    end = np.append(steps[np.arange(1, count) * size - 1], steps[-1])
    return Blocks(start, end, median, mad_sigma, size)
