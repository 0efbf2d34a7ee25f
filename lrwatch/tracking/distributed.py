"""torch.distributed support: one writer (rank 0) and an optional loss average across ranks.

By default only global rank 0 writes to MLflow; every other rank gets a :class:`RankWatcher`
whose ``step`` costs next to nothing. ``reduce_loss="mean"`` averages the loss over all ranks
with ``all_reduce`` before rank 0 records it. That is a collective: every rank must call
``w.step`` the same number of times, and it synchronises the ranks (and, on GPU, waits for the
loss) once per step - the one per-step sync lrwatch ever adds, and only when asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from lrwatch.tracking.writer import strict

log = logging.getLogger("lrwatch")


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    dist = _dist()
    return dist.get_rank() if dist is not None else 0


def make_reducer(mode: str | None) -> Callable | None:
    """A ``loss -> loss`` function averaging over ranks, or None (no reduction)."""
    if mode is None:
        return None
    if mode != "mean":
        raise ValueError("reduce_loss must be None or 'mean'")
    dist = _dist()
    if dist is None:
        return None  # single process: nothing to average

    def reduce_mean(loss):
        import torch

        if isinstance(loss, torch.Tensor):
            value = loss.detach().reshape(()).clone().to(torch.float64)
        else:
            # NCCL reduces CUDA tensors only; gloo reduces CPU tensors.
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            value = torch.tensor(float(loss), dtype=torch.float64, device=device)
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / dist.get_world_size()

    return reduce_mean


class RankWatcher:
    """What ranks other than 0 get: the Watcher API, recording nothing (but still reducing)."""

    run_id = None
    spool_path = None
    findings: list = []

    def __init__(self, reduce: Callable | None) -> None:
        self._reduce = reduce
        self.step_count = 0

    def step(self, loss) -> None:
        try:  # the promise of every rank: never break training
            if self._reduce is not None:
                self._reduce(loss)
        except Exception as exc:  # noqa: BLE001
            if strict():
                raise
            log.warning("lrwatch: loss reduction failed on this rank (training continues): %r", exc)
        self.step_count += 1

    def log(self, **metrics) -> None:
        pass

    def close(self, status: str = "FINISHED", *, timeout_s: float = 10.0) -> bool:
        return True

    def __enter__(self) -> RankWatcher:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
