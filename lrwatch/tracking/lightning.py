"""A PyTorch Lightning callback around :func:`lrwatch.watch` (needs ``pip install lightning``).

    trainer = lightning.Trainer(callbacks=[LrwatchCallback(experiment="my-exp")])

It records one step per optimizer step (so gradient accumulation counts optimizer steps, like
``trainer.global_step``), the LR of every param group of every optimizer, and the schedulers'
class names. With Lightning's ``MLFlowLogger`` it logs into that logger's run; otherwise it
creates a run. Only global rank 0 writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lrwatch.errors import require

if TYPE_CHECKING:  # mypy reads Lightning's own types; at runtime a missing one names its install
    import lightning.pytorch as pl

    from lrwatch.tracking.distributed import RankWatcher
    from lrwatch.tracking.watcher import Watcher
else:
    pl = require("lightning.pytorch", "lightning")


class LrwatchCallback(pl.Callback):
    """Watch a Lightning fit; ``watch_kwargs`` go to :func:`lrwatch.watch`."""

    def __init__(self, **watch_kwargs) -> None:
        super().__init__()
        self.watch_kwargs = watch_kwargs
        self.watcher: Watcher | RankWatcher | None = None
        self._last_global_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        from lrwatch.tracking.api import watch

        kwargs = dict(self.watch_kwargs)
        schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
        kwargs.setdefault("scheduler", schedulers or None)
        kwargs.setdefault("model", pl_module)
        logger = trainer.logger
        if type(logger).__name__ == "MLFlowLogger" and "run_id" not in kwargs:
            kwargs.setdefault("tracking_uri", getattr(logger, "_tracking_uri", None))
            kwargs["run_id"] = logger.run_id
        self._last_global_step = trainer.global_step
        # A fit resumed from a checkpoint starts at its global step, as Lightning's loggers do.
        kwargs.setdefault("start_step", trainer.global_step)
        self.watcher = watch(list(trainer.optimizers), **kwargs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.watcher is None or trainer.global_step == self._last_global_step:
            return  # an accumulation micro-batch: no optimizer step yet
        self._last_global_step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.watcher.step(loss)

    def on_train_end(self, trainer, pl_module) -> None:
        self._close("FINISHED")

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close("FAILED")

    def _close(self, status: str) -> None:
        if self.watcher is not None:
            self.watcher.close(status)
            self.watcher = None
