"""The logger against a real SQLite MLflow store, fed by real PyTorch training."""

from __future__ import annotations

import json
import logging

import mlflow
import numpy as np
import pytest
import torch

import lrwatch
from lrwatch import keys
from lrwatch.tasks import TrainConfig
from tests.tracking.conftest import history, steps_of
from tests.tracking.tracking_loops import train_watched


def test_every_step_lands_once_with_the_lr_the_step_used(tracking_uri, spool_dir):
    config = TrainConfig(task="mlp_regression", lr=0.05, momentum=0.9, schedule="cosine", steps=300)
    w, losses, lrs = train_watched(
        config, {"experiment": "e", "run_name": "cosine", "flush_interval": 0.1}
    )
    loss_points = history(tracking_uri, w.run_id, keys.LOSS)
    lr_points = history(tracking_uri, w.run_id, keys.LR)
    assert [s for s, _ in loss_points] == list(range(300))
    assert [s for s, _ in lr_points] == list(range(300))
    np.testing.assert_allclose([v for _, v in loss_points], losses, rtol=1e-6)
    # The logged LR is the one each optimizer step used, even though the scheduler moves it after.
    assert [v for _, v in lr_points] == pytest.approx(lrs, rel=1e-12)
    assert lrs[0] > lrs[-1]  # the cosine schedule really moved it
    run = mlflow.MlflowClient(tracking_uri).get_run(w.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "cosine"
    assert run.data.params[keys.PARAM_OPTIMIZER] == "SGD"
    assert run.data.params[keys.PARAM_PREFIX_OPTIMIZER + "momentum"] == "0.9"
    assert float(run.data.params[keys.PARAM_BASE_LR]) == 0.05
    assert run.data.params[keys.PARAM_SCHEDULER] == "CosineAnnealingLR"
    assert run.data.tags[keys.TAG_VERSION] == lrwatch.__version__
    assert not list(spool_dir.iterdir())  # everything delivered: the spool is removed


def test_param_groups_grad_norm_extra_metrics_and_floats(tracking_uri, tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 1e-2}],
        lr=1e-3,
        betas=(0.8, 0.99),
        weight_decay=0.01,
    )
    x, y = torch.randn(256, 8), torch.randn(256, 1)
    norms = []
    with lrwatch.watch(optimizer, grad_norm=True, model=model) as w:
        for step in range(40):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            grads = [p.grad.reshape(-1) for p in model.parameters()]
            norms.append(float(torch.cat(grads).norm()))
            optimizer.step()
            w.step(float(loss) if step % 2 else loss)  # Python floats and tensors alike
            if step % 10 == 9:
                w.log(val_loss=float(loss) * 2, accuracy=torch.tensor(0.5))
    uri = tracking_uri
    assert steps_of(uri, w.run_id, keys.LOSS) == list(range(40))
    assert {v for _, v in history(uri, w.run_id, keys.lr_key(group=1))} == {1e-2}
    assert {v for _, v in history(uri, w.run_id, keys.LR)} == {1e-3}
    np.testing.assert_allclose(
        [v for _, v in history(uri, w.run_id, keys.GRAD_NORM)], norms, rtol=1e-5
    )
    assert steps_of(uri, w.run_id, "val_loss") == [9, 19, 29, 39]
    assert [v for _, v in history(uri, w.run_id, "accuracy")] == [0.5] * 4
    params = mlflow.MlflowClient(uri).get_run(w.run_id).data.params
    assert params["optimizer"] == "Adam"
    assert params["optimizer.betas"] == "(0.8, 0.99)"
    assert params["optimizer.weight_decay"] == "0.01"
    assert params["base_lr/pg1"] == "0.01"


