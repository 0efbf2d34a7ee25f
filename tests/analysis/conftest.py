"""Fixtures shared by the analysis tests (detectors and analyze()).

Detector fixtures are prefixed ``detectors_``. Real runs use seeds 7-9, which no quality set
(``benchmarks/labelled_runs.py``: tuning pool or final held-out) uses.
"""

from __future__ import annotations

import functools

import pytest


def lrs_used(make, *, steps: int, lr: float):
    """The LR each optimizer step used under the real torch scheduler ``make(optimizer)``."""
    import numpy as np
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make(optimizer)
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return np.array(used)


def per_epoch_log(run, epochs: int):
    """A real run as a per-epoch log shows it: the mean loss of each of ``epochs`` equal
    stretches, the rate at the end of each, at the global step each ends on (prepared)."""
    from lrwatch.analysis.prepare import prepare_arrays

    loss = run.loss.values.reshape(epochs, -1).mean(axis=1)
    lr = run.lr.values.reshape(epochs, -1)[:, -1]
    steps = run.loss.steps.reshape(epochs, -1)[:, -1]
    return prepare_arrays(steps, loss, steps, lr)


@functools.cache
def _train_cached(**config):
    import torch

    from lrwatch.tasks import TrainConfig, train

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: threads only contend
    try:
        return train(TrainConfig(**config))
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def detectors_train():
    """``detectors_train(task=..., lr=..., ...)`` -> a real Run, trained once per session."""

    def train(**config):
        config.setdefault("steps", 1000)
        config.setdefault("seed", 7)
        config.setdefault("task_seed", 7)
        return _train_cached(**config)

    return train
