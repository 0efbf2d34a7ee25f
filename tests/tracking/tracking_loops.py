"""Real training loops (lrwatch.tasks models and data) that feed a watcher, for the tests."""

from __future__ import annotations

import math

import torch

from lrwatch.tasks import TrainConfig, make_optimizer, make_scheduler, make_task


def train_watched(config: TrainConfig, watch_kwargs: dict, *, accumulate: int = 1):
    """Train ``config`` with ``lrwatch.watch`` around the loop.

    Returns (watcher, losses, lrs_used): the loss of each optimizer step (mean over the
    micro-batches) and the LR of param group 0 that the step used, read before optimizer.step().
    """
    import lrwatch

    torch.manual_seed(config.seed)
    task = make_task(config.task, task_seed=config.task_seed, batch_size=config.batch_size)
    model = task.make_model()
    optimizer = make_optimizer(model.parameters(), config)
    scheduler = make_scheduler(optimizer, config)
    batches = task.batches(torch.Generator().manual_seed(config.seed))
    losses, lrs = [], []
    with lrwatch.watch(optimizer, scheduler=scheduler, **watch_kwargs) as w:
        for _ in range(config.steps):
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(accumulate):  # gradient accumulation: one w.step per optimizer step
                inputs, targets = next(batches)
                loss = task.loss_fn(model(inputs), targets) / accumulate
                loss.backward()
                total += float(loss.detach())
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            w.step(torch.tensor(total) if accumulate > 1 else loss)
            losses.append(total)
            if not math.isfinite(total):
                break
    return w, losses, lrs


class ManualLoop:
    """A plain, seeded training loop on ``config``, for tests that act between steps.

    Build the watcher on ``loop.optimizer``, then ``for step in loop.steps(w): ...``: each
    iteration runs one optimizer step, hands its loss to ``w.step`` and yields the step index.
    """

    def __init__(self, config: TrainConfig) -> None:
        torch.manual_seed(config.seed)
        self.steps_total = config.steps
        self.task = make_task(config.task)
        self.model = self.task.make_model()
        self.optimizer = make_optimizer(self.model.parameters(), config)
        self._batches = self.task.batches(torch.Generator().manual_seed(config.seed))

    def steps(self, watcher):
        for step in range(self.steps_total):
            inputs, targets = next(self._batches)
            self.optimizer.zero_grad()
            loss = self.task.loss_fn(self.model(inputs), targets)
            loss.backward()
            self.optimizer.step()
            watcher.step(loss)
            yield step