def test_a_param_group_added_mid_run_gets_its_base_lr_param(tracking_uri):
    # Fine-tuning that unfreezes the backbone at step 20 adds its parameters as a new group:
    # its LR curve starts there, and its base LR was recorded nowhere.
    torch.manual_seed(0)
    head, backbone = torch.nn.Linear(8, 1), torch.nn.Linear(8, 8)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    with lrwatch.watch(optimizer, scheduler=scheduler, flush_interval=0.05) as w:
        for step in range(40):
            if step == 20:
                optimizer.add_param_group({"params": backbone.parameters(), "lr": 0.003})
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(head(backbone(x) if step >= 20 else x), y)
            loss.backward()
            optimizer.step()
            w.step(loss)
            scheduler.step()
    params = mlflow.MlflowClient(tracking_uri).get_run(w.run_id).data.params
    assert params["base_lr"] == "0.05" and params["base_lr/pg1"] == "0.003"
    assert steps_of(tracking_uri, w.run_id, keys.lr_key(group=1)) == list(range(20, 40))


def test_logs_into_an_active_run_with_autolog_and_leaves_it_open(tracking_uri, tmp_path):
    mlflow.autolog(disable=False, silent=True)
    try:
        config = TrainConfig(task="quadratic", optimizer="adam", lr=0.01, steps=60)
        with mlflow.start_run(run_name="mine") as active:
            mlflow.log_param("batch", 32)
            w, _, _ = train_watched(config, {"params": {"note": "x"}})
            assert w.run_id == active.info.run_id
            client = mlflow.MlflowClient(tracking_uri)
            assert client.get_run(w.run_id).info.status == "RUNNING"  # still the user's to end
        run = client.get_run(w.run_id)
    finally:
        mlflow.autolog(disable=True)
    assert run.info.status == "FINISHED"
    assert run.data.params["batch"] == "32" and run.data.params["note"] == "x"
    assert steps_of(tracking_uri, w.run_id, keys.LOSS) == list(range(60))


def test_several_optimizers_and_gradient_accumulation(tracking_uri, tmp_path):
    torch.manual_seed(0)
    encoder, head = torch.nn.Linear(6, 6), torch.nn.Linear(6, 1)
    opt_a = torch.optim.SGD(encoder.parameters(), lr=0.02)
    opt_b = torch.optim.RMSprop(head.parameters(), lr=0.003)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt_a, gamma=0.9)
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    with lrwatch.watch([opt_a, opt_b], scheduler=sched) as w:
        for _ in range(12):
            for micro in range(4):  # four micro-batches per optimizer step
                chunk = slice(micro * 16, (micro + 1) * 16)
                loss = torch.nn.functional.mse_loss(head(encoder(x[chunk])), y[chunk]) / 4
                loss.backward()
            opt_a.step(), opt_b.step()
            opt_a.zero_grad(), opt_b.zero_grad()
            sched.step()
            w.step(loss)
    lrs_a = [v for _, v in history(tracking_uri, w.run_id, keys.lr_key())]
    lrs_b = [v for _, v in history(tracking_uri, w.run_id, keys.lr_key(optimizer=1))]
    assert steps_of(tracking_uri, w.run_id, keys.LOSS) == list(range(12))
    assert lrs_a == pytest.approx([0.02 * 0.9**k for k in range(12)])
    assert lrs_b == [0.003] * 12
    params = mlflow.MlflowClient(tracking_uri).get_run(w.run_id).data.params
    assert (params["optimizer"], params["optimizer/opt1"]) == ("SGD", "RMSprop")


