"""A step counted within each epoch, as MLflow's own PyTorch quickstart logs it.

``mlflow.log_metric("loss", loss, step=batch // 100)`` inside the batch loop of each epoch
starts the step at 0 again every epoch. Read by step, each epoch's points replaced the previous
epoch's, so a 3-epoch run read as its last epoch alone (usually "too short to judge"). In logging
order such steps climb over one range, go back to its first step, and climb over it again - which
a job resumed from a checkpoint does not do: it goes back to the checkpoint's step, and the
latest value of each step is right for it. The same holds for the rows of a file (a CSV row
written per batch with the batch index as its step, TensorBoard's ``add_scalar(tag, loss,
batch_idx)``), which are in logging order.
"""

from __future__ import annotations

import numpy as np

# Fewer points than this cannot show a repeated climb worth renumbering.
_MIN_POINTS = 4


def steps_across_epochs(steps_in_logging_order: np.ndarray) -> np.ndarray | None:
    """Global step numbers for a metric whose step restarts every epoch, else None.

    The steps, in the order they were logged, must fall into two or more climbs (each step
    larger than the one before) that all start at the first step logged; every climb but the
    last covers the same steps, and the last stops at or before their end (an epoch cut short).
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
    one = full[0]
    interval = int(np.median(np.diff(one))) if one.size > 1 else 1
    span = int(one[-1] - first) + interval
    epoch_of_point = np.repeat(np.arange(starts.size, dtype=np.int64), lengths)
    return steps + epoch_of_point * span


def epochs_in(steps_in_logging_order: np.ndarray) -> int:
    """How many epochs steps that :func:`steps_across_epochs` renumbers span."""
    return int(np.count_nonzero(np.diff(steps_in_logging_order) < 0)) + 1


def epoch_steps_note(key: str, epochs: int) -> str:
    """The note for a metric read with :func:`steps_across_epochs`."""
    return (
        f"the step of {key!r} starts again every epoch ({epochs} epochs, e.g. step=batch // 100 "
        "inside the epoch loop): steps are numbered across epochs, in logging order"
    )
