"""Ultralytics YOLO logs its training loss only as parts (box, cls, dfl): their sum is the loss.

The fixture is real training shaped like a YOLO detector's: a shared trunk and three heads whose
losses are weighted by Ultralytics' default gains (box 7.5, cls 0.5, dfl 1.5) and summed for the
backward pass, with the per-epoch means of the weighted parts written as ``results.csv`` is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lrwatch.run import Run, Series
from lrwatch.sources import load_run
from lrwatch.sources.files import read_notes
from tests.sources.conftest import log_run_to_mlflow

PARTS = ("box_loss", "cls_loss", "dfl_loss")
GAINS = (7.5, 0.5, 1.5)


def _train_like_ultralytics(epochs: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(per-epoch mean of each weighted part, per-epoch mean of their sum, the LR per epoch)."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(512, 16)
    targets = (x[:, :4] * 0.5 + 0.1 * torch.randn(512, 4), (x[:, 4:7] > 0).float(), x[:, 7:9])
    trunk = torch.nn.Linear(16, 32)
    heads = [torch.nn.Linear(32, 4), torch.nn.Linear(32, 3), torch.nn.Linear(32, 2)]
    params = [p for module in (trunk, *heads) for p in module.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1 - 0.99 * e / epochs)
    losses = (
        torch.nn.functional.mse_loss,
        torch.nn.functional.binary_cross_entropy_with_logits,
        torch.nn.functional.mse_loss,
    )
    parts, totals, lrs = [], [], []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        epoch_parts = []
        for batch in range(16):
            hidden = torch.relu(trunk(x[batch::16]))
            loss = torch.stack(
                [
                    gain * fn(head(hidden), target[batch::16])
                    for gain, fn, head, target in zip(GAINS, losses, heads, targets)
                ]
            )
            optimizer.zero_grad()
            loss.sum().backward()  # Ultralytics: loss.sum() * batch_size
            optimizer.step()
            epoch_parts.append(loss.detach())
        means = torch.stack(epoch_parts).mean(0)
        parts.append(means.tolist())
        totals.append(float(means.sum()))
        scheduler.step()
    return np.array(parts), np.array(totals), np.array(lrs)


@pytest.fixture(scope="module")
def trained():
    return _train_like_ultralytics()


def _write_results_csv(path, parts: np.ndarray, lrs: np.ndarray) -> None:
    """As YOLOv8's first releases wrote it: every field right-aligned in 23 characters, %.5g
    values, epochs from 1, validation metrics beside the training losses."""
    names = ["epoch", *(f"train/{p}" for p in PARTS), "metrics/mAP50(B)"]
    names += [*(f"val/{p}" for p in PARTS), "lr/pg0", "lr/pg1", "lr/pg2"]
    lines = [",".join(f"{name:>23s}" for name in names)]
    for epoch, (row, lr) in enumerate(zip(parts, lrs), start=1):
        values = [epoch, *row, 0.01 * epoch, *(1.1 * row), lr, lr, lr]
        lines.append(",".join(f"{value:23.5g}" for value in values))
    path.write_text("\n".join(lines) + "\n")


def test_the_loss_of_a_results_csv_is_the_sum_of_its_parts(tmp_path, trained):
    """Before: 'train/box_loss' was analysed as the loss (the first name ending in 'loss')."""
    parts, totals, lrs = trained
    _write_results_csv(tmp_path / "results.csv", parts, lrs)
    run = load_run(str(tmp_path / "results.csv"))
    assert run.loss_key == "train/loss" and run.lr_key == "lr/pg0"
    assert run.loss.steps.tolist() == list(range(1, 41))
    # The sum of the parts as written (5 significant digits each) is the loss trained on.
    np.testing.assert_allclose(run.loss.values, totals, rtol=1e-4)
    assert read_notes(run)[0] == (
        "the loss 'train/loss' is the sum of the 3 loss parts logged (box_loss, cls_loss, "
        "dfl_loss), as Ultralytics trains on it (--loss-key train/box_loss reads one part alone)"
    )
    one_part = load_run(str(tmp_path / "results.csv"), loss_key="train/box_loss")
    np.testing.assert_allclose(one_part.loss.values, parts[:, 0], rtol=1e-4)
    assert not any("sum" in note for note in read_notes(one_part))


def test_the_command_reports_on_the_summed_loss(tmp_path, trained):
    parts, _, lrs = trained
    _write_results_csv(tmp_path / "results.csv", parts, lrs)
    done = subprocess.run(
        [sys.executable, "-m", "lrwatch.cli", "analyze", str(tmp_path / "results.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "loss 'train/loss', lr 'lr/pg0'" in done.stdout
    assert "is the sum of the 3 loss parts logged" in done.stdout


def test_ultralytics_mlflow_logging_reads_the_same_sum(tracking_uri, trained):
    """Its MLflow callback logs the same keys at step=epoch."""
    parts, totals, lrs = trained
    epochs = np.arange(1, parts.shape[0] + 1)
    metrics = {f"train/{name}": Series(epochs, parts[:, i]) for i, name in enumerate(PARTS)}
    metrics["lr/pg0"] = Series(epochs, lrs)
    run_id = log_run_to_mlflow(tracking_uri, Run("yolo", metrics=metrics))
    run = load_run(run_id)
    assert run.loss_key == "train/loss"
    np.testing.assert_allclose(run.loss.values, totals, rtol=1e-6)  # float32 parts


def test_loss_parts_of_other_tools_are_not_added_up(tmp_path):
    """A GAN's generator and discriminator losses are no sum of one objective; a logged total
    wins over parts."""
    steps = np.arange(50)
    gan = Run("gan", metrics={"train/g_loss": Series(steps, 1.0 + 0 * steps),
                              "train/d_loss": Series(steps, 0.5 + 0 * steps)})  # fmt: skip
    (tmp_path / "gan.json").write_text(
        "\n".join(
            json.dumps({"step": int(s), "train/g_loss": 1.0, "train/d_loss": 0.5}) for s in steps
        )
    )
    assert load_run(str(tmp_path / "gan.json")).loss_key == gan.loss_key == "train/d_loss"
    with_total = tmp_path / "total.jsonl"
    rows = [
        {"step": s, "train/box_loss": 1.0, "train/cls_loss": 2.0, "loss": 3.5} for s in range(40)
    ]
    with_total.write_text("\n".join(json.dumps(row) for row in rows))
    run = load_run(str(with_total))
    assert run.loss_key == "loss" and "train/loss" not in run.metrics
