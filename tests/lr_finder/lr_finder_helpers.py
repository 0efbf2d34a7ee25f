"""Helpers for the LR-finder tests: a real tiny model, optimizer and batches from lrwatch.tasks."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import torch

from lrwatch.tasks import TrainConfig, make_optimizer, make_task


def task_setup(task="mlp_regression", optimizer="sgd", momentum=0.9, seed=0, warm_steps=3, lr=0.01):
    """(model, optimizer, loss_fn, endless batches) after a few real training steps.

    The warm-up steps fill the optimizer's state (momentum buffers, Adam moments), so a test of
    state restoration has something to restore.
    """
    config = TrainConfig(task=task, optimizer=optimizer, momentum=momentum, lr=lr, seed=seed)
    torch.manual_seed(seed)
    t = make_task(task)
    model = t.make_model()
    opt = make_optimizer(model.parameters(), config)
    batches = t.batches(torch.Generator().manual_seed(seed))
    for inputs, targets in itertools.islice(batches, warm_steps):
        opt.zero_grad()
        t.loss_fn(model(inputs), targets).backward()
        opt.step()
    return model, opt, t.loss_fn, batches


def snapshot(model, optimizer):
    """Deep copies of both state dicts, to compare with after a range test."""
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())


def assert_same_state(before, model, optimizer):
    model_before, optimizer_before = before
    model_after = model.state_dict()
    assert model_before.keys() == model_after.keys()
    for key, value in model_before.items():
        assert torch.equal(value, model_after[key]), key  # bit-identical, not approximately
    assert_same_tree(optimizer_before, optimizer.state_dict())


def assert_same_tree(a, b, path="optimizer"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_tree(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, path


def final_loss(run) -> float:
    """Mean loss over the last 10% of steps; inf when the run diverged or stopped short."""
    values = run.loss.values
    steps = int(run.params["steps"])
    if values.size < steps or not np.all(np.isfinite(values)):
        return math.inf
    return float(values[-max(steps // 10, 1) :].mean())


STEEPEST_LOG_LR = -3.0  # the sigmoid's inflection: where the loss falls fastest per decade


def analytic_curve(n=140, noise=0.0, seed=0):
    """A range test in closed form: a sigmoid descent in log10(lr) centred on 1e-3, then blow-up.

    The descent falls fastest exactly at log10(lr) = -3; (lr / 0.3)^2 makes the loss rise again
    well after it (negligible at 1e-3), so the minimum lies between 1e-2 and 0.3.
    """
    lrs = np.geomspace(1e-7, 10.0, n)
    x = np.log10(lrs)
    losses = 1.0 + 2.0 / (1.0 + np.exp((x - STEEPEST_LOG_LR) / 0.4)) + (lrs / 0.3) ** 2
    if noise:
        losses = losses * (1 + noise * np.random.default_rng(seed).standard_normal(n))
    return lrs, losses


def fastai_valley_index(losses):
    """fastai's ``valley`` (fastai.callback.schedule), transcribed literally as the reference."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)
