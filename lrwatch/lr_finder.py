"""The LR range test: raise the LR step by step, record the loss, suggest a rate to start from.

Before a long run, run a short range test (Leslie Smith's, as in fastai's ``lr_find`` and
Lightning's ``lr_finder``): the LR rises exponentially from ``start_lr`` to ``end_lr`` over a few
hundred steps while the loss is recorded, until the loss blows up. The model and optimizer are
restored afterwards, so training starts from where it would have without the test.

Example::

    import lrwatch
    result = lrwatch.find_lr(model, optimizer, loss_fn, train_loader)
    print(result.suggestion.lr, result.suggestion.method)
    result.figure().show()   # loss against LR, the suggestion marked

The procedure lives here (needs torch); the suggestion maths is pure, in
:mod:`lrwatch.analysis.range_test`. With ``log=True`` the test is one MLflow run tagged
``lrwatch.range_test=true``, which ``lrwatch analyze`` and the dashboard recognise.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrwatch.analysis.range_test import (
    DEFAULT_METHOD,
    DEFAULT_SMOOTH,
    METHODS,
    LrSuggestion,
    smooth_losses,
    suggest_lr,
)
from lrwatch.errors import InputError, require

__all__ = [
    "LrSuggestion",
    "RangeTestResult",
    "find_lr",
    "find_lr_on_task",
    "log_range_test",
    "suggest_lr",
]

# Stop once the smoothed loss exceeds this multiple of the best smoothed loss so far: fastai and
# Lightning both use 4; by then the curve past the minimum is clear and more steps only cost.
DEFAULT_DIVERGE_THRESHOLD = 4.0
# Steps in a range test: 200 suggested better rates than 100 on the bundled tasks (the valley
# rule within 2x of the sweep's best final loss in 15 of 16 configurations, against 14 of 16;
# benchmarks/lr_suggestion_comparison.py) and costs seconds on small models.
DEFAULT_NUM_STEPS = 200
# Steps before the divergence check applies: the debiased EMA of the first few losses is noisy.
_MIN_STEPS_BEFORE_STOP = 5


@dataclass
class RangeTestResult:
    """What a range test recorded, and the rate it suggests.

    Attributes:
        lrs / losses: the LR each step used and its raw loss (non-finite kept).
        smoothed: the bias-corrected EMA of ``losses`` that the stopping rule and the suggestion
            read (see :func:`lrwatch.analysis.range_test.smooth_losses`).
        suggestion: the suggested starting LR, or ``None`` when too few points were finite.
        stopped_early: True when the test stopped because the loss blew up.
        run_id: the MLflow run it was logged to, or ``None``.
        params: the test's settings (start_lr, end_lr, num_steps, mode, smooth,
            diverge_threshold, optimizer class name), as logged.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: LrSuggestion | None
    stopped_early: bool
    run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def suggest(self, method: str = DEFAULT_METHOD) -> LrSuggestion:
        """The suggestion of another rule (``steepest``, ``minimum``, ``valley``, ``combined``)."""
        smooth = self.params.get("smooth", DEFAULT_SMOOTH)
        return suggest_lr(self.lrs, self.losses, method=method, smooth=smooth)

    def figure(self):
        """Loss against LR with the suggestion marked: the dashboard's own pure figure builder.

        Returns a ``plotly.graph_objects.Figure`` (``.show()`` in a notebook, ``.write_html``).
        """
        from dashboard.figures import figure_range_test

        suggestion = self.suggestion
        return figure_range_test(
            self.lrs,
            self.losses,
            smoothed=self.smoothed,
            suggested_lr=suggestion.lr if suggestion else None,
            method=suggestion.method if suggestion else None,
        )


