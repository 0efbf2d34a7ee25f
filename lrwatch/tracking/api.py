"""``lrwatch.watch``: build a Watcher - join or create the run, open the spool, start the writer."""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping

from lrwatch import __version__, keys
from lrwatch.errors import InputError
from lrwatch.store import resolve_tracking_uri
from lrwatch.tracking import distributed, lifecycle
from lrwatch.tracking.live import LiveDiagnosis
from lrwatch.tracking.params import optimizer_params
from lrwatch.tracking.sink import MlflowSink, is_permanent
from lrwatch.tracking.spool import SpoolWriter
from lrwatch.tracking.watcher import Watcher, as_list, unwrapped
from lrwatch.tracking.writer import Writer, short_error

log = logging.getLogger("lrwatch")

# One flush a second: a few log_batch requests a second at most, and what SIGKILL can cost.
DEFAULT_FLUSH_INTERVAL_S = 1.0


def watch(
    optimizer,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    params: Mapping[str, object] | None = None,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    scheduler=None,
    grad_norm: bool = False,
    model=None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
    on_divergence: str | Callable = "warn",
    reduce_loss: str | None = None,
    spool_dir: str | None = None,
    analyze: bool = True,
    start_step: int | None = None,
) -> Watcher | distributed.RankWatcher:
    """Log the loss and every param group's LR of a PyTorch training loop into MLflow.

    Args:
        optimizer: a ``torch.optim.Optimizer`` or a list of them (``lr/opt1``... for the others).
        experiment: MLflow experiment name (created if missing); default experiment when None.
        run_name: name of the new run. Inside an active MLflow run (``mlflow.start_run()``) the
            watcher logs into that run instead and leaves ending it to you.
        params: extra params to record with the optimizer's (class, base LR, momentum, betas...).
        tracking_uri: where to log; else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.
        run_id: log into this existing run (left open) instead of creating one.
        scheduler: the LR scheduler (or a list), recorded as the ``scheduler`` param.
        grad_norm: also log ``grad_norm``, the total L2 norm of the gradients each optimizer step
            used (computed on the device right before ``optimizer.step()``; costs one norm).
        model: whose parameters' gradients ``grad_norm`` covers (default: the first optimizer's).
        flush_interval: seconds between background flushes (spool write + MLflow batch).
        on_divergence: ``"warn"`` (log it), ``"stop"`` (raise :class:`DivergenceError` at the next
            ``w.step``) or a callable receiving the divergence finding (background thread);
            not for a blow-up in the first steps the loss already came back from.
        reduce_loss: ``"mean"`` averages the loss across torch.distributed ranks (a collective:
            syncs every step). Only rank 0 writes either way.
        spool_dir: directory of the local spool (default ``$LRWATCH_SPOOL_DIR`` or
            ``~/.cache/lrwatch/spool``).
        analyze: run the live diagnosis (findings as tags and warnings).
        start_step: the step number of the first ``w.step``. Default: 0 in a new run; in a run
            that already holds lrwatch's loss (a resumed job joining it with ``run_id=`` or
            ``mlflow.start_run(run_id=...)``), the step after its last one. Resuming from a
            checkpoint, pass the checkpoint's optimizer step: steps the interrupted attempt
            logged after it are logged again, and the newer values are the ones read.

    Returns:
        a :class:`Watcher` (on torch.distributed ranks other than 0, a ``RankWatcher`` that
        records nothing); call ``w.step(loss)`` after each optimizer (and scheduler) step.

    Example::

        with lrwatch.watch(optimizer, experiment="resnet", scheduler=scheduler) as w:
            for x, y in loader:
                ...; optimizer.step(); scheduler.step()
                w.step(loss)
    """
    optimizers = [unwrapped(o) for o in as_list(optimizer)]
    if not optimizers:
        raise ValueError("watch() needs at least one optimizer")
    if flush_interval <= 0:
        raise ValueError("flush_interval must be positive (seconds)")
    if start_step is not None and (not isinstance(start_step, int) or start_step < 0):
        raise ValueError("start_step must be a non-negative int (an optimizer step number)")
    reduce = distributed.make_reducer(reduce_loss)
    if distributed.rank() != 0:
        return distributed.RankWatcher(reduce)
    already_watched = _warn_if_already_watched(optimizers)
    live = LiveDiagnosis(on_divergence) if analyze else None
    if run_id is not None:
        uri, owns_run = resolve_tracking_uri(tracking_uri), False
    else:
        run_id, uri, owns_run = _active_run(tracking_uri)
    if run_id is not None and not already_watched:
        _warn_if_run_shared(run_id)
    sink = MlflowSink(uri)
    tags = {keys.TAG_VERSION: __version__}

    def create_run() -> str:
        return sink.create_run(experiment, run_name, tags)

    refused = unreachable = None
    if run_id is None:
        try:
            run_id = create_run()
        except Exception as exc:  # noqa: BLE001 - a down server costs buffering, not the run
            if is_permanent(exc):
                refused = exc  # the writer says so, naming the spool that keeps every step
            else:
                # An InputError already names the store (password hidden); others as the writer
                # words an outage later in the run.
                unreachable = (
                    str(exc)
                    if isinstance(exc, InputError)
                    else f"tracking store unavailable ({short_error(exc, uri)})"
                )
    header = {
        "tracking_uri": uri,
        "run_id": run_id,
        "experiment": experiment,
        "run_name": run_name,
        "created_ms": int(time.time() * 1000),
        # Whether lrwatch started the run: only then may `lrwatch import` end it.
        "owns_run": owns_run,
    }
    spool = SpoolWriter(spool_dir, header)
    if unreachable is not None:  # the writer's first failure then says nothing more
        log.warning("lrwatch: %s; buffering to %s and retrying", unreachable, spool.where)
    writer = Writer(
        deque(), sink, spool, run_id=run_id, create_run=create_run,
        flush_interval=flush_interval, live=live, outage_reported=unreachable is not None,
    )  # fmt: skip
    if refused is not None:
        writer.refuse(refused)
    if isinstance(scheduler, (list, tuple)):
        scheduler = [unwrapped(s, scheduler=True) for s in scheduler]
    elif scheduler is not None:
        scheduler = unwrapped(scheduler, scheduler=True)
    all_params = optimizer_params(optimizers, scheduler)
    all_params.update({str(k): str(v) for k, v in (params or {}).items()})
    writer.add("params", all_params)
    if not owns_run:
        writer.add("tags", tags)
    grad_params = None
    if grad_norm:
        source = model.parameters() if model is not None else _optimizer_params(optimizers[0])
        grad_params = list(source)
    if not owns_run and run_id is not None:
        start_step = _join_at(sink, writer, run_id, start_step)
    watcher = Watcher(
        optimizers, writer, grad_params=grad_params, reduce=reduce, start_step=start_step or 0
    )
    watcher._writer_owns_run = owns_run
    writer.start()
    lifecycle.register(watcher)
    return watcher