def test_a_flush_bigger_than_one_request_is_split(tracking_uri, tmp_path):
    # 1500 steps x 3 metrics reach the writer in one flush: 4500 rows, at most 1000 per request.
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD(
        [{"params": [param]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=0.1
    )
    with lrwatch.watch(optimizer, flush_interval=3600) as w:
        for step in range(1500):
            w.step(1.0 / (step + 1))
    assert steps_of(tracking_uri, w.run_id, keys.LOSS) == list(range(1500))
    assert len(steps_of(tracking_uri, w.run_id, keys.lr_key(group=1))) == 1500


def test_non_finite_losses_are_kept(tracking_uri, tmp_path):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with lrwatch.watch(optimizer, analyze=False) as w:
        for value in (1.0, float("inf"), float("nan")):
            w.step(torch.tensor(value))
    values = [v for _, v in history(tracking_uri, w.run_id, keys.LOSS)]
    assert values[0] == 1.0 and values[1] >= 1.7e308 and np.isnan(values[2])


def test_a_logger_error_never_reaches_the_loop_outside_strict_mode(
    tracking_uri, tmp_path, monkeypatch, caplog
):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    with caplog.at_level(logging.WARNING, logger="lrwatch"), lrwatch.watch(optimizer) as w:
        w.step(0.9)
        for _ in range(5):
            w.step("not a loss")  # a bug in the caller, at every step: training goes on
        w.step(0.5)
    # One warning when it first happens and one count at close, not a line per step.
    warned = [r.getMessage() for r in caplog.records if "logger error" in r.getMessage()]
    assert len(warned) == 2 and "happened at 5 steps" in warned[1]
    # The steps it could not record are missing; the one after keeps its true number.
    assert steps_of(tracking_uri, w.run_id, keys.LOSS) == [0, 6]
    monkeypatch.setenv("LRWATCH_STRICT", "1")
    with pytest.raises(ValueError), lrwatch.watch(optimizer) as w2:
        w2.step("not a loss")


def _train_with_unrecordable_losses(bad_loss, caplog, *, val_loss=False):
    """A linear model trained 120 steps with ``on_divergence="stop"``, passing ``bad_loss()``
    instead of the loss at steps 40-59 (and, with ``val_loss``, ``w.log(val_loss=None)`` at
    step 50). Training must go on: the logger's promise, not its strict test mode."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    watched = lrwatch.watch(optimizer, on_divergence="stop", flush_interval=0.05)
    with caplog.at_level(logging.WARNING, logger="lrwatch"), watched as w:
        for step in range(120):
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            w.step(bad_loss() if 40 <= step < 60 else loss)
            if val_loss:
                w.log(val_loss=None if step == 50 else float(loss))
    return w


def test_a_none_loss_is_an_error_not_a_nan_that_stops_training(tracking_uri, caplog, monkeypatch):
    """``w.step(outputs.loss)`` where the model was given no labels passes None. It was logged
    as NaN, so the live analysis found a divergence and ``on_divergence="stop"`` ended a run
    that was training fine."""
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    w = _train_with_unrecordable_losses(lambda: None, caplog, val_loss=True)
    assert "divergence" not in {f.kind for f in w.findings}
    assert steps_of(tracking_uri, w.run_id, keys.LOSS) == [*range(40), *range(60, 120)]
    assert len(steps_of(tracking_uri, w.run_id, "val_loss")) == 119
    warned = [r.getMessage() for r in caplog.records if "logger error" in r.getMessage()]
    assert "w.step got None, not a loss" in warned[0] and "w.log got None for val_loss" in warned[1]


def test_a_device_loss_that_cannot_be_read_is_left_out_not_logged_as_nan(
    tracking_uri, caplog, monkeypatch
):
    """A queued device tensor that cannot be read at the flush (freed or overwritten since)
    was logged as NaN: the live analysis saw a divergence, and ``on_divergence="stop"`` would
    stop a run that was training fine. Meta tensors, which hold no data, stand in for it."""
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    w = _train_with_unrecordable_losses(lambda: torch.empty((), device="meta"), caplog)
    assert "divergence" not in {f.kind for f in w.findings}
    assert steps_of(tracking_uri, w.run_id, keys.LOSS) == [*range(40), *range(60, 120)]
    assert steps_of(tracking_uri, w.run_id, keys.LR) == list(range(120))
    warned = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert len(warned) == 1  # once, however many flushes the unreadable steps span


def test_a_per_sample_loss_is_logged_as_its_mean_with_one_warning(tracking_uri, caplog):
    # reduction="none" handed to w.step by mistake: before, every step was a logger error (on a
    # GPU, the first sample's loss would have been logged).
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    means = []
    with caplog.at_level(logging.WARNING, logger="lrwatch"), lrwatch.watch(optimizer) as w:
        for _ in range(30):
            optimizer.zero_grad()
            per_sample = torch.nn.functional.mse_loss(model(x), y, reduction="none")
            per_sample.mean().backward()
            optimizer.step()
            w.step(per_sample)
            means.append(float(per_sample.mean()))
    points = history(tracking_uri, w.run_id, keys.LOSS)
    assert [s for s, _ in points] == list(range(30))
    np.testing.assert_allclose([v for _, v in points], means, rtol=1e-6)
    assert sum("shape (64, 1)" in r.getMessage() for r in caplog.records) == 1


def test_numpy_losses_of_one_element_or_many_are_logged(tracking_uri, caplog):
    # numpy 2 converts only 0-d arrays with float(): a loss of shape (1,) was a logger error at
    # every step and never logged; a per-sample array is logged as its mean, like a tensor.
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    losses = [np.array([0.5]), np.float32(0.25), np.array(0.125), [1.0, 3.0], np.full((4, 2), 4.0)]
    with caplog.at_level(logging.WARNING, logger="lrwatch"), lrwatch.watch(optimizer) as w:
        for loss in losses:
            optimizer.step()
            w.step(loss)
            w.log(val_loss=np.array([0.75]))  # the same for w.log: it was logged as NaN
    points = history(tracking_uri, w.run_id, keys.LOSS)
    assert points == [(0, 0.5), (1, 0.25), (2, 0.125), (3, 2.0), (4, 4.0)]
    assert [v for _, v in history(tracking_uri, w.run_id, "val_loss")] == [0.75] * 5
    messages = [r.getMessage() for r in caplog.records if r.name == "lrwatch"]
    assert messages == [
        "lrwatch: w.step got a loss array of shape (2,), not one number; logging its mean (pass "
        "the scalar loss you call backward() on to silence this)"
    ]


def test_w_log_records_a_tensor_as_it_was_and_refuses_what_is_not_one_number(
    tracking_uri, caplog, monkeypatch
):
    """A running total passed to ``w.log`` and then reset in place (``zero_()``, or ``-=`` as
    the Hugging Face Trainer resets ``tr_loss``) was read at the flush: every value logged was
    the reset one. Text and per-sample tensors were logged as NaN and as their first element."""
    monkeypatch.setenv("LRWATCH_STRICT", "0")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    running = torch.zeros(())
    with caplog.at_level(logging.WARNING, logger="lrwatch"), lrwatch.watch(optimizer) as w:
        for step in range(6):
            running += step + 1.0
            optimizer.step()
            w.step(0.5)
            if step % 2 == 1:
                w.log(running=running, note="ok", per_sample=torch.ones(3), epoch=step // 2)
                running -= running
    assert history(tracking_uri, w.run_id, "running") == [(1, 3.0), (3, 7.0), (5, 11.0)]
    assert history(tracking_uri, w.run_id, "epoch") == [(1, 0.0), (3, 1.0), (5, 2.0)]
    assert steps_of(tracking_uri, w.run_id, "note") == []
    assert steps_of(tracking_uri, w.run_id, "per_sample") == []
    warned = [r.getMessage() for r in caplog.records if "logger error" in r.getMessage()]
    assert "w.log got 'ok' for note: not logged" in warned[0]
    assert "w.log got a Tensor of shape (3,), not one number, for per_sample" in warned[1]


def test_a_device_loss_is_queued_as_a_copy_the_script_cannot_change():
    """A loss on a device is read at the flush, up to a second after ``w.step``. Queued as the
    script's own tensor (detached, sharing its storage), an accumulator reset in place after
    ``w.step`` - or a CUDA graph output that the next replay overwrites - changed the value
    logged. A meta tensor takes the device path here (CPU tensors are read at ``w.step``); its
    version counter shows whether the queued tensor shares the script's storage."""
    from lrwatch.tracking.watcher import Watcher

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    w = Watcher([optimizer], writer=None)
    accumulated = torch.zeros((), device="meta")
    w.step(accumulated)
    w.log(running=accumulated)
    accumulated.zero_()  # the script resets its accumulator for the next step
    queued_loss, queued_metric = w._queue[0][2], w._queue[1][2]["running"]
    assert queued_loss.device.type == "meta" and queued_loss._version == 0
    assert queued_metric.device.type == "meta" and queued_metric._version == 0
    w.close()


def test_a_tensor_lr_is_logged_with_the_value_each_step_used(tracking_uri):
    # A tensor LR (torch.compile'd or capturable optimizers) is updated in place by the
    # scheduler: logging the tensor itself recorded the last step's rate at every step.
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.9**s)
    used = []
    with lrwatch.watch(optimizer, scheduler=scheduler, flush_interval=0.05) as w:
        for _ in range(20):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            used.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()
            scheduler.step()
            w.step(loss)
    logged = [value for _, value in history(tracking_uri, w.run_id, keys.LR)]
    assert logged == pytest.approx(used) and used[0] != pytest.approx(used[-1])


def test_a_compiled_optimizer_step_is_not_broken_by_the_lr_snapshot(tracking_uri):
    # PyTorch's recipe for a compiled optimizer: a tensor LR, and step() + scheduler.step()
    # under torch.compile. Traced, lrwatch's pre-hook broke the graph at its Tensor.item(), with
    # a 25-line warning through lrwatch's code. (backend="eager": the tracing is what matters.)
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.1, total_iters=10)

    @torch.compile(backend="eager")
    def step():
        optimizer.step()
        scheduler.step()

    used = []
    with lrwatch.watch(optimizer, flush_interval=0.05) as w:
        for _ in range(12):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            used.append(float(optimizer.param_groups[0]["lr"]))
            step()
            w.step(loss)
    breaks = [reason.splitlines()[0] for reason in counters["graph_break"]]
    assert not [reason for reason in breaks if "item()" in reason], breaks
    logged = [value for _, value in history(tracking_uri, w.run_id, keys.LR)]
    assert logged == pytest.approx(used) and used[0] != pytest.approx(used[-1])


