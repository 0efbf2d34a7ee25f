"""A step counted within each epoch, as MLflow's own PyTorch quickstart logs it.

``mlflow.log_metric("loss", loss, step=batch // 100)`` inside the batch loop of each epoch
starts the step at 0 again every epoch. Read by step, each epoch's points replaced the previous
epoch's, so a 3-epoch run read as its last epoch alone (usually "too short to judge"). In logging
order such steps climb over one range, go back to its first step, and climb over it again - which
a job resumed from a checkpoint does not do: it goes back to the checkpoint's step, and the
latest value of each step is right for it. The same holds for the rows of a file (a CSV row
written per batch with the batch index as its step, TensorBoard's ``add_scalar(tag, loss,
batch_idx)``), which are in logging order.

A job run again from scratch into the same run (or appended to the same file) climbs over the
same steps too. Its values tell it apart: a real epoch carries on from where the one before it
ended - the model keeps its weights - while a rerun starts again where the run began. Read as
epochs, a rerun looked like a loss that jumped back up to its first level mid-run.
"""

from __future__ import annotations

import numpy as np

# Fewer points than this cannot show a repeated climb worth renumbering.
_MIN_POINTS = 4
# Levels at an epoch's edges are medians of this many points: one noisy minibatch loss does not
# decide.
_EDGE_POINTS = 3
# A restart "starts again" when it jumps by more than this many typical step-to-step changes
# (the median absolute difference) - an epoch boundary of a training run is one ordinary step -
# back towards the run's first level, undoing at least this share of the way the run had come.
_RERUN_JUMP = 5.0
_RERUN_UNDONE = 0.5


def steps_across_epochs(
    steps_in_logging_order: np.ndarray, values_in_logging_order: np.ndarray
) -> np.ndarray | None:
    """Global step numbers for a metric whose step restarts every epoch, else None.

    The steps, in the order they were logged, must fall into two or more climbs (each step
    larger than the one before) that all start at the first step logged; every climb but the
    last covers the same steps, and the last stops at or before their end (an epoch cut short);
    and no climb may start again from the run's first level (:func:`_starts_over`: a rerun).
    Epoch ``e``'s step ``s`` becomes ``s + e * span``, ``span`` being the range one epoch
    covers plus one logging interval, so the steps keep their spacing across an epoch's end.
    """
    steps = np.asarray(steps_in_logging_order, dtype=np.int64)
    if steps.size < _MIN_POINTS:
        return None
    diffs = np.diff(steps)
    if (diffs == 0).any():  # a step logged twice in a row: not one climb per epoch
        return None
    restarts = np.flatnonzero(diffs < 0) + 1
    first = steps[0]
    if restarts.size == 0 or (steps[restarts] != first).any():
        return None
    starts = np.concatenate(([0], restarts))
    lengths = np.diff(np.append(starts, steps.size))
    epoch_steps = np.split(steps, restarts)
    full = epoch_steps[:-1]
    if any(not np.array_equal(epoch, full[0]) for epoch in full[1:]):
        return None
    last = epoch_steps[-1]
    if last.size > full[0].size or not np.array_equal(last, full[0][: last.size]):
        return None
    if _starts_over(np.asarray(values_in_logging_order, dtype=np.float64), restarts):
        return None
    one = full[0]
    interval = int(np.median(np.diff(one))) if one.size > 1 else 1
    span = int(one[-1] - first) + interval
    epoch_of_point = np.repeat(np.arange(starts.size, dtype=np.int64), lengths)
    return steps + epoch_of_point * span


def _starts_over(values: np.ndarray, restarts: np.ndarray) -> bool:
    """Whether a climb jumps back to where the run began (a rerun from scratch), judged on the
    finite values; a metric that never moved (a constant LR) cannot tell, and reads as epochs."""
    finite = np.isfinite(values)
    typical = float(np.median(np.abs(np.diff(values[finite])))) if finite.sum() > 1 else 0.0
    first = _level(values[:_EDGE_POINTS])
    for restart in restarts.tolist():
        before = _level(values[max(0, restart - _EDGE_POINTS) : restart])
        after = _level(values[restart : restart + _EDGE_POINTS])
        come = first - before  # how far the run had come from its first level
        jump = after - before
        if (
            abs(jump) > _RERUN_JUMP * typical
            and jump * come > 0  # back towards the first level
            and abs(jump) >= _RERUN_UNDONE * abs(come)
        ):
            return True
    return False


def _level(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def epochs_in(steps_in_logging_order: np.ndarray) -> int:
    """How many epochs steps that :func:`steps_across_epochs` renumbers span."""
    return int(np.count_nonzero(np.diff(steps_in_logging_order) < 0)) + 1


def epoch_steps_note(key: str, epochs: int) -> str:
    """The note for a metric read with :func:`steps_across_epochs`."""
    return (
        f"the step of {key!r} starts again every epoch ({epochs} epochs, e.g. step=batch // 100 "
        "inside the epoch loop): steps are numbered across epochs, in logging order"
    )
