"""The default suggestion on real training: within 2x of the best final loss a full sweep finds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrwatch.lr_finder import find_lr_on_task
from lrwatch.tasks import TrainConfig, train
from tests.lr_finder.lr_finder_helpers import final_loss

# The benchmark's sweep: 12 rates ~2.6x apart, from far too small to divergent for every pair.
SWEEP = np.geomspace(1e-4, 3.0, 12)
STEPS = 500  # what the tasks are trained for in the samples and the benchmark


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead (and CI has 2 cores)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "optimizer", "momentum"),
    [
        ("mlp_regression", "sgd", 0.9),
        ("mlp_classification", "adam", 0.0),
        ("autoencoder", "sgd", 0.9),
        ("autoencoder", "adam", 0.0),
        ("quadratic", "adam", 0.0),
    ],
)
def test_default_suggestion_trains_within_2x_of_the_sweep_best(task, optimizer, momentum):
    config = TrainConfig(task=task, optimizer=optimizer, momentum=momentum, steps=STEPS, seed=0)
    sweep_best = min(final_loss(train(config.with_(lr=float(lr)))) for lr in SWEEP)
    suggestion = find_lr_on_task(config).suggestion  # the defaults: 200 steps, valley rule
    suggested = final_loss(train(config.with_(lr=suggestion.lr)))
    assert np.isfinite(sweep_best)
    assert suggested <= 2.0 * sweep_best, (suggestion, suggested, sweep_best)