def test_queued_lr_copies_are_converted_in_one_batch_per_flush():
    # What the watcher queues for a tensor LR on a device: a copy per step (here on the CPU,
    # the same code path), read on the writer thread together with the losses.
    from lrwatch.tracking.records import RowBuilder

    items = [(k, 1000.0 + k, torch.tensor(1.0 / (k + 1)), ((torch.tensor(0.1 * k), 2),), None)
             for k in range(3)]  # fmt: skip
    rows, points = RowBuilder().build(items)
    by_key: dict[str, list[float]] = {}
    for key, value, _, _ in rows:
        by_key.setdefault(key, []).append(value)
    assert by_key[keys.LR] == pytest.approx([0.0, 0.1, 0.2])
    assert by_key[keys.lr_key(1)] == [2.0, 2.0, 2.0] and type(by_key[keys.lr_key(1)][0]) is float
    assert [p[2] for p in points] == pytest.approx([0.0, 0.1, 0.2])


def test_bad_arguments_fail_before_training_starts(tracking_uri):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError):
        lrwatch.watch(optimizer, on_divergence="explode")
    with pytest.raises(ValueError):
        lrwatch.watch(optimizer, flush_interval=0)
    with pytest.raises(ValueError):
        lrwatch.watch([])
    for bad in (-1, 2.5, "10"):
        with pytest.raises(ValueError, match="start_step"):
            lrwatch.watch(optimizer, start_step=bad)


