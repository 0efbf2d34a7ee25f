"""The training tasks behind the fixtures and benchmarks train for real, reproducibly."""

from __future__ import annotations

import math

import numpy as np


def test_the_char_lm_task_learns_its_text():
    # An untrained language model predicts every character about equally: its first loss is
    # near log(alphabet size); AdamW near its best rate then learns spelling and word order.
    import torch

    from lrwatch.tasks import TrainConfig, make_task, train

    config = TrainConfig(task="char_lm", optimizer="adamw", lr=1e-2, steps=300, batch_size=16)
    run = train(config)
    loss = run.loss.values
    inputs, targets = next(make_task("char_lm").batches(torch.Generator()))
    assert inputs.shape == targets.shape == (32, 32)
    assert (inputs[:, 1:] == targets[:, :-1]).all()  # the targets are the next characters
    alphabet = 27  # 26 letters and the space
    assert abs(loss[0] - math.log(alphabet)) < 0.5  # 3.55 against 3.30 here
    assert np.median(loss[-30:]) < 0.7 * loss[0]
    again = train(config).loss.values
    np.testing.assert_array_equal(loss, again)


def test_the_cnn_images_task_learns_its_classes():
    # 10 classes: an untrained classifier's first loss is near log(10); SGD with momentum near
    # its best rate then learns the shifted patterns, through convolutions with batch norm.
    import torch

    from lrwatch.tasks import TrainConfig, make_task, train

    config = TrainConfig(
        task="cnn_images", lr=0.1, momentum=0.9, weight_decay=5e-4, steps=300, batch_size=32
    )
    run = train(config)
    loss = run.loss.values
    task = make_task("cnn_images")
    images, labels = next(task.batches(torch.Generator()))
    assert images.shape == (32, 1, 16, 16) and labels.shape == (32,)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in task.make_model().modules())
    assert abs(loss[0] - math.log(10)) < 0.5
    assert np.median(loss[-30:]) < 0.7 * loss[0]
    again = train(config).loss.values
    np.testing.assert_array_equal(loss, again)
