"""Param groups at different rates: a recommendation that scales the LR names every group's."""

from __future__ import annotations

import pytest
import torch

import lrwatch
from lrwatch.analysis import analyze
from lrwatch.analysis.recommend_groups import SCALING_ACTIONS
from lrwatch.sources import load_run


def _train_body_and_head(tracking_uri: str, *, head_lr: float, body_lr: float = 0.01) -> str:
    """REAL SGD on a tiny regression MLP, its body and its head in two param groups, logged
    with lrwatch into the store; returns the run id."""
    torch.manual_seed(0)
    inputs = torch.randn(512, 8)
    targets = (inputs @ torch.randn(8, 1)).tanh() + 0.1 * torch.randn(512, 1)
    body = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh())
    head = torch.nn.Linear(32, 1)
    optimizer = torch.optim.SGD(
        [{"params": body.parameters(), "lr": body_lr}, {"params": head.parameters(), "lr": head_lr}]
    )
    batches = torch.Generator().manual_seed(0)
    with lrwatch.watch(optimizer, tracking_uri=tracking_uri, experiment="groups") as w:
        for _ in range(400):
            index = torch.randint(0, 512, (32,), generator=batches)
            loss = torch.nn.functional.mse_loss(head(body(inputs[index])), targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            w.step(loss)
        return w.run_id


def test_a_head_group_that_diverged_is_scaled_with_group_0(tracking_uri):
    # The head at 0.8 (the body at 0.01) trains for a while, then blows up. The advice used to
    # name only group 0's rate ("use 0.003"), leaving the head - the group at fault - unsaid.
    report = analyze(load_run(_train_body_and_head(tracking_uri, head_lr=0.8)))
    recommendation = report.recommendation
    assert recommendation.action == "decrease_lr"
    factor = recommendation.factor
    assert recommendation.suggested_lr == pytest.approx(0.01 * factor)
    assert recommendation.evidence["group_lrs"] == {"lr/pg1": pytest.approx(0.8 * factor)}
    assert recommendation.message.endswith(
        f"Scale every param group alike, keeping their ratios: lr {0.01 * factor:.3g}, "
        f"lr/pg1 {0.8 * factor:.3g}."
    )


def test_groups_at_one_rate_add_nothing(tracking_uri):
    # Groups split only for weight decay train at one rate: no words about groups.
    report = analyze(load_run(_train_body_and_head(tracking_uri, head_lr=0.002, body_lr=0.002)))
    assert report.recommendation.action in SCALING_ACTIONS  # slow at 0.002: raise it
    assert "group_lrs" not in report.recommendation.evidence
    assert "param group" not in report.recommendation.message