def _log_steps(optimizer, losses, **watch_kwargs):
    """Log ``losses`` as consecutive steps; the watcher's run id."""
    with lrwatch.watch(optimizer, flush_interval=0.05, **watch_kwargs) as w:
        w.log(epoch=1.0)  # before the first step: at the first step's number
        for loss in losses:
            optimizer.step()
            w.step(loss)
        assert w.step_count == len(losses)
    return w.run_id


def test_a_resumed_run_continues_its_curve_instead_of_writing_over_its_start(tracking_uri, caplog):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    run_id = _log_steps(optimizer, [1.0] * 50, experiment="resume")
    assert steps_of(tracking_uri, run_id, "epoch") == [0]
    # Joining the run again (a restarted job) continues after its last step...
    with caplog.at_level(logging.INFO, logger="lrwatch"):
        _log_steps(optimizer, [2.0] * 30, run_id=run_id)
    assert "already has steps up to 49; continuing at 50" in caplog.text
    assert steps_of(tracking_uri, run_id, keys.LOSS) == list(range(80))
    # ... so does a second watcher inside one active run (two training phases) ...
    mlflow.set_experiment("resume")
    with mlflow.start_run(run_id=run_id):
        _log_steps(optimizer, [3.0] * 20)
    assert steps_of(tracking_uri, run_id, keys.LOSS) == list(range(100))
    # ... and from a checkpoint at step 60, the steps after it are logged again and read back
    # with their newer values: the interrupted attempt's 60-99 are superseded, nothing is lost.
    client = mlflow.MlflowClient(tracking_uri)
    assert keys.TAG_RESUMED not in client.get_run(run_id).data.tags  # nothing logged again
    _log_steps(optimizer, [4.0] * 50, run_id=run_id, start_step=60)
    resumed = json.loads(client.get_run(run_id).data.tags[keys.TAG_RESUMED])
    assert (resumed["step"], resumed["earlier_last_step"]) == (60, 99)  # readers re-read these
    assert steps_of(tracking_uri, run_id, "epoch") == [0, 50, 60, 80]
    run = lrwatch.load_run(f"runs:/{run_id}", tracking_uri=tracking_uri)
    assert run.loss.steps.tolist() == list(range(110))
    assert run.loss.values.tolist() == [1.0] * 50 + [2.0] * 10 + [4.0] * 50


