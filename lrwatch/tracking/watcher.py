"""The public logger: ``lrwatch.watch(optimizer) as w`` and ``w.step(loss)`` - the hot path.

The training thread only reads the learning rates, stamps the time and appends one tuple to a
deque (a few microseconds); :mod:`lrwatch.tracking.writer` does everything else in the background.

The LR convention: the LR logged at step ``k`` is the rate optimizer step ``k`` *used*. The watcher
registers an optimizer step pre-hook that snapshots every param group's LR right before
``optimizer.step()`` runs, so the value is right whether the scheduler is stepped before or after
``w.step`` and when a script sets ``group["lr"]`` by hand. If the optimizer was not stepped since
the last ``w.step`` (e.g. a skipped AMP step), the current LRs are read at ``w.step`` time.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from lrwatch.tracking.live import DivergenceError
from lrwatch.tracking.writer import Writer, strict

log = logging.getLogger("lrwatch")


class Watcher:
    """Logs loss and learning rates of a training loop into an MLflow run. Make one with
    :func:`lrwatch.watch`; use it as a context manager or call :meth:`close` yourself.

    Attributes:
        run_id: the MLflow run written to (``None`` until the store was reachable once).
        spool_path: the local journal of everything logged (deleted after a clean close).
        findings: live findings so far (:class:`~lrwatch.analysis.findings.Finding`).
    """

    def __init__(
        self,
        optimizers: Sequence,
        writer: Writer | None,
        *,
        grad_params=None,
        reduce=None,
        start_step: int = 0,
    ):
        self._optimizers = list(optimizers)
        self._writer = writer
        self._queue: deque = writer.queue if writer is not None else deque()
        self._live = writer.live if writer is not None else None
        self._reduce = reduce
        self._grad_params = grad_params
        self._first_step = self._step = start_step
        self._captured: list = [None] * len(self._optimizers)
        self._single = len(self._optimizers) == 1
        self._norm = None
        self._closed = False
        self._stop_raised = False
        # A forked child (a helper process, a DataLoader worker) inherits this object, and at
        # its exit the atexit hook or a `with` block would close it: end the parent's run while
        # it trains and delete its spool file. Only the process that made the watcher closes it.
        self._owner_pid = os.getpid()
        self._failures: dict[str, int] = {}  # each distinct logger error -> times it happened
        self._warned_unreduced = False
        self._hooks = [self._install_hook(i, opt) for i, opt in enumerate(self._optimizers)]
        import torch

        self._tensor = torch.Tensor

    # -- hot path ----------------------------------------------------------------------------
    def step(self, loss) -> None:
        """Record one optimizer step: ``loss`` (a scalar tensor on any device, or a number) and
        the LR of every param group. Call it once per ``optimizer.step()``.

        Never raises into the training loop, except :class:`DivergenceError` when the run was
        created with ``on_divergence="stop"`` and a divergence was found.
        """
        live = self._live
        if live is not None and live.stop_requested is not None and not self._stop_raised:
            self._stop_raised = True
            raise DivergenceError(live.stop_requested)
        # The step counts optimizer steps even when this one's loss cannot be recorded, so the
        # steps after it keep their true numbers.
        step = self._step
        self._step = step + 1
        try:
            if self._reduce is not None:
                loss = self._reduce(loss)
            # Tuples of floats only: the garbage collector stops tracking them, so a long queue
            # costs no GC time (lists here tripled the per-step cost in a 100k-step buffer).
            captured = self._captured
            if self._single:
                lrs = captured[0]
                if lrs is None:
                    lrs = self._read(0)
                else:
                    captured[0] = None
                lrs = (lrs,)
            else:
                lrs = tuple([c if c is not None else self._read(i) for i, c in enumerate(captured)])
                self._captured = [None] * len(captured)
            if type(loss) is not float:
                loss = self._loss_value(loss)
            norm, self._norm = self._norm, None
            self._queue.append((step, time.time(), loss, lrs, norm))
        except Exception as exc:  # noqa: BLE001 - the promise: never break training
            self._fail(exc)

    def _loss_value(self, loss):
        if loss is None:
            # numpy reads None as NaN: the live analysis then saw a divergence, and with
            # on_divergence="stop" ended a training run that was fine.
            raise TypeError(
                "w.step got None, not a loss: the step is not recorded (a model's "
                "outputs.loss is None when no labels were passed)"
            )
        if isinstance(loss, self._tensor):
            if loss.numel() != 1:
                loss = self._mean_of_unreduced(loss)
            if not loss.is_cpu:
                # Stays on the device (copied to the host in batches off the hot path), as a
                # private copy: the flush reads it up to a second later, when the script may have
                # changed its own tensor in place (an accumulated loss reset with zero_() or
                # `-=`, as the Hugging Face Trainer resets tr_loss) or torch.compile's CUDA
                # graphs (mode="reduce-overhead") have overwritten an output at the next replay.
                return loss.detach().clone()
            return loss.item() if not loss.requires_grad else loss.data.item()
        try:
            return float(loss)
        except TypeError:  # a numpy array (numpy 2 converts only 0-d ones), a list
            values = np.asarray(loss, dtype=np.float64)
            if values.size != 1:
                self._warn_unreduced(values.shape, values.size, "array")
                return float(values.mean())
            return float(values.reshape(-1)[0])

    def _mean_of_unreduced(self, loss):
        """The mean of a per-sample loss (``reduction="none"``), the reduction losses default to.

        Warned once: the first element (what a scalar read would give on a GPU) or an error at
        every step would both be worse. An empty tensor has no loss to log.
        """
        self._warn_unreduced(tuple(loss.shape), loss.numel(), "tensor")
        return loss.detach().float().mean()

    def _warn_unreduced(self, shape: tuple, size: int, what: str) -> None:
        if size == 0:
            raise ValueError(f"w.step got an empty loss {what}")
        if not self._warned_unreduced:
            self._warned_unreduced = True
            log.warning(
                "lrwatch: w.step got a loss %s of shape %s, not one number; logging its mean "
                "(pass the scalar loss you call backward() on to silence this)",
                what,
                shape,
            )

    def log(self, **metrics) -> None:
        """Log other metrics at the current step, e.g. ``w.log(val_loss=0.3, accuracy=0.9)``.

        Values may be numbers or one-element tensors or arrays, read when ``w.log`` is called
        (a tensor on a device: copied there, read with the flush's losses). The step is the one
        ``w.step`` just recorded, or the first step's number before the first ``w.step``.
        """
        try:
            step = max(self._step - 1, self._first_step)
            values = {}
            for key, value in metrics.items():
                read = self._metric_value(value)
                if read is None:  # None or text would be logged as NaN: a blow-up that never was
                    self._fail(TypeError(f"w.log got {_described(value)} for {key}: not logged"))
                else:
                    values[key] = read
            if values:
                self._queue.append((step, time.time(), values))
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def _metric_value(self, value):
        """The value ``w.log`` records for one metric, or None when it is not one number.

        Read now, not at the flush: a tensor the script changes in place afterwards (a running
        total reset with ``zero_()``) was logged with its later value. A tensor on a device is
        copied there instead, so ``w.log`` never waits for the device.
        """
        if type(value) is float:
            return value
        if value is None or isinstance(value, (str, bytes)):
            return None
        if isinstance(value, self._tensor):
            if value.numel() != 1:
                return None
            return value.item() if value.is_cpu else value.detach().reshape(()).clone()
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        return float(array.reshape(-1)[0]) if array.size == 1 else None

    # -- LR capture --------------------------------------------------------------------------
    def _read(self, index: int) -> tuple:
        return self._lrs(self._optimizers[index])

    def _lrs(self, optimizer) -> tuple:
        lrs = tuple([g["lr"] for g in optimizer.param_groups])
        for lr in lrs:  # the common all-float case costs one loop (~50 ns), no second tuple
            if type(lr) is not float:
                return tuple([self._lr_now(lr) for lr in lrs])
        return lrs

    def _lr_now(self, lr):
        """The value of a tensor LR (used with torch.compile'd and capturable optimizers) at
        this step: schedulers update it in place, so the tensor itself would be read later with
        a later step's value. On a device it is copied there (no host sync)."""
        if isinstance(lr, self._tensor):
            return lr.item() if lr.is_cpu else lr.detach().clone()
        return lr

    def _install_hook(self, index: int, optimizer):
        def capture(opt, args, kwargs):
            try:  # runs inside optimizer.step(): the same promise as step() and log()
                self._captured[index] = self._lrs(opt)
                if index == 0 and self._grad_params is not None:
                    self._norm = self._grad_norm()
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)

        try:
            return optimizer.register_step_pre_hook(_outside_compiled_graphs(capture))
        except AttributeError:  # not a torch.optim.Optimizer: read LRs at w.step time
            return None

    def _grad_norm(self):
        import torch

        grads = [p.grad for p in self._grad_params if p.grad is not None]
        if not grads:
            return None
        # Stays on the device (no sync); the writer copies it with the losses.
        total_norm = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6
        if total_norm is not None:
            return total_norm(grads)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))

    # -- properties and lifecycle ----------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        return self._writer.run_id if self._writer is not None else None

    @property
    def spool_path(self):
        return self._writer.spool.path if self._writer is not None else None

    @property
    def findings(self) -> list:
        return list(self._live.findings) if self._live is not None else []

    @property
    def open_in_this_process(self) -> bool:
        """Not closed, and made by this process (not a forked child's inherited copy)."""
        return not self._closed and os.getpid() == self._owner_pid

    def watches_any(self, optimizers: Sequence) -> bool:
        """Whether this watcher, open and made by this process, watches one of ``optimizers``."""
        watched = any(o is p for o in optimizers for p in self._optimizers)
        return self.open_in_this_process and watched

    @property
    def step_count(self) -> int:
        """How many ``w.step`` calls this watcher has had."""
        return self._step - self._first_step

    def close(self, status: str = "FINISHED", *, timeout_s: float = 10.0) -> bool:
        """Flush, deliver what is pending (up to ``timeout_s``), end the run if lrwatch started
        it. Returns True when everything reached the store; otherwise the spool file is kept and
        a warning names the ``lrwatch import`` command that finishes the upload. In a forked
        child process it does nothing (the parent's run and spool are the parent's)."""
        if self._closed or os.getpid() != self._owner_pid:
            return True  # already closed, or a forked child's copy: nothing of its own to send
        self._closed = True
        self._queue = deque(maxlen=0)  # steps after close are dropped, not piled up in memory
        for hook in self._hooks:
            if hook is not None:
                hook.remove()
        from lrwatch.tracking import lifecycle

        lifecycle.forget(self)
        self._report_repeated_failures()
        if self._writer is None:
            return True
        try:
            owned_status = status if self._writer_owns_run else None
            delivered = self._writer.close(status=owned_status, timeout_s=timeout_s)
            spool = self._writer.spool
            spool.close(delete=delivered)
            if not delivered and not self._writer.refused:  # the writer has said why
                if spool.complete:
                    log.warning("lrwatch: not everything reached the tracking store; upload the "
                                "rest later with: lrwatch import %s", spool.path)  # fmt: skip
                else:
                    log.warning("lrwatch: not everything reached the tracking store, and the "
                                "spool file could not be written: the unsent steps are lost")  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
            return False
        if strict() and self._writer.error is not None:
            raise self._writer.error
        return delivered

    _writer_owns_run = True

    def _fail(self, exc: BaseException) -> None:
        """Warn about a logger error once per distinct error: a bad value passed at every step
        would otherwise print a line per step. :meth:`close` says how often each repeated."""
        if strict():
            raise exc
        what = repr(exc)
        seen = self._failures.get(what, 0)
        self._failures[what] = seen + 1
        if not seen:
            log.warning("lrwatch: logger error (training continues; not repeated): %s", what)

    def _report_repeated_failures(self) -> None:
        for what, times in self._failures.items():
            if times > 1:
                log.warning("lrwatch: the logger error %s happened at %d steps", what, times)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        self.close(status)


