"""Turning what the training thread queued into metric rows (runs in the background thread).

The hot path queues raw tuples and never converts anything: a loss may be a Python float, a CPU
scalar tensor already read, or a device tensor. Device tensors of one flush are stacked and copied
to the host with ONE transfer here, so the training thread never waits for the device.
"""

from __future__ import annotations

import logging
import math
from collections import deque

from lrwatch import keys

log = logging.getLogger("lrwatch")

# Queue items. A step: (step, time_s, loss, lrs, grad_norm) with lrs = [[lr per group] per
# optimizer]. A w.log call: (step, time_s, {key: value}).
STEP_ITEM_LEN = 5


def drain(queue: deque) -> list[tuple]:
    """Pop everything queued so far (deque.popleft is atomic, so the training thread may append)."""
    items = []
    for _ in range(len(queue)):
        items.append(queue.popleft())
    return items


def to_floats(values: list) -> list[float | None]:
    """Floats for a list of floats / numbers / scalar tensors, with one device->host copy; None
    for a value that cannot be read."""
    out: list[float | None] = [v if type(v) is float else None for v in values]
    tensors = [(i, v) for i, v in enumerate(values) if out[i] is None and hasattr(v, "detach")]
    if tensors:
        try:
            import torch

            # The watcher queued detached one-element tensors; most are 0-d already, and skipping
            # a detach().reshape() per tensor saves ~7 ms of Python (GIL) time per 1000 steps.
            try:
                stacked = torch.stack([t for _, t in tensors])
            except RuntimeError:  # shapes differ ([] and [1]): make them all 0-d
                stacked = torch.stack([t.detach().reshape(()) for _, t in tensors])
            host = stacked.reshape(-1).cpu().double().tolist()  # one synchronising copy
            for (i, _), value in zip(tensors, host):
                out[i] = value
        except (RuntimeError, TypeError, ValueError):
            pass  # mixed devices / dtypes / shapes: fall back to one conversion each below
    return [scalar(values[i]) if v is None else v for i, v in enumerate(out)]


def scalar(value) -> float | None:
    """A float for a number or a one-element tensor/array; None when it cannot be read as one
    (a device tensor freed or overwritten since it was queued). Not NaN: a NaN loss is a
    divergence, and ``on_divergence="stop"`` would end a run that was training fine."""
    try:
        if hasattr(value, "detach"):
            value = value.detach().reshape(-1)[0]
        elif hasattr(value, "__array__") and getattr(value, "size", 0) == 1:
            value = value.reshape(-1)[0]  # numpy 2's float() takes only 0-d arrays
        return float(value)
    except (TypeError, ValueError, IndexError, RuntimeError):
        return None


class RowBuilder:
    """Metric rows ``(key, value, timestamp_ms, step)`` from queue items, timestamps monotone."""

    def __init__(self) -> None:
        self._last_ms = 0
        self._lr_keys: dict[tuple[int, int], str] = {}
        # The first LR of each param group seen since the writer last took them (group,
        # optimizer) -> LR: a group added mid-run (unfreezing layers) gets its ``base_lr`` param.
        self.first_lrs: dict[tuple[int, int], float] = {}
        self._warned_unreadable = False

    def _timestamp(self, time_s: float) -> int:
        # Timestamps never go backwards (wall clock adjustments), so (step, timestamp) only grows
        # per key - the order the replay de-duplication relies on.
        self._last_ms = max(self._last_ms, int(time_s * 1000))
        return self._last_ms

    def _lr_key(self, group: int, optimizer: int, value: float | None) -> str:
        key = self._lr_keys.get((group, optimizer))
        if key is None and value is not None:
            key = self._lr_keys[(group, optimizer)] = keys.lr_key(group, optimizer)
            self.first_lrs[(group, optimizer)] = value
        return key if key is not None else keys.lr_key(group, optimizer)

    def build(self, items: list[tuple]) -> tuple[list[tuple], list[tuple[int, float, float]]]:
        """Rows for every item, plus ``(step, loss, lr)`` of each step for the live analysis.

        A value that cannot be read is left out (its step keeps the others), with one warning.
        """
        steps = [it for it in items if len(it) == STEP_ITEM_LEN]
        losses = to_floats([it[2] for it in steps])
        norms = to_floats([it[4] for it in steps if it[4] is not None])
        norm_iter = iter(norms)
        loss_by_id = {id(it): loss for it, loss in zip(steps, losses)}
        # LRs that are not floats (a tensor LR's per-step copy, perhaps on a device) are
        # converted together, with one device->host copy, like the losses.
        other_lrs = [lr for it in steps for lrs in it[3] for lr in lrs if type(lr) is not float]
        lr_by_id = dict(zip(map(id, other_lrs), to_floats(other_lrs))) if other_lrs else {}
        unreadable = losses.count(None) + norms.count(None) + list(lr_by_id.values()).count(None)
        rows: list[tuple] = []
        points: list[tuple[int, float, float]] = []
        for item in items:
            step, ms = item[0], self._timestamp(item[1])
            if len(item) != STEP_ITEM_LEN:
                for key, value in item[2].items():  # floats, or a copy of a device tensor
                    read = value if type(value) is float else scalar(value)
                    unreadable += read is None
                    rows.append((key, read, ms, step))
                continue
            loss = loss_by_id[id(item)]
            rows.append((keys.LOSS, loss, ms, step))
            first_lr = math.nan
            for o, groups in enumerate(item[3]):
                for g, lr in enumerate(groups):
                    value = lr if type(lr) is float else lr_by_id[id(lr)]
                    rows.append((self._lr_key(g, o, value), value, ms, step))
                    if o == 0 and g == 0 and value is not None:
                        first_lr = value
            if item[4] is not None:
                rows.append((keys.GRAD_NORM, next(norm_iter), ms, step))
            if loss is not None:
                points.append((step, loss, first_lr))
        if unreadable:
            rows = self._without_unreadable(rows)
        return rows, points

    def _without_unreadable(self, rows: list[tuple]) -> list[tuple]:
        readable = [row for row in rows if row[1] is not None]
        if not self._warned_unreadable:
            self._warned_unreadable = True
            log.warning(
                "lrwatch: %d logged values (device tensors) could not be read at the flush and "
                "are left out; this warning is not repeated",
                len(rows) - len(readable),
            )
        return readable