def find_lr(
    model,
    optimizer,
    loss_fn: Callable | None,
    data: Iterable,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = DEFAULT_NUM_STEPS,
    mode: str = "exp",
    smooth: float = DEFAULT_SMOOTH,
    diverge_threshold: float = DEFAULT_DIVERGE_THRESHOLD,
    method: str = DEFAULT_METHOD,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    log: bool = True,
) -> RangeTestResult:
    """Run an LR range test on ``model`` and restore it and ``optimizer`` afterwards.

    Each step takes the next ``(inputs, targets)`` batch from ``data`` (a DataLoader or any
    iterable, cycled when shorter than the test), sets every param group's LR, and takes one
    optimizer step on ``loss_fn(model(inputs), targets)``. With ``loss_fn=None`` each batch is a
    dict the model takes as keywords and computes its own loss from (a Hugging Face model and
    batch with ``labels``): the step is on ``model(**batch).loss``.

    Args:
        model: a ``torch.nn.Module``; put on its device first (batches are moved to it).
        optimizer: an optimizer over ``model``'s parameters; its LR is overwritten during the test.
        loss_fn: ``loss_fn(outputs, targets) -> scalar tensor``, or None (see above).
        data: iterable of ``(inputs, targets)`` batches (of dicts for ``loss_fn=None``).
        start_lr / end_lr: the LR of the first and last step.
        num_steps: the most steps the test takes (stops earlier when the loss blows up).
        mode: ``exp`` (LR rises by a constant factor per step) or ``linear``.
        smooth: EMA weight of each new loss for the smoothed curve.
        diverge_threshold: stop once the smoothed loss exceeds this multiple of its best
            (or the loss is NaN/inf).
        method: the suggestion rule (see :func:`lrwatch.analysis.range_test.suggest_lr`).
        tracking_uri / experiment: where to log (default store; experiment name, or MLflow's
            default experiment).
        log: log the test as an MLflow run tagged ``lrwatch.range_test=true``.

    Returns:
        :class:`RangeTestResult`. When logging fails, a warning says so and ``run_id`` is
        ``None`` (under ``LRWATCH_STRICT=1`` the error is raised).

    Raises:
        InputError: bad arguments, or ``data`` yields no batch.

    Example::

        result = lrwatch.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                                 torch.nn.functional.cross_entropy, train_loader)
        optimizer.param_groups[0]["lr"] = result.suggestion.lr
    """
    torch = require("torch", "lrwatch[torch]")
    _check_arguments(start_lr, end_lr, num_steps, mode, smooth, diverge_threshold, method)
    params = {
        "start_lr": start_lr,
        "end_lr": end_lr,
        "num_steps": num_steps,
        "mode": mode,
        "smooth": smooth,
        "diverge_threshold": diverge_threshold,
        "optimizer": type(optimizer).__name__,
    }
    schedule = lr_schedule(start_lr, end_lr, num_steps, mode)
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    saved_rng = _rng_state(torch)
    try:
        lrs, losses, stopped = _run_steps(
            torch, model, optimizer, loss_fn, data, schedule, smooth, diverge_threshold
        )
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        model.train(was_training)
        _set_rng_state(torch, saved_rng)
    result = _result(lrs, losses, stopped, params, method)
    if log:
        result.run_id = _log_or_warn(result, tracking_uri, experiment)
    return result


def _log_or_warn(result: RangeTestResult, tracking_uri, experiment) -> str | None:
    """Log the test; a tracking failure costs the record, not the result (raises under test)."""
    try:
        return log_range_test(result, tracking_uri=tracking_uri, experiment=experiment)
    except Exception as exc:
        from lrwatch.tracking.writer import strict

        if strict():
            raise
        warnings.warn(f"lrwatch: the range test was not logged to MLflow: {exc}", stacklevel=3)
        return None


def find_lr_on_task(config, **kwargs) -> RangeTestResult:
    """A range test on one of the bundled tasks (:mod:`lrwatch.tasks`), as ``train`` would start.

    The model is initialised, the optimizer built and the batches drawn exactly as
    ``lrwatch.tasks.train(config)`` does, so the suggestion can be compared with real runs of
    ``config.with_(lr=suggestion.lr)``. ``kwargs`` go to :func:`find_lr` (``log`` defaults to
    False here).
    """
    torch = require("torch", "lrwatch[torch]")
    from lrwatch import tasks

    torch.manual_seed(config.seed)
    task = tasks.make_task(
        config.task, task_seed=config.task_seed, batch_size=config.batch_size, width=config.width
    )
    model = task.make_model()
    optimizer = tasks.make_optimizer(model.parameters(), config)
    num_steps = kwargs.get("num_steps", DEFAULT_NUM_STEPS)
    data = itertools.islice(task.batches(torch.Generator().manual_seed(config.seed)), num_steps)
    kwargs.setdefault("log", False)
    return find_lr(model, optimizer, task.loss_fn, data, **kwargs)