def _warn_if_already_watched(optimizers: list) -> bool:
    """One warning when an open watcher already watches one of ``optimizers``: a notebook cell
    run again (or after an interrupt) makes a new watcher while the first, never closed, keeps
    its run RUNNING - and the dashboard following it live - until the kernel exits. Returns
    whether it warned."""
    for earlier in lifecycle.open_watchers():
        if earlier.watches_any(optimizers):
            log.warning(
                "lrwatch: this optimizer is already watched by an open watcher (run %s, %d "
                "steps); its run stays RUNNING until that watcher is closed (w.close(), or "
                "`with lrwatch.watch(...) as w:`) or the process exits",
                earlier.run_id,
                earlier.step_count,
            )
            return True
    return False


def _warn_if_run_shared(run_id: str) -> None:
    """One warning when an open watcher of this process already logs into ``run_id`` (a GAN's
    two optimizers watched one at a time inside one ``mlflow.start_run()``): both would write
    the loss and ``lr`` at the same step numbers, and readers keep one value a step."""
    for earlier in lifecycle.open_watchers():
        if earlier.open_in_this_process and earlier.run_id == run_id:
            log.warning(
                "lrwatch: another open watcher (%d steps so far) is already logging into run %s; "
                "this one writes the same '%s' and '%s' at the same step numbers, so the two "
                "curves mix. Watch all the optimizers with one lrwatch.watch([opt_a, opt_b]) "
                "(their LRs go to '%s', ...) and log any other loss with w.log(name=value)",
                earlier.step_count,
                run_id,
                keys.LOSS,
                keys.LR,
                keys.lr_key(0, optimizer=1),
            )
            return


def _active_run(tracking_uri: str | None) -> tuple[str | None, str, bool]:
    """(run id, tracking URI, whether lrwatch owns the run)."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and tracking_uri is None:
        return active.info.run_id, mlflow.get_tracking_uri(), False
    return None, resolve_tracking_uri(tracking_uri), True


def _join_at(sink: MlflowSink, writer: Writer, run_id: str, start_step: int | None) -> int:
    """The first step to log into an existing run: ``start_step``, else the step after the last
    loss lrwatch logged there (0 if none), so a resumed job continues the curve instead of
    writing over its start. A resume that logs steps again (from a checkpoint before the last
    logged step) tags the run, so a dashboard that cached those steps reads them again."""
    try:
        landed = sink.latest_landed(run_id).get(keys.LOSS)
    except Exception as exc:  # noqa: BLE001 - a down store costs the numbering hint, not the run
        if start_step is None:
            log.warning(
                "lrwatch: cannot read the last step of run %s (%s); numbering from 0 - pass "
                "start_step= when resuming",
                run_id,
                short_error(exc, sink.tracking_uri),
            )
        return start_step or 0
    last = None if landed is None else landed[0]
    if start_step is None:
        start_step = 0 if last is None else last + 1
        if last is not None:
            log.info("lrwatch: run %s already has steps up to %d; continuing at %d",
                     run_id, last, start_step)  # fmt: skip
    elif last is not None and start_step <= last:
        resumed = {
            "step": start_step,
            "earlier_last_step": last,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        writer.add("tags", {keys.TAG_RESUMED: json.dumps(resumed)})
        log.info("lrwatch: logging steps %d-%d of run %s again", start_step, last, run_id)
    return start_step


def _optimizer_params(optimizer):
    for group in optimizer.param_groups:
        yield from group["params"]