def as_list(optimizer_or_list) -> list:
    if isinstance(optimizer_or_list, (list, tuple)):
        return list(optimizer_or_list)
    return [optimizer_or_list]


# Where wrappers keep the optimizer (or scheduler) they drive: accelerate's AcceleratedOptimizer
# - what ``Accelerator.prepare`` and the Hugging Face Trainer hand out - and DeepSpeed's ZeRO
# optimizers in ``optimizer``, Lightning's LightningOptimizer in ``_optimizer``, accelerate's
# AcceleratedScheduler in ``scheduler``.
_WRAPPED_OPTIMIZER = ("optimizer", "_optimizer")
_WRAPPED_SCHEDULER = ("scheduler",)
# Wrappers of wrappers are followed this deep (and never round a cycle).
_MAX_WRAPPING = 4


def unwrapped(wrapper, *, scheduler: bool = False):
    """The optimizer (or scheduler) inside wrappers of it, else ``wrapper`` itself.

    The inner optimizer is the one whose ``step()`` runs: its step pre-hook fires at every real
    step, where a wrapper's never does (AcceleratedOptimizer skips ``Optimizer.__init__``, which
    is what makes ``step()`` run hooks), and the LR logged at a step was then the one after the
    scheduler moved it. Its class is also the one worth recording (``SGD``, not
    ``AcceleratedOptimizer``).
    """
    names, needed = (
        (_WRAPPED_SCHEDULER, "step") if scheduler else (_WRAPPED_OPTIMIZER, "param_groups")
    )
    current = wrapper
    for _ in range(_MAX_WRAPPING):
        inner = next(
            (
                value
                for value in (getattr(current, name, None) for name in names)
                if value is not None and value is not current and hasattr(value, needed)
            ),
            None,
        )
        if inner is None or inner is wrapper:
            break
        current = inner
    return current


OnDivergence = str | Callable


def _described(value) -> str:
    """A short name for a value ``w.log`` cannot log, for its warning."""
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0:
        return f"a {type(value).__name__} of shape {tuple(shape)}, not one number,"
    text = repr(value)
    return f"{text[:40]}..." if len(text) > 40 else text


def _outside_compiled_graphs(hook):
    """``hook`` run as plain Python when a ``torch.compile``'d ``optimizer.step()`` calls it.

    Traced, the hook's ``Tensor.item()`` (a CPU tensor LR) broke the optimizer's graph with a
    25-line warning through lrwatch's code; skipped by the compiler, it still runs before every
    step and reads the LR that step uses. (Costs ~0.4 us a step in an eager loop.)
    """
    import torch

    return torch.compiler.disable(hook)
