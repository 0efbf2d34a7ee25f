"""A training loss logged only as its parts: Ultralytics YOLO's ``results.csv`` (and its MLflow
and TensorBoard logs) hold ``train/box_loss``, ``train/cls_loss``, ``train/dfl_loss`` - YOLOv5
``train/obj_loss``, segmentation ``train/seg_loss``, pose ``train/pose_loss`` and
``train/kobj_loss`` - and no total.

Each part is already weighted by its gain (``loss[0] *= hyp.box`` ...), and the trainer steps on
their sum (``loss.sum() * batch_size``), so that sum is the loss the learning rate drives. Read
by name alone, the box part was analysed as if it were the loss: a run whose other parts climbed
or stalled was judged by the one that did not.
"""

from __future__ import annotations

import re

import numpy as np

from lrwatch import keys
from lrwatch.run import Run, Series
from lrwatch.sources.files import add_read_note

SUMMED_LOSS_KEY = keys.LOSS  # "train/loss", the name lrwatch's own logger gives the loss
_PART = re.compile(r"^train/[a-z0-9]+_loss$")
# Both are in every Ultralytics detection-family log and name no other tool's parts: a generic
# "train/<x>_loss" set (a GAN's g_loss and d_loss) is no sum of one objective.
_SIGNATURE = ("train/box_loss", "train/cls_loss")


def loss_parts(names) -> list[str]:
    """The parts to add up, or ``[]`` when a total is logged or the set is not Ultralytics'."""
    present = set(names)
    if any(candidate in present for candidate in keys.LOSS_CANDIDATES):
        return []
    if not all(part in present for part in _SIGNATURE):
        return []
    return sorted(name for name in present if _PART.match(name))


def add_summed_loss(run: Run) -> None:
    """Make the sum of the run's loss parts its loss (``train/loss``), with a note, when the
    run logged only Ultralytics' parts. Steps where a part is missing are left out; a
    non-finite part makes the sum non-finite (evidence kept)."""
    parts = loss_parts(run.metrics)
    if not parts:
        return
    series = [run.metrics[name].cleaned() for name in parts]
    steps = series[0].steps
    for other in series[1:]:
        steps = np.intersect1d(steps, other.steps, assume_unique=True)
    with np.errstate(all="ignore"):  # inf + -inf is NaN: still evidence
        total = np.sum([s.values[np.searchsorted(s.steps, steps)] for s in series], axis=0)
    run.metrics[SUMMED_LOSS_KEY] = Series(steps, np.asarray(total, dtype=np.float64))
    run.loss_key = SUMMED_LOSS_KEY
    named = ", ".join(name.removeprefix("train/") for name in parts)
    note = (
        f"the loss 'train/loss' is the sum of the {len(parts)} loss parts logged ({named}), "
        "as Ultralytics trains on it (--loss-key train/box_loss reads one part alone)"
    )
    add_read_note(run, note)