def test_a_deleted_experiment_is_restored_and_the_run_lands(tracking_uri, spool_dir):
    """A deleted experiment refuses new runs; the logger restores it instead of retrying forever."""
    client = mlflow.MlflowClient(tracking_uri)
    client.delete_experiment(client.create_experiment("gone"))
    config = TrainConfig(task="quadratic", lr=0.05, steps=40)
    w, losses, _ = train_watched(config, {"experiment": "gone", "flush_interval": 0.1})
    assert [s for s, _ in history(tracking_uri, w.run_id, keys.LOSS)] == list(range(40))
    assert client.get_experiment_by_name("gone").lifecycle_stage == "active"
    assert not list(spool_dir.iterdir())  # delivered, not left waiting for a retry


def test_an_optimizer_prepared_by_accelerate_logs_the_lr_each_step_used(tracking_uri):
    # Accelerator.prepare (and so the Hugging Face Trainer) hands out an AcceleratedOptimizer,
    # which never runs torch's step hooks: the LR was read after scheduler.step() moved it, so
    # each step-decay drop was logged one step early, and the params named the wrappers.
    from accelerate import Accelerator

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    assert type(optimizer).__name__ == "AcceleratedOptimizer"
    used = []
    with lrwatch.watch(optimizer, scheduler=scheduler, flush_interval=0.05) as w:
        for _ in range(12):
            x = torch.randn(8, 4)
            loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
            optimizer.zero_grad()
            accelerator.backward(loss)
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            w.step(loss)
    logged = [value for _, value in history(tracking_uri, w.run_id, keys.LR)]
    assert logged == pytest.approx(used) and used[0] != used[-1]
    params = mlflow.MlflowClient(tracking_uri).get_run(w.run_id).data.params
    assert (params[keys.PARAM_OPTIMIZER], params[keys.PARAM_SCHEDULER]) == ("SGD", "StepLR")
    assert params[keys.PARAM_PREFIX_OPTIMIZER + "momentum"] == "0.9"