def _rng_state(torch):
    """torch's global random state (CPU, and CUDA when in use): dropout and shuffling draw on it,
    so restoring it makes training after the test draw what it would have without it."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(torch, state) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _check_arguments(start_lr, end_lr, num_steps, mode, smooth, diverge_threshold, method):
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise InputError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if int(num_steps) != num_steps or num_steps < 3:
        raise InputError(f"num_steps must be an integer >= 3, not {num_steps}")
    if mode not in ("exp", "linear"):
        raise InputError(f"mode must be 'exp' or 'linear', not {mode!r}")
    if not 0 < smooth <= 1:
        raise InputError(f"smooth must be in (0, 1], not {smooth}")
    if not diverge_threshold > 1:
        raise InputError(f"diverge_threshold must be > 1, not {diverge_threshold}")
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, not {method!r}")


def lr_schedule(start_lr: float, end_lr: float, num_steps: int, mode: str = "exp") -> np.ndarray:
    """The LR of each step: geometric (``exp``) or evenly spaced (``linear``), ends included."""
    if mode == "exp":
        return np.geomspace(start_lr, end_lr, int(num_steps))
    return np.linspace(start_lr, end_lr, int(num_steps))


def _run_steps(torch, model, optimizer, loss_fn, data, schedule, smooth, diverge_threshold):
    """The test loop: returns (lrs, losses, stopped_early)."""
    device = next((p.device for p in model.parameters()), None)
    batches = _cycled(data)
    model.train()
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    for step, lr in enumerate(schedule):
        batch = _next_batch(batches, step, keywords=loss_fn is None)
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        optimizer.zero_grad(set_to_none=True)
        if loss_fn is None:  # the model takes the batch as keywords and computes its loss
            loss = _model_loss(model(**_to(dict(batch), device, torch)))
        else:
            inputs, targets = batch
            loss = loss_fn(model(_to(inputs, device, torch)), _to(targets, device, torch))
        loss.backward()
        optimizer.step()
        value = float(loss.detach())  # one sync per step: the stopping rule needs the value
        lrs.append(float(lr))
        losses.append(value)
        if not math.isfinite(value):
            return lrs, losses, True
        # The same debiased EMA as smooth_losses, kept running so the test can stop on time.
        avg = (1 - smooth) * avg + smooth * value
        smoothed = avg / (1 - (1 - smooth) ** (step + 1))
        best = min(best, smoothed)
        # "threshold x best", written so that a negative loss (a log-likelihood) works too.
        blown_up = smoothed - best > (diverge_threshold - 1) * abs(best)
        if step >= _MIN_STEPS_BEFORE_STOP and blown_up:
            return lrs, losses, True
    return lrs, losses, False


def _cycled(data: Iterable) -> Iterator:
    """Batches from ``data``, started again when it runs out (replayed for one-shot iterators)."""
    iterator = iter(data)
    if iterator is data:  # a one-shot iterator cannot be restarted: replay what it gave
        yield from itertools.cycle(iterator)
        return
    while True:
        empty = True
        for batch in iterator:
            empty = False
            yield batch
        if empty:  # a pass with no batch: restarting again would loop forever
            return
        iterator = iter(data)


def _next_batch(batches: Iterator, step: int, *, keywords: bool):
    """The next batch: an ``(inputs, targets)`` pair, or with ``keywords`` a dict."""
    try:
        batch = next(batches)
    except StopIteration:
        raise InputError("data yielded no batches for the range test") from None
    what = type(batch).__name__
    if isinstance(batch, Mapping):
        what += f" (keys {', '.join(map(repr, list(batch)[:5]))})"
    if keywords:
        if not isinstance(batch, Mapping):
            raise InputError(
                f"with loss_fn=None each batch must be a dict the model takes as keywords and "
                f"computes its loss from (labels included); batch {step} was {what}"
            )
        return batch
    # A dict (a Hugging Face batch) or a tensor of two rows would unpack into its keys or rows
    # and fail deep inside the model: name it here instead.
    pair = isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)) and len(batch) == 2
    if not pair:
        raise InputError(
            f"each batch must be an (inputs, targets) pair; batch {step} was {what} - "
            "map it, e.g. ((b['input'], b['label']) for b in loader), or pass loss_fn=None for "
            "a model that takes a dict batch as keywords and returns its loss (Hugging Face)"
        )
    return batch


def _model_loss(outputs):
    """The loss a model returned: ``outputs.loss`` (a Hugging Face ``ModelOutput``),
    ``outputs["loss"]``, the first item of a tuple (``return_dict=False``), or the output."""
    if isinstance(outputs, Mapping):
        loss = outputs.get("loss")
    elif hasattr(outputs, "loss"):
        loss = outputs.loss
    elif isinstance(outputs, (tuple, list)):
        loss = outputs[0] if outputs else None
    else:
        loss = outputs
    if getattr(loss, "ndim", None) != 0:
        raise InputError(
            "with loss_fn=None the model must return its loss (a Hugging Face model does when "
            f"the batch holds labels); it returned {type(outputs).__name__} without one"
        )
    return loss


def _to(value, device, torch):
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device, torch) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device, torch) for k, v in value.items()}
    return value


def _result(lrs, losses, stopped, params, method) -> RangeTestResult:
    lrs_array = np.asarray(lrs, dtype=np.float64)
    losses_array = np.asarray(losses, dtype=np.float64)
    try:
        suggestion = suggest_lr(lrs_array, losses_array, method=method, smooth=params["smooth"])
    except ValueError:
        suggestion = None  # fewer than 3 finite points: nothing to suggest from
    return RangeTestResult(
        lrs=lrs_array,
        losses=losses_array,
        smoothed=smooth_losses(losses_array, params["smooth"]),
        suggestion=suggestion,
        stopped_early=stopped,
        params=params,
    )


def log_range_test(
    result: RangeTestResult, *, tracking_uri: str | None = None, experiment: str | None = None
) -> str:
    """Log a range test as one finished MLflow run; returns its run id.

    Tags ``lrwatch.range_test=true`` plus the suggestion; params are the test's settings and the
    suggested LR; metrics ``train/loss`` and ``lr`` at steps 0, 1, ... Written through the
    logger's :class:`~lrwatch.tracking.sink.MlflowSink` (one client, requests within MLflow's
    limits, a deleted experiment restored).
    """
    import time

    from lrwatch import __version__, keys
    from lrwatch.store import resolve_tracking_uri
    from lrwatch.tracking.sink import MlflowSink

    sink = MlflowSink(resolve_tracking_uri(tracking_uri))
    name = f"lr-range-test-{result.params.get('optimizer', 'optimizer')}"
    tags = {
        keys.TAG_RANGE_TEST: "true",
        keys.TAG_VERSION: __version__,
        keys.TAG_RANGE_TEST_STOPPED_EARLY: str(result.stopped_early).lower(),
    }
    params = {key: str(value) for key, value in result.params.items()}
    if result.suggestion is not None:
        tags[keys.TAG_SUGGESTED_LR] = repr(result.suggestion.lr)
        tags[keys.TAG_SUGGESTION_METHOD] = result.suggestion.method
        params["suggested_lr"] = repr(result.suggestion.lr)
        params["suggestion_method"] = result.suggestion.method
    run_id = sink.create_run(experiment, name, tags)
    try:
        sink.log_params(run_id, params)
        timestamp = int(time.time() * 1000)
        rows = []
        for step, (lr, loss) in enumerate(zip(result.lrs, result.losses)):
            rows.append((keys.LOSS, float(loss), timestamp, step))
            rows.append((keys.LR, float(lr), timestamp, step))
        sink.log_metrics(run_id, rows)
    except Exception:
        sink.end_run(run_id, "FAILED")
        raise
    sink.end_run(run_id, "FINISHED")
    return run_id