def test_watching_an_optimizer_an_open_watcher_watches_warns_once(tracking_uri, caplog):
    """A notebook cell run again (or after an interrupt) makes a second watcher of the same
    optimizer; the first, never closed, kept its run RUNNING - and the dashboard following it
    live - until the kernel exited, without a word."""
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def train(w, steps: int) -> None:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = model(torch.randn(8, 4)).pow(2).mean()
            loss.backward()
            optimizer.step()
            w.step(loss)

    def already_watched() -> list[str]:
        return [r.getMessage() for r in caplog.records if "already watched" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        first = lrwatch.watch(optimizer, experiment="notebook")
        train(first, 5)
        second = lrwatch.watch(optimizer, experiment="notebook")  # the cell, run again
        assert already_watched() == [
            f"lrwatch: this optimizer is already watched by an open watcher (run "
            f"{first.run_id}, 5 steps); its run stays RUNNING until that watcher is closed "
            "(w.close(), or `with lrwatch.watch(...) as w:`) or the process exits"
        ]
        train(second, 5)
        first.close()
        second.close()
        # Closed watchers, and an open one of another optimizer, are no reason to warn.
        other = lrwatch.watch(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1))
        with lrwatch.watch(optimizer, experiment="notebook") as third:
            train(third, 5)
        other.close()
    assert len(already_watched()) == 1
    client = mlflow.MlflowClient(tracking_uri)
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(second.run_id, keys.LOSS)) == 5


def test_a_second_watcher_writing_into_the_same_run_warns_and_one_watcher_keeps_both(
    tracking_uri, caplog
):
    """A GAN watched one optimizer at a time inside one ``mlflow.start_run()``: both watchers
    wrote 'train/loss' and 'lr' at steps 0, 1, 2..., so the run held two values a step, readers
    kept one of them, and the generator's and discriminator's curves mixed (a 'cyclical'
    schedule of the two rates) without a word but a refused 'optimizer' param. The warning
    names the way that keeps both: one watcher of both optimizers, the other loss via w.log."""
    torch.manual_seed(0)
    generator, critic = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    opt_d = torch.optim.SGD(critic.parameters(), lr=0.1)

    def gan_step() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(8, 4)
        loss_d = critic(generator(x).detach()).pow(2).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = -critic(generator(x)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_g, loss_d

    def shared_run_warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "already logging into" in r.getMessage()]

    mlflow.set_tracking_uri(tracking_uri)
    with caplog.at_level(logging.WARNING, logger="lrwatch"):
        with mlflow.start_run() as run, lrwatch.watch(opt_g) as w_g:
            for _ in range(3):
                w_g.step(gan_step()[0])
            w_d = lrwatch.watch(opt_d)
            w_d.close()
        assert shared_run_warnings() == [
            f"lrwatch: another open watcher (3 steps so far) is already logging into run "
            f"{run.info.run_id}; this one writes the same 'train/loss' and 'lr' at the same "
            "step numbers, so the two curves mix. Watch all the optimizers with one "
            "lrwatch.watch([opt_a, opt_b]) (their LRs go to 'lr/opt1', ...) and log any other "
            "loss with w.log(name=value)"
        ]
        # The advised way: one watcher, the generator's loss as the loss, the critic's beside it.
        with mlflow.start_run() as run, lrwatch.watch([opt_g, opt_d]) as w:
            losses_d = []
            for _ in range(5):
                loss_g, loss_d = gan_step()
                w.step(loss_g)
                w.log(critic_loss=loss_d)
                losses_d.append(loss_d.item())
        # Separate runs at once (two jobs of a sweep in one process) are no reason to warn.
        with lrwatch.watch(opt_g, experiment="a") as one, lrwatch.watch(opt_d, experiment="b"):
            one.step(1.0)
    assert len(shared_run_warnings()) == 1
    run_id = run.info.run_id
    assert [v for _, v in history(tracking_uri, run_id, keys.LR)] == [1e-3] * 5
    assert [v for _, v in history(tracking_uri, run_id, "lr/opt1")] == [0.1] * 5
    assert steps_of(tracking_uri, run_id, keys.LOSS) == list(range(5))
    logged_d = [v for _, v in history(tracking_uri, run_id, "critic_loss")]
    assert logged_d == pytest.approx(losses_d, rel=1e-6)
